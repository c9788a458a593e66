"""Marathon's event bus, decided purely: what one stream tells its client when it looks at an
app again.  ``diff(before, after)`` compares two views of an app (its live tasks, health
verdicts and latest deployment) and names the Marathon events between them; ``frame`` encodes one
for SSE.  The route (routes/marathon_events.py) does the I/O: it hears the endpoint changes on
NATS (the subjects /v1/events streams), re-reads the app, and sends what ``diff`` says.

Events carry ids, states and addresses, never app definitions, so every frame stays under
``MAX_EVENT_BYTES`` (Marathon's events over 1 MB broke subscribers: its issue #3154)."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.gateway.marathon import ids

MAX_EVENT_BYTES = 16 * 1024
TYPES = frozenset({"event_stream_attached", "api_post_event", "status_update_event", "health_status_changed_event",
                   "failed_health_check_event", "unhealthy_instance_kill_event", "app_terminated_event",
                   "deployment_info", "deployment_success", "deployment_failed", "deployment_step_success",
                   "deployment_step_failure"})
# hostd's reason for an instance it killed past its health checks' failure limit (hostd/health.py).
HEALTH_KILL_PREFIX = "health check "
HEARTBEAT = b"\r\n"


@dataclass(frozen=True)
class Task:
    id: str
    state: str                 # Marathon's (TASK_RUNNING...)
    alive: bool | None         # the health verdict; None: no checks or none counted yet
    host: str
    ip: str
    ports: tuple[int, ...]
    version: str


@dataclass(frozen=True)
class Deployment:
    id: str                    # Marathon's: <app>.<to_version>
    state: str                 # noops': running, paused, succeeded, failed, cancelled, superseded
    version: str
    from_version: int | None


@dataclass(frozen=True)
class AppView:
    app: str                   # the noops id
    live: bool
    tasks: Mapping[str, Task] = field(default_factory=dict)
    deployment: Deployment | None = None
    version: int = 0           # the app's noops version; a new one means its definition changed
    version_at: str = ""

    @property
    def settled(self) -> bool:
        """Nothing in flight: the stream need not look again until the app's endpoints change."""
        return ((self.deployment is None or self.deployment.state not in ("running", "paused"))
                and all(t.state == "TASK_RUNNING" for t in self.tasks.values()))


def task_of(t: Mapping[str, Any]) -> Task:
    """A Marathon task (shapes.task) as the stream remembers it."""
    alive = t["healthCheckResults"][0]["alive"] if t["healthCheckResults"] else None
    ip = t["ipAddresses"][0]["ipAddress"] if t["ipAddresses"] else ""
    return Task(t["id"], t["state"], alive, t["host"], ip, tuple(t["ports"]), t["version"] or "")


def _status(app: str, t: Task, state: str, now: str) -> tuple[str, dict[str, Any]]:
    return "status_update_event", {
        "eventType": "status_update_event", "timestamp": now, "slaveId": t.host, "taskId": t.id,
        "taskStatus": state, "message": "", "appId": ids.to_marathon(app), "host": t.host,
        "ipAddresses": [{"ipAddress": t.ip, "protocol": "IPv4"}] if t.ip else [], "ports": list(t.ports),
        "version": t.version}


def _plan(app: str, d: Deployment) -> dict[str, Any]:
    mid = ids.to_marathon(app)
    action = "StartApplication" if d.from_version is None else "RestartApplication"
    step = {"actions": [{"action": action, "app": mid}]}
    group = {"id": "/", "version": d.version, "apps": [{"id": mid}], "groups": [], "dependencies": [], "pods": []}
    return {"id": d.id, "version": d.version, "steps": [step], "original": group, "target": group}


