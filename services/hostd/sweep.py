"""Sweeps: remove what the reconciler says nothing owns -- a container, a volume, a lease, an
interface -- after checking again, on this host, that it is still what was reported.

The reconciler decides from an inventory that is seconds old; meanwhile a placement may have
replaced the container, or made the volume for a container about to be created.  So every item
is handled under its instance's lock (the one placements and die events take, so a start in
flight finishes first) and re-checked before anything is touched:

    container  only the container with exactly that id (a newer container of the instance has
               another id and survives); stop, remove, RELEASE, volume unless keep_volume, and a
               tombstone so a late start for the instance is ignored.  No report: the task log is
               already right (the instance ended, or was never placed here).
    volume     only when no container of the instance exists here
    lease      the same; RELEASE and drop it from the journal
    interface  only a macvlan still in the root namespace, named and parented like ours, and
               not the one an instance's start is attaching right now

One outcome per item: removed | absent (already gone) | refused (the re-check failed, detail
says why) | failed (tried; the error in detail).  The reconciler asks again next round.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs import messages, subjects
from services.hostd import containers as ct
from services.hostd import metrics
from services.hostd.agent_state import AgentState
from services.hostd.network import LINK_PREFIX, temp_link_name

log = logging.getLogger("noops.hostd.sweep")

# Items handled from one request; the rest are refused (the reconciler sends them next round).
MAX_ITEMS = messages.SWEEP_ITEMS_PER_MESSAGE

Result = tuple[str, str]   # (outcome, detail)


class Sweeping(AgentState):
    async def sweep_request(self, data: bytes) -> messages.SweepResult:
        """The answer to one noops.sweep.<host> request (never raises)."""
        try:
            req = messages.decode(data, messages.Sweep)
        except messages.DecodeError as exc:
            log.error("malformed sweep request", extra={"error": str(exc), "data": data[:200].decode(errors="replace")})
            return messages.SweepResult(host=self.host, outcomes=[])
        if req.host != self.host:
            log.error("sweep request for another host", extra={"for_host": req.host, "items": len(req.items)})
            return messages.SweepResult(host=self.host, outcomes=[])
        return await self.sweep(req.items)

    async def sweep(self, items: list[messages.SweepItem]) -> messages.SweepResult:
        outcomes = list(await asyncio.gather(*(self._sweep_one(item) for item in items[:MAX_ITEMS])))
        outcomes += [_outcome(item, "refused", f"more than {MAX_ITEMS} items in one sweep; ask again")
                     for item in items[MAX_ITEMS:]]
        return messages.SweepResult(host=self.host, outcomes=outcomes)

    async def _sweep_one(self, item: messages.SweepItem) -> messages.SweepOutcome:
        try:
            outcome, detail = await self._sweep_locked(item)
        except Exception as exc:
            outcome, detail = "failed", str(exc) or type(exc).__name__
        log.log(logging.WARNING if outcome == "failed" else logging.INFO, "sweep item handled", extra={
            "kind": item.kind, "instance": item.instance, "key": item.key[:20], "reason": item.reason,
            "outcome": outcome, "detail": detail})
        return _outcome(item, outcome, detail)

    async def _sweep_locked(self, item: messages.SweepItem) -> Result:
        if item.kind == "interface":
            # A root-namespace link has no instance to lock; _sweep_interface checks the locks held.
            return await self._sweep_interface(item.key)
        instance = item.instance
        if item.kind == "container" and not instance and item.key:
            found = await self._rt.inspect(item.key)
            instance = found.instance if found is not None else ""
            if found is None:
                return "absent", "no such container"
        if not subjects.INSTANCE_RE.fullmatch(instance):
            return "refused", f"{instance!r} is not an instance id"
        handler: Callable[[str, str], Awaitable[Result]] = {
            "container": self._sweep_container, "volume": self._sweep_volume, "lease": self._sweep_lease,
        }[item.kind]
        # Lock before slot, as placements do: waiting on a busy instance must not hold a slot.
        async with self._locks.hold(instance), self._slots:
            return await handler(instance, item.key)

    # ------------------------------------------------------------ one handler per kind (under the lock)

    async def _sweep_container(self, instance: str, container_id: str) -> Result:
        info = await self._rt.inspect(container_id) if container_id else None
        if info is None or info.id != container_id:  # inspect also matches names and id prefixes
            now = [c.id[:12] for c in await self._instance_containers(instance)]
            return "absent", "no container with this id" + (
                f"; the instance's container {', '.join(now)} is left alone" if now else "")
        mine = info.labels.get(ct.LABEL_CLUSTER) == self.cluster and info.labels.get(ct.LABEL_HOST) == self.host
        if not mine or info.instance != instance:
            return "refused", (f"container {container_id[:12]} is not this host's container of {instance} (labels "
                               f"cluster={info.labels.get(ct.LABEL_CLUSTER)!r} host={info.labels.get(ct.LABEL_HOST)!r} "
                               f"instance={info.instance!r})")
        others = [c for c in await self._instance_containers(instance) if c.id != container_id]
        att = self.network.attached.get(instance)
        # The instance's address is this container's unless another one of the instance holds it.
        release = not others or (att is not None and att.pid == info.pid)
        self._stopping.add(container_id)   # its 'die' is not a failure to report
        try:
            if release:
                self.health.forget(instance)
                await self.network.detach(instance)   # RELEASE first, while the address is surely its own
            await self._rt.stop(container_id, info.stop_timeout_s(self._stop_timeout_s))
            await self._rt.remove(container_id)
        finally:
            self._stopping.discard(container_id)
        if self.containers.get(instance) == container_id:
            self.containers.pop(instance, None)
        if others:
            return "removed", f"another container of the instance ({others[0].id[:12]}) is left alone"
        notes = []
        if info.keep_volume:
            notes.append("volume kept (keep_volume)")
        elif instance in await self.volumes.list():
            await self.volumes.remove(instance)
            notes.append("volume removed")
        # Its instance ended or was never placed here: a start arriving late must not recreate it.
        self.tombstones.add(instance, info.epoch, "KILLED")
        return "removed", "; ".join(notes)

    async def _sweep_volume(self, instance: str, _key: str) -> Result:
        if refused := await self._has_container(instance):
            return "refused", refused
        if instance not in await self.volumes.list():
            return "absent", ""
        await self.volumes.remove(instance)
        return "removed", ""

    async def _sweep_lease(self, instance: str, _key: str) -> Result:
        if refused := await self._has_container(instance):
            return "refused", refused
        if instance not in self.network.leased():
            return "absent", ""
        att = self.network.attached.get(instance)
        held = att.lease if att is not None and att.lease is not None else None
        if held is None and (journaled := self.network.journal.get(instance)) is not None:
            held = journaled[0]
        await self.network.detach(instance)   # RELEASE from its MAC through the parent, then forget
        return "removed", f"released {held.ip}" if held is not None else ""

    async def _has_container(self, instance: str) -> str:
        """Why a volume or lease of ``instance`` is still owned ('' when it is not)."""
        existing = await self._instance_containers(instance)
        if existing:
            c = existing[0]
            return f"container {c.id[:12]} of the instance exists ({c.state})"
        return ""

    async def _sweep_interface(self, name: str) -> Result:
        if not name.startswith(LINK_PREFIX):
            return "refused", f"{name!r} is not a noops interface name"
        # A start moves its macvlan into the container right after making it, under the
        # instance's lock: a link named after a locked instance may be that one, mid-move.
        attaching = [i for i in self._locks.busy() if temp_link_name(i) == name]
        if attaching:
            return "refused", f"instance {attaching[0]} is being handled; its start may be attaching {name}"
        why = await self.network.remove_stray(name)
        if why == "absent":
            return "absent", "not in the root namespace"
        if why:
            return "refused", why
        return "removed", ""


def _outcome(item: messages.SweepItem, outcome: str, detail: str) -> messages.SweepOutcome:
    metrics.SWEEPS.labels(item.kind, outcome).inc()
    return messages.SweepOutcome(item=item, outcome=outcome, detail=detail)  # type: ignore[arg-type]


async def serve_sweep(nc: NATS, agent: Sweeping) -> Subscription:
    """Subscribe to noops.sweep.<host>; the caller unsubscribes at shutdown."""

    async def on_request(msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            result = await agent.sweep_request(msg.data)
        except Exception:  # a bug: say so, answer nothing, keep the subscription alive
            log.exception("sweep request not handled")
            return
        try:
            await msg.respond(messages.encode(result))
        except Exception as exc:  # the requester times out and asks again
            log.warning("sweep answer not sent", extra={"error": str(exc) or type(exc).__name__})

    return await nc.subscribe(subjects.sweep(agent.host), cb=on_request)
