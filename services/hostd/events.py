"""Watch the engine's 'die' (and 'oom') events for this host's containers and hand them to the agent.

The event is only a key ("container C of instance X died"); the agent re-inspects the container
before reporting anything.  When the stream breaks (dockerd restarted, socket closed) it is opened
again from the time of the last event seen, so deaths during the gap are replayed by the engine.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from libs import retry
from libs.supervise import cancel_within
from services.hostd import metrics
from services.hostd.agent import Agent
from services.hostd.containers import LABEL_INSTANCE
from services.hostd.runtime import ContainerRuntime, RuntimeRefused, RuntimeUnavailable

log = logging.getLogger("noops.hostd.events")


def die_key(event: dict[str, Any]) -> tuple[str, str] | None:
    """(instance, container id) of a die event, or None when it names neither."""
    actor = event.get("Actor") or {}
    cid = actor.get("ID") or event.get("id") or ""
    instance = (actor.get("Attributes") or {}).get(LABEL_INSTANCE, "")
    return (instance, cid) if cid and instance else None


def is_oom(event: dict[str, Any]) -> bool:
    return (event.get("Action") or event.get("status")) == "oom"


def event_time(event: dict[str, Any], default: float) -> float:
    if "timeNano" in event:
        return int(event["timeNano"]) / 1e9
    return default


async def watch_deaths(runtime: ContainerRuntime, agent: Agent, *, since: float,
                       retry_max_s: float = 5.0, policy: retry.Policy | None = None) -> None:
    """Run until cancelled.  ``since``: unix time to replay from; main takes it before adoption,
    so a container dying between the adoption listing and the first event is not missed."""
    failures = retry.Failures(policy or retry.Policy(cap_s=retry_max_s))
    delay = failures.failed()
    pending: set[asyncio.Task[None]] = set()
    try:
        while True:
            try:
                async for event in runtime.container_events(agent.owner, since):
                    failures.ok()
                    since = event_time(event, since)
                    key = die_key(event)
                    if key is None:
                        continue
                    if is_oom(event):
                        # At once, in stream order: a die handler waiting for this news is woken.
                        agent.on_oom(*key)
                        continue
                    # One task per death: a slow instance (its lock held by a start) must not
                    # delay the others' reports.
                    task = asyncio.create_task(_handle(agent, *key))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                log.warning("docker event stream ended; reopening", extra={"retry_in_s": round(delay, 2)})
            except (RuntimeUnavailable, RuntimeRefused) as exc:
                log.warning("docker event stream broke; reopening", extra={"error": str(exc),
                                                                           "retry_in_s": round(delay, 2)})
            metrics.EVENT_RECONNECTS.inc()
            await asyncio.sleep(delay)
            delay = failures.failed()
    finally:
        await cancel_within(list(pending), what="death reports")


async def _handle(agent: Agent, instance: str, container_id: str) -> None:
    try:
        await agent.on_die(instance, container_id)
    except Exception as exc:
        # Lost for now; the reconciler's inventory round sees the exited container.
        log.warning("could not report a container death", extra={
            "instance": instance, "container_id": container_id[:12], "error": str(exc) or type(exc).__name__})