def _deployment_events(app: str, before: Deployment | None, after: Deployment | None,
                       now: str) -> list[tuple[str, dict[str, Any]]]:
    if after is None or (before is not None and (before.id, before.state) == (after.id, after.state)):
        return []
    plan = _plan(app, after)
    step = plan["steps"][0]
    out: list[tuple[str, dict[str, Any]]] = []
    if (before is None or before.id != after.id) and after.state in ("running", "paused"):
        out.append(("deployment_info", {"eventType": "deployment_info", "timestamp": now, "plan": plan,
                                        "currentStep": step}))
    if before is None and after.state not in ("running", "paused"):
        return out   # first look at a finished deployment: old news
    if after.state == "succeeded":
        out.append(("deployment_step_success", {"eventType": "deployment_step_success", "timestamp": now,
                                                "plan": plan, "currentStep": step}))
        out.append(("deployment_success", {"eventType": "deployment_success", "timestamp": now, "id": after.id,
                                           "plan": plan}))
    elif after.state in ("failed", "cancelled"):
        out.append(("deployment_step_failure", {"eventType": "deployment_step_failure", "timestamp": now,
                                                "plan": plan, "currentStep": step}))
        out.append(("deployment_failed", {"eventType": "deployment_failed", "timestamp": now, "id": after.id,
                                          "plan": plan}))
    return out


def diff(before: AppView | None, after: AppView, *, ended: Mapping[str, str], now: str,
         reasons: Mapping[str, str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The events between two views of one app.  ``ended``: the Marathon state of each task of
    ``before`` no longer live (TASK_KILLED when unknown); ``reasons``: why they ended, as the task
    log says (a health kill is also an unhealthy_instance_kill_event).  A first look (``before``
    None) reports every live task: a subscriber then reads the app once, as it would after any event."""
    reasons = reasons or {}
    app, mid = after.app, ids.to_marathon(after.app)
    old = before.tasks if before is not None else {}
    out: list[tuple[str, dict[str, Any]]] = []
    if before is not None and after.live and after.version != before.version:
        # Through /v2 or /v1 alike: the definition changed (seen when the stream looks again).
        out.append(("api_post_event", {"eventType": "api_post_event", "timestamp": now, "clientIp": "",
                                       "uri": f"/v2/apps{mid}",
                                       "appDefinition": {"id": mid, "version": after.version_at}}))
    for tid, t in after.tasks.items():
        was = old.get(tid)
        if was is None or was.state != t.state or (was.ip, was.ports) != (t.ip, t.ports):
            out.append(_status(app, t, t.state, now))
        if t.alive is not None and (was is None or was.alive != t.alive):
            out.append(("health_status_changed_event", {
                "eventType": "health_status_changed_event", "timestamp": now, "appId": mid, "taskId": tid,
                "instanceId": tid, "version": t.version, "alive": t.alive}))
            if not t.alive:
                out.append(("failed_health_check_event", {
                    "eventType": "failed_health_check_event", "timestamp": now, "appId": mid, "taskId": tid,
                    "instanceId": tid, "version": t.version, "healthCheck": {}}))
    for tid, t in old.items():
        if tid not in after.tasks:
            out.append(_status(app, t, ended.get(tid, "TASK_KILLED"), now))
            why = reasons.get(tid, "")
            if why.startswith(HEALTH_KILL_PREFIX):
                out.append(("unhealthy_instance_kill_event", {
                    "eventType": "unhealthy_instance_kill_event", "timestamp": now, "appId": mid, "taskId": tid,
                    "instanceId": tid, "version": t.version, "reason": why[:1024], "host": t.host,
                    "slaveId": t.host}))
    out += _deployment_events(app, before.deployment if before else None, after.deployment, now)
    if before is not None and before.live and not after.live:
        out.append(("app_terminated_event", {"eventType": "app_terminated_event", "timestamp": now, "appId": mid}))
    return out


def attached(remote: str, now: str) -> tuple[str, dict[str, Any]]:
    return "event_stream_attached", {"eventType": "event_stream_attached", "timestamp": now, "remoteAddress": remote}


def frame(event_type: str, payload: Mapping[str, Any]) -> bytes:
    """One SSE message: ``event:`` and ``data:`` lines (one-line JSON) ended by an empty line,
    with CRLF as Marathon sends them."""
    data = json.dumps(payload, separators=(",", ":"))
    out = f"event: {event_type}\r\ndata: {data}\r\n\r\n".encode()
    if len(out) > MAX_EVENT_BYTES:   # not reachable by construction (ids and addresses only): kept honest
        raise ValueError(f"{event_type} of {len(out)} bytes is over MAX_EVENT_BYTES")
    return out
