"""Placement handling: make this host's containers match what the placer asked, idempotently.

Every handler treats its input as "look at instance X again": it re-lists the instance's
containers on the engine and acts from what it finds, so a redelivered or repeated placement
adopts instead of duplicating.  One instance is handled by one coroutine at a time (a lock per
instance, shared with the die-event handler so a FAILED never overtakes the RUNNING before it);
different instances run concurrently up to a bound.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from nats.aio.msg import Msg

from libs import bus, messages, retry
from services.hostd import containers as ct
from services.hostd import metrics
from services.hostd.health import Verdict
from services.hostd.monitors import Monitors, Watch
from services.hostd import network as net
from services.hostd.network import Attachment, Network
from services.hostd.reports import Reporter
from services.hostd.runtime import ContainerRuntime, RuntimeRefused, RuntimeUnavailable
from services.hostd.volumes import VolumeDriver, VolumeError

log = logging.getLogger("noops.hostd.agent")


def _combined(verdicts: list[bus.Verdict]) -> bus.Verdict:
    """A message's verdict from its placements': again after the shortest delay if any must retry."""
    retries = [v for v in verdicts if v.outcome is bus.Outcome.NAK]
    return min(retries, key=lambda v: v.delay_s) if retries else bus.ACK


class KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = defaultdict(int)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]


def retry_delay(num_delivered: int) -> float:
    """Per-message backoff for a transient failure: the one retry policy (libs/retry.py)."""
    return retry.DEFAULT.backoff(num_delivered)


class Agent:
    def __init__(self, *, cluster: str, host: str, runtime: ContainerRuntime, reporter: Reporter,
                 stop_timeout_s: int, network: Network, volumes: VolumeDriver, concurrency: int = 8,
                 clock: Callable[[], float] = time.time) -> None:
        self.cluster = cluster
        self.host = host
        self.owner = ct.owner_labels(cluster, host)
        self._rt = runtime
        self._report = reporter
        self.network = network
        self.volumes = volumes
        network.on_renewed = self._report_lease
        self._stop_timeout_s = stop_timeout_s
        self._clock = clock
        self._locks = KeyedLocks()
        self._slots = asyncio.Semaphore(concurrency)
        # instance -> container id, for what this hostd created or adopted (the engine stays the truth).
        self.containers: dict[str, str] = {}
        # instance -> highest placement epoch acted on; an older placement arriving late is stale.
        self._epochs: dict[str, int] = {}
        # container ids hostd is stopping on purpose: their 'die' is not a failure.
        self._stopping: set[str] = set()
        # Health checks of running instances; started after RUNNING is reported, stopped with the instance.
        self.health = Monitors(runtime=runtime, clock=clock, on_change=self._report_health,
                               on_kill=self._kill_unhealthy,
                               ip_of=lambda inst: att.ip if (att := network.attached.get(inst)) else "")

    # ------------------------------------------------------------ start-up

    async def adopt(self) -> int:
        """Take over this host's existing containers and re-announce them; returns how many."""
        found = await self._rt.list(self.owner)
        try:
            await self.network.cleanup_strays()
        except Exception as exc:  # a missing parent NIC: starts will say so, one by one
            log.warning("could not look for half-made interfaces", extra={"error": str(exc) or type(exc).__name__})
        await self._remove_orphan_volumes({c.instance for c in found})
        for info in found:
            self.containers[info.instance] = info.id
            self._epochs[info.instance] = max(self._epochs.get(info.instance, 0), info.epoch)

        async def announce(info: ct.ContainerInfo) -> None:
            # Several at once (each may wait for a DHCP answer), as many as placements run at once.
            try:
                async with self._locks.hold(info.instance), self._slots:
                    await self._announce(info)
            except Exception as exc:
                # Not fatal: a later placement or the reconciler's inventory round catches up.
                log.warning("could not re-announce a container", extra={
                    "instance": info.instance, "container_id": info.id[:12], "error": str(exc) or type(exc).__name__})
        await asyncio.gather(*(announce(info) for info in found))
        await self.network.release_orphans({c.instance for c in found if c.running})
        log.info("adopted containers", extra={"containers": len(found),
                                              "running": sum(1 for c in found if c.running)})
        return len(found)

    async def _remove_orphan_volumes(self, instances: set[str]) -> None:
        """Volumes whose instance has no container here: a crash between volume and container."""
        try:
            for inst in await self.volumes.list():
                if inst not in instances and not self._keep_volume(inst):
                    log.info("removing an orphan volume", extra={"instance": inst})
                    await self.volumes.remove(inst)
        except VolumeError as exc:
            log.warning("could not check volumes", extra={"error": str(exc)})

    def _keep_volume(self, instance: str) -> bool:
        return False  # seam for stateful services (keep_volume): no volume outlives its instance yet

    async def _announce(self, info: ct.ContainerInfo) -> None:
        if info.running:
            full = await self._rt.inspect(info.id)
            if full is None or not full.running:
                return  # died meanwhile: its die event reports it
            try:
                att = await self._ensure_network(full)
            except Exception as exc:
                await self._rt.remove(info.id)
                await self.network.detach(info.instance)
                await self._report.send(instance=info.instance, app=info.app, epoch=info.epoch, state="FAILED",
                                        container_id=info.id, reason=net.failure(exc, self.host))
                return
            await self._report.send(instance=info.instance, app=info.app, epoch=info.epoch, state="RUNNING",
                                    container_id=info.id, **_addr(att))
            self._watch(full, ct.health_checks(full))
        elif info.state in ("exited", "dead"):
            # It died while no hostd was watching; the list entry has no exit code.
            full = await self._rt.inspect(info.id)
            if full is not None and not full.running:
                await self._fail_exited(full)

    # ------------------------------------------------------------ placements

    async def handle_batch(self, msgs: list[Msg]) -> list[bus.Verdict]:
        """bus.pull_loop handler: one verdict per message, each after its reports were published.
        A message carries several placements (messages.Placements); it is acked when all of them
        are done, else delivered again after the shortest retry delay among them -- applying a
        placement twice is harmless (a start adopts the running container, a stop finds none)."""
        results: list[list[bus.Verdict] | None] = [None] * len(msgs)   # None: not for us, TERM
        groups: dict[str, list[tuple[int, int, Msg, messages.Placement]]] = defaultdict(list)
        for i, msg in enumerate(msgs):
            items = self._parse(msg)
            if items is None:
                continue
            results[i] = [bus.ACK] * len(items)
            for j, placement in enumerate(items):
                groups[placement.instance].append((i, j, msg, placement))

        async def run_group(instance: str, items: list[tuple[int, int, Msg, messages.Placement]]) -> None:
            # Lock before slot: waiting on a busy instance must not hold one of the slots.
            async with self._locks.hold(instance), self._slots:
                for i, j, msg, placement in items:  # in delivery order
                    results[i][j] = await self._handle_one(msg, placement)   # type: ignore[index]

        await asyncio.gather(*(run_group(k, v) for k, v in groups.items()))
        return [bus.TERM if r is None else _combined(r) for r in results]

    def _parse(self, msg: Msg) -> list[messages.Placement] | None:
        """The placements of one message for this host, or None (malformed or misrouted: TERM)."""
        try:
            batch = messages.decode(msg.data, messages.Placements)
        except messages.DecodeError as exc:
            log.error("malformed placement dropped", extra={"subject": msg.subject, "error": str(exc),
                                                            "data": msg.data[:200].decode(errors="replace")})
            metrics.PLACEMENTS.labels("?", "malformed").inc()
            return None
        if batch.host != self.host or any(p.host != self.host for p in batch.items):
            log.error("placement for another host dropped", extra={
                "for_host": batch.host, "instances": [p.instance for p in batch.items][:20]})
            for p in batch.items:
                metrics.PLACEMENTS.labels(p.action, "misrouted").inc()
            return None
        return batch.items

    async def _handle_one(self, msg: Msg, p: messages.Placement) -> bus.Verdict:
        seen = self._epochs.get(p.instance, 0)
        if p.epoch < seen:
            log.info("stale placement ignored", extra={"instance": p.instance, "epoch": p.epoch,
                                                       "action": p.action, "seen_epoch": seen})
            metrics.PLACEMENTS.labels(p.action, "stale").inc()
            return bus.ACK
        self._epochs[p.instance] = p.epoch
        try:
            await self.apply(p)
        except Exception as exc:
            delay = retry_delay(_num_delivered(msg))
            extra = {"instance": p.instance, "action": p.action, "epoch": p.epoch, "retry_in_s": delay,
                     "error": str(exc) or type(exc).__name__}
            if isinstance(exc, RuntimeUnavailable | RuntimeRefused):
                log.warning("placement failed for now; will retry", extra=extra)
            else:
                log.exception("placement failed unexpectedly; will retry", extra=extra)
            metrics.PLACEMENTS.labels(p.action, "retry").inc()
            return bus.nak(delay)
        metrics.PLACEMENTS.labels(p.action, "done").inc()
        return bus.ACK

    async def apply(self, p: messages.Placement) -> None:
        """Act on one placement.  Raises on transient trouble (engine away, report not published)."""
        if p.action == "start":
            await self._start(p)
        else:
            await self._stop(p)

    async def _instance_containers(self, instance: str) -> list[ct.ContainerInfo]:
        return await self._rt.list({**self.owner, ct.LABEL_INSTANCE: instance})

    async def _start(self, p: messages.Placement) -> None:
        existing = await self._instance_containers(p.instance)
        keep = next((c for c in existing if c.running), None)
        for c in existing:
            if c is not keep:  # exited, created (hostd died mid-start), dead: start afresh
                await self._rt.remove(c.id)
        if keep is not None:
            log.info("instance already running; adopting", extra={"instance": p.instance, "container_id": keep.id[:12]})
            self.containers[p.instance] = keep.id
            full = await self._rt.inspect(keep.id)
            if full is not None and full.running:
                try:
                    att = await self._ensure_network(full)
                except Exception as exc:
                    await self._fail_start(p, keep.id, net.failure(exc, self.host))
                    return
                await self._send(p, "RUNNING", container_id=keep.id, **_addr(att))
                self._watch(full, p.spec.health_checks)
                return
            await self._rt.remove(keep.id)  # died between the listing and now: start afresh
        self.containers.pop(p.instance, None)
        self.health.forget(p.instance)
        await self.network.detach(p.instance)  # a lease of an earlier container of this instance

        volume = ""
        if p.spec.disk_mb > 0:
            try:
                volume = await self.volumes.create(p.instance, p.spec.disk_mb)
            except VolumeError as exc:
                try:
                    await self.volumes.remove(p.instance)  # whatever part was made
                except VolumeError as again:
                    log.warning("could not remove a half-made volume", extra={"instance": p.instance,
                                                                               "error": str(again)})
                await self._send(p, "FAILED", reason=str(exc))
                return
        try:
            cid = await self._rt.create(ct.container_name(self.cluster, p.instance),
                                        ct.create_config(p, self.cluster, self.host, volume))
        except RuntimeRefused as exc:
            await self._remove_volume(p)
            await self._send(p, "FAILED", reason=ct.create_failure(p.spec.image, self.host, exc.status, exc.message))
            return
        self.containers[p.instance] = cid
        await self._send(p, "STARTING", container_id=cid)

        try:
            await self._rt.start(cid)
        except RuntimeRefused as exc:
            await self._fail_start(p, cid, ct.start_failure(self.host, exc.message))
            return

        info = await self._rt.inspect(cid)
        if info is None:
            self.containers.pop(p.instance, None)
            await self._remove_volume(p)
            await self._send(p, "FAILED", container_id=cid, reason="the container was removed while starting")
            return
        if info.running:
            try:
                att = await self.network.attach(p.instance, info.pid, address=p.address,
                                                egress_mbit=p.spec.egress_mbit)
            except Exception as exc:
                # A process that died during the setup is the news (OOMKilled, exit code), not
                # the namespace it took with it; give the engine a moment to notice the exit.
                pid_gone = not os.path.exists(f"/proc/{info.pid}")
                again = await self._rt.settle(cid, timeout_s=5.0 if pid_gone else 0.0)
                if again is not None and not again.running:
                    await self._send(p, "FAILED", container_id=cid, reason=ct.exit_reason(again))
                    return
                log.warning("network setup failed", extra={"instance": p.instance, "error": str(exc) or type(exc).__name__})
                await self._fail_start(p, cid, net.failure(exc, self.host))
                return
            await self._send(p, "RUNNING", container_id=cid, **_addr(att))
            self._watch(info, p.spec.health_checks)
        else:  # already exited; the die event handler will find this same fact
            await self._send(p, "FAILED", container_id=cid, reason=ct.exit_reason(info))

    async def _fail_start(self, p: messages.Placement, cid: str, reason: str) -> None:
        """No half-made instance stays behind: container, lease and volume go, FAILED says why."""
        self.health.forget(p.instance)
        self._stopping.add(cid)
        try:
            await self._rt.remove(cid)
        finally:
            self._stopping.discard(cid)
        self.containers.pop(p.instance, None)
        await self.network.detach(p.instance)
        await self._remove_volume(p)
        await self._send(p, "FAILED", container_id=cid, reason=reason)

    async def _remove_volume(self, p: messages.Placement) -> None:
        if p.spec.disk_mb > 0 and not p.spec.keep_volume:
            await self.volumes.remove(p.instance)

    async def _ensure_network(self, info: ct.ContainerInfo) -> Attachment:
        """The running container's attachment: known, adopted from its namespace, or made now."""
        att = self.network.attached.get(info.instance)
        if att is not None and att.pid == info.pid:
            return att
        att = await self.network.adopt(info.instance, info.pid)
        if att is None:  # hostd died between start and address: finish the job
            egress = int(info.labels.get(ct.LABEL_EGRESS, "0") or 0)
            att = await self.network.attach(info.instance, info.pid, address=info.labels.get(ct.LABEL_ADDRESS, ""),
                                            egress_mbit=egress)
        return att

    async def _stop(self, p: messages.Placement) -> None:
        self.health.forget(p.instance)
        existing = await self._instance_containers(p.instance)
        # RELEASE first, while the address is surely still this instance's.
        await self.network.detach(p.instance)
        for c in existing:
            self._stopping.add(c.id)
            await self._rt.stop(c.id, self._stop_timeout_s)
            await self._rt.remove(c.id)
            self._stopping.discard(c.id)  # gone: its late 'die' event finds nothing to inspect
        if p.spec.disk_mb > 0 or p.instance in await self.volumes.list():
            if not p.spec.keep_volume:
                await self.volumes.remove(p.instance)
        self.containers.pop(p.instance, None)
        await self._send(p, "KILLED", container_id=existing[0].id if existing else "")

    async def _send(self, p: messages.Placement, state: messages.InstanceState, *,
                    container_id: str = "", reason: str = "", **addr: object) -> None:
        await self._report.send(instance=p.instance, app=p.app, epoch=p.epoch, state=state,
                                container_id=container_id, reason=reason, **addr)  # type: ignore[arg-type]

    # ------------------------------------------------------------ container deaths

    async def on_die(self, instance: str, container_id: str) -> None:
        """A container of ours died: re-read it and report FAILED unless the exit was on purpose."""
        async with self._locks.hold(instance):
            if container_id in self._stopping:
                metrics.DIE_EVENTS.labels("on_purpose").inc()
                return
            info = await self._rt.inspect(container_id)
            if info is None or info.running:  # removed on purpose, or running again
                metrics.DIE_EVENTS.labels("gone").inc()
                return
            metrics.DIE_EVENTS.labels("failure").inc()
            self.health.forget(instance)
            await self.network.detach(instance)  # its namespace is gone; give the address back
            await self._fail_exited(info)

    async def _report_lease(self, att: Attachment) -> None:
        """A renewed lease goes to the task log as the same RUNNING fact with a later expiry."""
        async with self._locks.hold(att.instance):
            cid = self.containers.get(att.instance)
            info = await self._rt.inspect(cid) if cid else None
            if info is None or not info.running or self.network.attached.get(att.instance) != att:
                return  # stopped or replaced meanwhile
            await self._report.send(instance=info.instance, app=info.app, epoch=info.epoch, state="RUNNING",
                                    container_id=info.id, **_addr(att))  # type: ignore[arg-type]

    # ------------------------------------------------------------ health checks

    def _watch(self, info: ct.ContainerInfo, checks: Sequence[messages.HealthCheckSpec]) -> None:
        if checks:
            self.health.watch(Watch(instance=info.instance, container_id=info.id, checks=tuple(checks),
                                    started_at=info.started_at or self._clock()))

    async def _current(self, w: Watch) -> tuple[ct.ContainerInfo, Attachment] | None:
        """The watched container, if it is still this instance's running one (under the lock)."""
        if self.containers.get(w.instance) != w.container_id:
            return None
        info = await self._rt.inspect(w.container_id)
        att = self.network.attached.get(w.instance)
        if info is None or not info.running or att is None:
            return None
        return info, att

    async def _report_health(self, w: Watch, v: Verdict) -> None:
        """A changed verdict goes out as the same RUNNING fact with the health news."""
        async with self._locks.hold(w.instance):
            got = await self._current(w)
            if got is None:
                return  # stopped or replaced meanwhile: its own report says so
            info, att = got
            metrics.HEALTH.labels(str(v.healthy).lower()).inc()
            await self._report.send(instance=info.instance, app=info.app, epoch=info.epoch, state="RUNNING",
                                    container_id=info.id, healthy=v.healthy, health=v.health,
                                    **_addr(att))  # type: ignore[arg-type]

    async def _kill_unhealthy(self, w: Watch, reason: str) -> None:
        """Past the failure limit: remove the container (and its lease, volume) and report FAILED,
        so the placer replaces it with its usual backoff."""
        async with self._locks.hold(w.instance):
            got = await self._current(w)
            if got is None:
                return
            info, _ = got
            metrics.HEALTH.labels("killed").inc()
            await self.network.detach(w.instance)
            self._stopping.add(info.id)
            try:
                await self._rt.stop(info.id, self._stop_timeout_s)
                await self._rt.remove(info.id)
            finally:
                self._stopping.discard(info.id)
            self.containers.pop(w.instance, None)
            if w.instance in await self.volumes.list():
                await self.volumes.remove(w.instance)
            await self._report.send(instance=info.instance, app=info.app, epoch=info.epoch, state="FAILED",
                                    container_id=info.id, reason=reason)
            # Last: if a step above raised, the loop (still registered) tries again next round.
            self.health.forget(w.instance)

    async def _fail_exited(self, info: ct.ContainerInfo) -> None:
        await self._report.send(instance=info.instance, app=info.app, epoch=info.epoch, state="FAILED",
                                container_id=info.id, reason=ct.exit_reason(info))


def _addr(att: Attachment) -> dict[str, object]:
    return {"ip": att.ip, "mac": att.mac, "parent": att.parent, "lease_expires": att.lease_expires}


def _num_delivered(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:  # not a JetStream message (tests calling apply directly)
        return 1
