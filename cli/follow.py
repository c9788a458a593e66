"""Watch one version of an app until its deployment ends: succeeded, failed (the reason), or
the caller's deadline.

    /v1/events (app's events) ──hint──┐
                                      v
    every REFRESH_S at least ──> re-read app, deployments, live instances ──> assess() (pure) ──> display

Events are only hints to look again (they may be late, lost or absent); what is shown is always
what the REST API answers.  When the stream cannot be opened, or ends, the loop re-reads every
FALLBACK_POLL_S instead."""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cli.client import Client
from cli.errors import SERVER, UNREACHABLE, CliError

# With the stream: re-read on each event of the app, and at least this often (a deployment's own
# state changes reach the stream only where the gateway sends deployment events).
REFRESH_S = 2.0
# Without the stream (refused, or ended): re-read this often.
FALLBACK_POLL_S = 1.0
# A burst of events (a large rollout) is one look per this many seconds at most.
MIN_LOOK_S = 0.25

OPEN = ("running", "paused")
LIVE = ("PENDING", "STARTING", "RUNNING")


@dataclass(frozen=True)
class Progress:
    app: str
    version: int
    deployment: int | None = None   # its id, once the placer opened it
    state: str = "waiting"          # waiting (no record yet), running, paused, succeeded, failed, cancelled, superseded
    target: int = 0                 # instances the version should have
    in_service: int = 0             # the version's instances RUNNING and (with checks) healthy: the placer's count
    old_live: int = 0               # instances the version replaces, not stopped yet: the placer's count
    # The app's live instances as the task log has them (a scale keeps instances of an earlier
    # version whose container spec is the same, so these are not split by version).
    running: int = 0
    healthy: int = 0
    starting: int = 0               # PENDING or STARTING
    reason: str = ""                # why it failed, or why it waits (no room, crash-loop backoff)
    record: Mapping[str, Any] | None = None  # the deployment as the API shows it

    @property
    def done(self) -> bool:
        return self.state not in ("waiting", *OPEN)

    @property
    def ok(self) -> bool:
        return self.state == "succeeded"

    def line(self) -> str:
        dep = f"deployment {self.deployment}" if self.deployment is not None else "waiting for the placer"
        parts = [f"{self.in_service}/{self.target} new in service", f"{self.running} running"]
        if self.healthy:
            parts.append(f"{self.healthy} healthy")
        if self.starting:
            parts.append(f"{self.starting} starting")
        parts.append(f"{self.old_live} old left")
        text = f"{self.app} v{self.version} ({dep}, {self.state}): " + ", ".join(parts)
        return f"{text}; {self.reason}" if self.reason else text


def assess(app_id: str, version: int, app: Mapping[str, Any], deployments: Sequence[Mapping[str, Any]],
           live: Sequence[Mapping[str, Any]]) -> Progress:
    """Where ``version`` of the app stands, from one reading of the API.  Pure."""
    mine = [i for i in live if i.get("state") in LIVE]
    base = Progress(app_id, version, running=sum(1 for i in mine if i["state"] == "RUNNING"),
                    healthy=sum(1 for i in mine if i["state"] == "RUNNING" and i.get("healthy") is True),
                    starting=sum(1 for i in mine if i["state"] != "RUNNING"))
    dep = next((d for d in deployments if d.get("to_version") == version), None)
    current = int(app.get("version") or 0)
    if dep is None:
        if current > version or any(int(d.get("to_version") or 0) > version for d in deployments):
            return replace(base, state="superseded",
                         reason=f"version {current} came before the placer began version {version}")
        return replace(base, target=int(app.get("instances") or 0), reason=_waiting_reason(app, version))
    progress = dep.get("progress") or {}
    out = replace(base, deployment=dep.get("id"), state=str(dep.get("state")), record=dep,
                target=int(progress.get("target", app.get("instances") or 0)),
                in_service=int(progress.get("new_running", 0)),
                old_live=int(progress.get("old_live", 0)))
    if out.state == "failed":
        return replace(out, reason=_failure(dep, app, version))
    if out.state == "superseded":
        return replace(out, reason=f"replaced by version {current}")
    if out.state == "cancelled":
        return replace(out, reason=str(dep.get("reason") or "cancelled"))
    if out.state in OPEN:
        return replace(out, reason=_waiting_reason(app, version))
    return out


def _last_failure(app: Mapping[str, Any], version: int) -> str:
    f = app.get("last_failure") or {}
    if f.get("version") != version or not f.get("reason"):
        return ""
    return f"last failure: {f.get('instance')} on {f.get('host')} {f.get('state')}: {f['reason']}"


