"""Start-up: take over this host's existing containers and tell the task log about them again."""
from __future__ import annotations

import asyncio
import logging

from services.hostd import containers as ct
from services.hostd import network as net
from services.hostd.agent_state import AgentState, addr
from services.hostd.volumes import VolumeError

log = logging.getLogger("noops.hostd.agent")


class Adoption(AgentState):
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
                await self._tell(instance=info.instance, app=info.app, epoch=info.epoch, state="FAILED",
                                        container_id=info.id, reason=net.failure(exc, self.host))
                return
            await self._tell(instance=info.instance, app=info.app, epoch=info.epoch, state="RUNNING",
                                    container_id=info.id, **addr(att))  # type: ignore[arg-type]
            self._watch(full, ct.health_checks(full))
        elif info.state in ("exited", "dead"):
            # It died while no hostd was watching; the list entry has no exit code.
            full = await self._rt.inspect(info.id)
            if full is not None and not full.running:
                await self._fail_exited(full)
