"""What happens to a running instance without a placement: its container dies, its lease is
renewed, its health verdict changes or passes the failure limit.  Each re-reads the container
under the instance's lock, so news about a container that was stopped or replaced meanwhile
is dropped instead of overtaking that container's own report."""
from __future__ import annotations

from services.hostd import containers as ct
from services.hostd import metrics
from services.hostd.agent_state import AgentState, addr
from services.hostd.health import Verdict
from services.hostd.monitors import Watch
from services.hostd.network import Attachment


class Deaths(AgentState):
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

    def on_oom(self, instance: str, container_id: str) -> None:
        """The engine's 'oom' event: remembered, so the container's exit is called OOMKilled."""
        metrics.OOM_EVENTS.inc()
        self.ooms.note(container_id)

    async def _report_lease(self, att: Attachment) -> None:
        """A renewed lease goes to the task log as the same RUNNING fact with a later expiry."""
        async with self._locks.hold(att.instance):
            cid = self.containers.get(att.instance)
            info = await self._rt.inspect(cid) if cid else None
            if info is None or not info.running or self.network.attached.get(att.instance) != att:
                return  # stopped or replaced meanwhile
            await self._tell(instance=info.instance, app=info.app, epoch=info.epoch, state="RUNNING",
                                    container_id=info.id, **addr(att))  # type: ignore[arg-type]

    async def _current(self, w: Watch) -> tuple[ct.ContainerInfo, Attachment] | None:
        """The watched container, if it is still this instance's running one (under the lock)."""
        if self.containers.get(w.instance) != w.container_id:
            return None
        info = await self._rt.inspect(w.container_id)
        att = self.network.attached.get(w.instance)
        if info is None or not info.running or att is None:
            return None
        return info, att

    async def _report_health(self, w: Watch, v: Verdict) -> None:  # type: ignore[override]
        """A changed verdict goes out as the same RUNNING fact with the health news."""
        async with self._locks.hold(w.instance):
            got = await self._current(w)
            if got is None:
                return  # stopped or replaced meanwhile: its own report says so
            info, att = got
            metrics.HEALTH.labels(str(v.healthy).lower()).inc()
            await self._tell(instance=info.instance, app=info.app, epoch=info.epoch, state="RUNNING",
                                    container_id=info.id, healthy=v.healthy, health=v.health,
                                    **addr(att))  # type: ignore[arg-type]

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
                await self._rt.stop(info.id, info.stop_timeout_s(self._stop_timeout_s))
                await self._rt.remove(info.id)
            finally:
                self._stopping.discard(info.id)
            self.containers.pop(w.instance, None)
            if w.instance in await self.volumes.list():
                await self.volumes.remove(w.instance)
            await self._tell(instance=info.instance, app=info.app, epoch=info.epoch, state="FAILED",
                                    container_id=info.id, reason=reason)
            # Last: if a step above raised, the loop (still registered) tries again next round.
            self.health.forget(w.instance)