def _failure(dep: Mapping[str, Any], app: Mapping[str, Any], version: int) -> str:
    why = [str(dep.get("reason") or "failed"), _last_failure(app, version)]
    return "; ".join(w for w in why if w)


def _waiting_reason(app: Mapping[str, Any], version: int) -> str:
    """What holds the version back, when the app says: no room (status_reason), crash-loop backoff."""
    why = []
    if app.get("status") == "waiting" and app.get("status_reason"):
        why.append(str(app["status_reason"]))
    backoff = app.get("backoff") or {}
    if float(backoff.get("delay_s") or 0) > 0:
        why.append(f"backing off {backoff['delay_s']:g}s after failures")
        failure = _last_failure(app, version)
        if failure:
            why.append(failure)
    return "; ".join(why)


def read(client: Client, app_id: str, version: int) -> Progress:
    app = client.get(f"/v1/apps/{app_id}")
    deployments = client.get(f"/v1/apps/{app_id}/deployments", limit=20)
    live = client.get_all(f"/v1/apps/{app_id}/instances", phase="live")
    return assess(app_id, version, app, deployments, live)


class Hints:
    """The app's events on /v1/events, read in a thread; ``wait(s)`` returns early when one came.
    ``alive`` is false once the stream failed or ended (then callers poll)."""

    def __init__(self, client_factory: Callable[[], Client], app_id: str) -> None:
        self.alive = True
        self._q: queue.Queue[None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(client_factory, app_id), daemon=True,
                                        name="noops-events")
        self._thread.start()

    def _run(self, client_factory: Callable[[], Client], app_id: str) -> None:
        try:
            with client_factory() as c:
                for ev in c.events({"app": app_id, "type": "deployment,instance,endpoints"}):
                    if isinstance(ev.data, Mapping) and ev.data.get("app") in (app_id, None) or ev.type == "reset":
                        self._q.put(None)
        except Exception:  # noqa: BLE001 - refused, unreachable, anything: the caller polls instead
            pass
        finally:
            self.alive = False
            self._q.put(None)

    def wait(self, seconds: float) -> None:
        try:
            self._q.get(timeout=max(seconds, 0.0))
            while True:  # several events at once are one look
                self._q.get_nowait()
        except queue.Empty:
            pass


# Errors worth waiting out while following (the gateway restarting, the task log away): the
# deployment goes on without us.  Anything else (401, 404: the app was deleted) ends the watch.
TRANSIENT = (UNREACHABLE, SERVER)


def follow(look: Callable[[], Progress], hints: Hints | None, *, timeout_s: float,
           show: Callable[[Progress], None], clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> Progress:
    """Re-read (``look``) until the deployment ends or ``timeout_s`` passes; returns the last
    Progress (``done`` false: timed out).  After a first good reading, transient errors are shown
    and retried until the deadline, which then re-raises the last one."""
    deadline = clock() + timeout_s
    last: Progress | None = None
    while True:
        failed: CliError | None = None
        try:
            last = look()
            show(last)
        except CliError as exc:
            if last is None or exc.code not in TRANSIENT:
                raise
            failed = exc
            show(replace(last, reason=f"{exc.message}; retrying"))
        left = deadline - clock()
        if failed is not None and left <= 0:
            raise failed
        if last.done or left <= 0:
            return last
        if failed is None and hints is not None and hints.alive:
            started = clock()
            hints.wait(min(REFRESH_S, left))
            sleep(max(0.0, min(MIN_LOOK_S - (clock() - started), deadline - clock())))
        else:
            sleep(min(FALLBACK_POLL_S, left))


class Display:
    """A live bar on a terminal; elsewhere (a pipe, CI) one line each time the progress changes."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn
        from rich.progress import Progress as Bar
        self._console, self._last = console, ""
        self._bar = None
        if console.is_terminal:
            self._bar = Bar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[detail]}"), console=console)
            self._task = self._bar.add_task("", total=None, detail="")
            self._bar.start()

    def __call__(self, p: Progress) -> None:
        if self._bar is None:
            line = p.line()
            if line != self._last:
                self._console.print(line, highlight=False, markup=False)
                self._last = line
            return
        detail = ", ".join(x for x in (f"{p.running} running", f"{p.healthy} healthy" if p.healthy else "",
                                       f"{p.old_live} old left", p.state, p.reason) if x)
        dep = f"#{p.deployment}" if p.deployment is not None else ""
        self._bar.update(self._task, description=f"{p.app} v{p.version} {dep}", total=max(p.target, 1) if
                         p.target or p.deployment is not None else None, completed=p.in_service, detail=detail)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
