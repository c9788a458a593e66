"""What the agent's parts share: the ports, the per-instance memory, and the steps they all use.

The agent is split by seam (``adoption``, ``lifecycle`` for placements, ``deaths`` for die
events, lease renewals and health verdicts); each part is a mixin over this state so that a
step used by several (ensure the network, report an exit, start the health checks) has one home.
The engine stays the truth: these maps are caches that adoption rebuilds at start.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from libs import messages
from services.hostd import containers as ct
from services.hostd.monitors import Monitors, Watch
from services.hostd.network import Attachment, Network
from services.hostd.ooms import SIGKILL_EXIT, OomKills, cgroup_oom_killed
from services.hostd.reports import Reporter
from services.hostd.runtime import ContainerRuntime
from services.hostd.keyed_locks import KeyedLocks
from services.hostd.tombstones import Tombstones
from services.hostd.volumes import VolumeDriver


# Reports after which the instance is over on this host (the placer replaces it under a new id).
ENDED = frozenset({"KILLED", "FAILED"})
# Log lines of a dead noops-init container searched for its last word (a cron job may write after it).
INIT_LOG_LINES = 20


class AgentState:
    def __init__(self, *, cluster: str, host: str, runtime: ContainerRuntime, reporter: Reporter,
                 stop_timeout_s: int, network: Network, volumes: VolumeDriver, concurrency: int = 8,
                 stop_concurrency: int = 32, clock: Callable[[], float] = time.time, tombstones: Tombstones | None = None,
                 oom_wait_s: float = 2.0, hardening: ct.Hardening = ct.Hardening(),
                 health_first_retry_s: float = 0.1) -> None:
        self.cluster = cluster
        self.host = host
        self.owner = ct.owner_labels(cluster, host)
        self.hardening = hardening   # capabilities dropped, pids limit... of every new container
        self._rt = runtime
        self._report = reporter
        self.network = network
        self.volumes = volumes
        self._stop_timeout_s = stop_timeout_s
        self._clock = clock
        self._locks = KeyedLocks()
        self._slots = asyncio.Semaphore(concurrency)
        self._stop_slots = asyncio.Semaphore(stop_concurrency)   # placements that only stop
        # instance -> container id, for what this hostd created or adopted (the engine stays the truth).
        self.containers: dict[str, str] = {}
        # instance -> highest placement epoch acted on; an older placement arriving late is stale.
        self._epochs: dict[str, int] = {}
        # Instances that ended here (KILLED, FAILED): a late start for one of them is ignored.
        self.tombstones = tombstones if tombstones is not None else Tombstones(clock=clock)
        # Containers the engine said were OOM-killed; an exit by SIGKILL waits for that news a while.
        self.ooms = OomKills()
        self._oom_wait_s = oom_wait_s
        # container ids hostd is stopping on purpose: their 'die' is not a failure.
        self._stopping: set[str] = set()
        # Health checks of running instances; started after RUNNING is reported, stopped with the instance.
        self.health = Monitors(runtime=runtime, clock=clock, on_change=self._report_health,
                               on_kill=self._kill_unhealthy, first_retry_s=health_first_retry_s,
                               ip_of=lambda inst: att.ip if (att := network.attached.get(inst)) else "")
        network.on_renewed = self._report_lease

    # Defined by the deaths part; declared here because the monitors and the network call them.
    async def _report_health(self, w: Watch, v: object) -> None:
        raise NotImplementedError

    async def _kill_unhealthy(self, w: Watch, reason: str) -> None:
        raise NotImplementedError

    async def _report_lease(self, att: Attachment) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ steps several parts use

    async def _instance_containers(self, instance: str) -> list[ct.ContainerInfo]:
        """The instance's containers on this host, in any state, as the engine says now."""
        return await self._rt.list({**self.owner, ct.LABEL_INSTANCE: instance})

    async def _tell(self, *, instance: str, epoch: int, state: messages.InstanceState, **fields: object) -> None:
        """Report; an ending (KILLED, FAILED) also leaves a tombstone.  After the publish, not
        before: if it fails the placement is retried, and a tombstone would make the retried
        start skip the report it still owes."""
        await self._report.send(instance=instance, epoch=epoch, state=state, **fields)  # type: ignore[arg-type]
        if state in ENDED:
            self.tombstones.add(instance, epoch, state)

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

    def _watch(self, info: ct.ContainerInfo, checks: Sequence[messages.HealthCheckSpec]) -> None:
        if checks:
            self.health.watch(Watch(instance=info.instance, container_id=info.id, checks=tuple(checks),
                                    started_at=info.started_at or self._clock()))

    async def _exit_reason(self, info: ct.ContainerInfo) -> str:
        """Why an exited container ended; an OOM kill is called so even when the engine's flag
        missed it (see ooms.py).  Only a SIGKILL exit (137) can be one, so only that one waits."""
        oom = info.oom_killed or self.ooms.seen(info.id)
        if not oom and info.exit_code == SIGKILL_EXIT:
            oom = cgroup_oom_killed(info.id) or await self.ooms.wait(info.id, self._oom_wait_s)
        said = ct.init_reason(await self._rt.log_tail(info.id, INIT_LOG_LINES)) if info.has_init and not oom else ""
        return ct.exit_reason(info, oom_killed=oom, init_said=said)

    async def _fail_exited(self, info: ct.ContainerInfo) -> None:
        await self._tell(instance=info.instance, app=info.app, epoch=info.epoch, state="FAILED",
                         container_id=info.id, reason=await self._exit_reason(info))


def addr(att: Attachment) -> dict[str, object]:
    return {"ip": att.ip, "mac": att.mac, "parent": att.parent, "lease_expires": att.lease_expires}
