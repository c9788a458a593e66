"""noops drift: the reconciler's last round (GET /v1/drift); ``--now`` asks for a round and waits for it."""
from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from cli import output
from cli.context import client
from cli.errors import TIMEOUT, CliError
from cli.output import Format, OutputOpt, dash

POLL_S = 0.5


def _people(d: dict[str, Any]) -> None:
    last = d.get("last")
    if last is None:
        output.say("no reconciler round recorded yet")
        return
    nonzero = {k: v for k, v in (last.get("counts") or {}).items() if v}
    output.fields([("round", f"{last['id']} ({last.get('trigger')}{', dry run' if last.get('dry_run') else ''})"),
                   ("finished", dash(last.get("finished_at"))),
                   ("counts", ", ".join(f"{k} {v}" for k, v in nonzero.items()) or "no drift"),
                   ("errors", ", ".join(f"{k}: {v}" for k, v in (last.get("errors") or {}).items()) or "-")])
    findings = last.get("findings") or []
    if findings:
        output.table(["KIND", "WHERE", "APP", "INSTANCE", "ACTION", "DETAIL"],
                     [[dash(f.get("kind")), dash(f.get("where")), dash(f.get("app")), dash(f.get("instance")),
                       dash(f.get("action")), dash(f.get("detail"))] for f in findings])


def drift(ctx: typer.Context,
          now: Annotated[bool, typer.Option("--now", help="Ask for a round now and show it when done.")] = False,
          timeout: Annotated[float, typer.Option("--timeout", min=0.0, help="Seconds to wait for that round (exit 7).")] = 30.0,
          history: Annotated[int, typer.Option("--history", min=0, max=100, help="Also this many earlier rounds.")] = 0,
          fmt: OutputOpt = Format.table) -> None:
    """What the reconciler found and did in its last round."""
    with client(ctx) as c:
        d = c.get("/v1/drift", history=history or None)
        if now:
            before = (d.get("last") or {}).get("id")
            c.call("POST", "/v1/drift")
            deadline = time.monotonic() + timeout
            while (d.get("last") or {}).get("id") == before:
                if time.monotonic() >= deadline:
                    raise CliError(TIMEOUT, f"no new reconciler round within {timeout:g}s (is the reconciler running?)")
                time.sleep(POLL_S)
                d = c.get("/v1/drift", history=history or None)
    output.show(fmt, d, lambda: _people(d))
