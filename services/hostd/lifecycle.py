"""Carrying out one placement on the engine: start (adopt the running container, or create one
with its volume and network) and stop (release, stop, remove, volume).  Every failed step of a
start removes what it made, so no half-made instance stays behind; FAILED says why."""
from __future__ import annotations

import logging
import os

from libs import messages
from services.hostd import containers as ct
from services.hostd import network as net
from services.hostd.agent_state import AgentState, addr
from services.hostd.runtime import RuntimeRefused
from services.hostd.volumes import VolumeError, VolumeTimeout

log = logging.getLogger("noops.hostd.agent")


class Lifecycle(AgentState):
    async def _start(self, p: messages.Placement, existing: list[ct.ContainerInfo]) -> None:
        """``existing``: the instance's containers, as listed for the decision."""
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
                await self._send(p, "RUNNING", container_id=keep.id, **addr(att))
                self._watch(full, p.spec.health_checks)
                return
            await self._rt.remove(keep.id)  # died between the listing and now: start afresh
        await self._create(p)

    async def _create(self, p: messages.Placement) -> None:
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
                if isinstance(exc, VolumeTimeout):
                    raise  # transient: the placement is retried (create starts by removing leftovers)
                await self._send(p, "FAILED", reason=str(exc))
                return
        # An image with noops-init needs no engine init in front of it (asked only when that init is on).
        has_init = self.hardening.init and (await self._rt.image_labels(p.spec.image)).get(ct.LABEL_INIT) == "1"
        try:
            cid = await self._rt.create(ct.container_name(self.cluster, p.instance),
                                        ct.create_config(p, self.cluster, self.host, volume, self.hardening,
                                                         stop_timeout_s=self._grace(p), image_has_init=has_init))
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
                again = await self._rt.settle(cid, timeout_s=5.0 if _exited(info.pid) else 0.0)
                if again is not None and not again.running:
                    await self._send(p, "FAILED", container_id=cid, reason=await self._exit_reason(again))
                    return
                log.warning("network setup failed", extra={"instance": p.instance, "error": str(exc) or type(exc).__name__})
                await self._fail_start(p, cid, net.failure(exc, self.host))
                return
            await self._send(p, "RUNNING", container_id=cid, **addr(att))
            self._watch(info, p.spec.health_checks)
        else:  # already exited; the die event handler will find this same fact
            await self._send(p, "FAILED", container_id=cid, reason=await self._exit_reason(info))

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

    async def _stop(self, p: messages.Placement, existing: list[ct.ContainerInfo]) -> None:
        self.health.forget(p.instance)
        # RELEASE first, while the address is surely still this instance's.
        await self.network.detach(p.instance)
        for c in existing:
            self._stopping.add(c.id)
            await self._rt.stop(c.id, c.stop_timeout_s(self._grace(p)))
            await self._rt.remove(c.id)
            self._stopping.discard(c.id)  # gone: its late 'die' event finds nothing to inspect
        if p.spec.disk_mb > 0 or p.instance in await self.volumes.list():
            if not p.spec.keep_volume:
                await self.volumes.remove(p.instance)
        self.containers.pop(p.instance, None)
        await self._send(p, "KILLED", container_id=existing[0].id if existing else "")

    def _grace(self, p: messages.Placement) -> int:
        return min(p.spec.stop_timeout_s, messages.MAX_STOP_TIMEOUT_S) or self._stop_timeout_s

    async def _send(self, p: messages.Placement, state: messages.InstanceState, *,
                    container_id: str = "", reason: str = "", **address: object) -> None:
        await self._tell(instance=p.instance, app=p.app, epoch=p.epoch, state=state,
                                container_id=container_id, reason=reason, **address)  # type: ignore[arg-type]


def _exited(pid: int) -> bool:
    """The process is dead or a zombie: its namespaces go at exit, while /proc/<pid> stays until
    it is reaped (a zombie looked alive, and a container exiting at once was reported FAILED
    with the network step's error instead of its exit code)."""
    try:
        os.close(os.open(f"/proc/{pid}/ns/net", os.O_RDONLY))
    except OSError:
        return True
    return False
