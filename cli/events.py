"""noops events: tail /v1/events, one line per event (``--output json``: the data objects as JSON
lines, each with its ``event`` type and, when the stream gives one, ``event_id`` added).  When the stream ends it reconnects with the last id
seen (``Last-Event-ID``), so nothing in between is missed while the gateway still holds it."""
from __future__ import annotations

import random
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Annotated, Any

import typer

from cli import output
from cli.context import client
from cli.errors import UNREACHABLE, USAGE, CliError
from cli.output import Format, OutputOpt, dash
from cli.sse import Event

TYPES = ("deployment", "instance", "host", "endpoints")
# Reconnecting after the stream ended: full jitter, doubling up to the cap.
RECONNECT_FIRST_S, RECONNECT_MAX_S = 0.5, 10.0


def summary(ev: Event) -> str:
    d: Mapping[str, Any] = ev.data if isinstance(ev.data, Mapping) else {}
    if ev.type == "instance":
        text = (f"{d.get('app')} {d.get('instance')} on {dash(d.get('host'))} {d.get('state')}"
                f" {dash(d.get('health'))} {dash(d.get('ip'))}")
    elif ev.type == "deployment":
        # Progress as the deployment record has it, nested or flat (extra fields of the event).
        p = d.get("progress") if isinstance(d.get("progress"), Mapping) else d
        extra = f" {p.get('new_running', 0)}/{p['target']}" if "target" in p else ""
        text = f"{d.get('app')} #{d.get('deployment')} v{d.get('version')} {d.get('state')}{extra}"
    elif ev.type == "host":
        marks = " ".join(k for k in ("draining", "cordoned") if d.get(k))
        text = f"{d.get('host')} {d.get('state')}" + (f" {marks}" if marks else "")
    elif ev.type == "endpoints":
        eps = d.get("endpoints") or []
        text = f"{d.get('app')} {len(eps)} in service (seq {dash(d.get('seq'))})"
    elif ev.type == "reset":
        return "reset: events were missed; re-read the API for the current state"
    else:
        text = str(ev.data)
    reason = d.get("reason")
    return f"{text}: {reason}" if reason else text


def at_text(ev: Event) -> str:
    """The event's ``at`` (RFC 3339; epoch seconds are shown as such too), else now."""
    at = ev.data.get("at") if isinstance(ev.data, Mapping) else None
    if isinstance(at, (int, float)) and not isinstance(at, bool):
        return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds")
    return str(at) if at else datetime.now(timezone.utc).isoformat(timespec="seconds")


def _wanted(ev: Event, apps: list[str], types: list[str]) -> bool:
    """The gateway filters too; this keeps the promise against one that does not (yet)."""
    if ev.type == "reset":
        return True
    if types and ev.type not in types:
        return False
    app = ev.data.get("app") if isinstance(ev.data, Mapping) else None
    return not apps or app is None or app in apps


def events(ctx: typer.Context,
           app: Annotated[list[str] | None, typer.Option("--app", help="Only this app's (repeat for more).")] = None,
           type_: Annotated[list[str] | None, typer.Option("--type", help=f"Only these: {', '.join(TYPES)} "
                                                           "(repeat, or comma-separated).")] = None,
           since: Annotated[str | None, typer.Option("--since", help="Replay what came after this event id.")] = None,
           count: Annotated[int | None, typer.Option("--count", min=1, help="Stop after this many events.")] = None,
           fmt: OutputOpt = Format.table) -> None:
    """Follow the event stream (Ctrl-C to stop)."""
    apps = list(app or [])
    types = [t for v in (type_ or []) for t in v.split(",") if t]
    bad = [t for t in types if t not in TYPES]
    if bad:
        raise CliError(USAGE, f"--type {', '.join(bad)}: choose from {', '.join(TYPES)}")
    params: dict[str, Any] = {"app": apps} if apps else {}
    if types:
        params["type"] = ",".join(types)
    seen, last_id, attempt = 0, since, 0
    with client(ctx) as c:
        try:
            while True:
                try:
                    for ev in c.events(params, last_event_id=last_id):
                        attempt, last_id = 0, ev.id or last_id
                        if not _wanted(ev, apps, types):
                            continue
                        if fmt is Format.json:
                            data = dict(ev.data) if isinstance(ev.data, Mapping) else {"data": ev.data}
                            extra = {"event": ev.type, **({"event_id": ev.id} if ev.id else {})}
                            output.emit_json_line({**extra, **data})
                        else:
                            output.say(f"{at_text(ev)} {ev.type:<10} {summary(ev)}")
                        seen += 1
                        if count is not None and seen >= count:
                            return
                except CliError as exc:
                    # The first connection's refusal is the answer; later drops are waited out.
                    if exc.code != UNREACHABLE or (seen == 0 and attempt == 0 and last_id == since):
                        raise
                attempt += 1
                delay = random.uniform(0, min(RECONNECT_MAX_S, RECONNECT_FIRST_S * 2 ** attempt))
                output.note(f"event stream ended; reconnecting in {delay:.1f}s")
                time.sleep(delay)
        except KeyboardInterrupt:
            return
