"""An in-process hostd for integration tests, on the session's real NATS and Docker engine.

The test drives it the way the placer does (Placements on JetStream) and watches what the
registry would see (IpReports, via a core subscription so the REPORTS work queue is left alone).
Cleanup removes every container labelled with the test's host, its durable consumer and its
messages, whether the test passed or not.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import httpx
import nats
import pytest_asyncio
from aiodocker.containers import DockerContainer
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from devtools import infra, natsconf, simnet
from devtools.cluster import ClusterConfig
from libs import messages, subjects
from libs.settings import HostdSettings
from libs.supervise import cancel_within, task_stack
from services.hostd.containers import LABEL_CLUSTER, LABEL_HOST, LABEL_INSTANCE
from services.hostd.main import load_settings, main
from tests.support.wait import eventually

BASE_IMAGE = "noops/base:latest"
HTTPD = ["httpd", "-f", "-p", "8080", "-h", "/www"]
# hostd's shutdown: placements get stop_timeout (1 s here) + 5 s, each later step at most 15 s.
STOP_DEADLINE_S = 60.0


def spec(*, image: str = BASE_IMAGE, cmd: list[str] | None = None, cpus: float = 0.5, mem_mb: int = 64,
         env: dict[str, str] | None = None, labels: dict[str, str] | None = None, disk_mb: int = 0,
         egress_mbit: int = 0, volume_path: str = "/data", keep_volume: bool = False) -> messages.ContainerSpec:
    return messages.ContainerSpec(image=image, cmd=HTTPD if cmd is None else cmd, env=env or {"GREETING": "hi"},
                                  labels=labels or {"team": "tests"}, cpus=cpus, mem_mb=mem_mb,
                                  ports=[messages.PortSpec(name="http", container_port=8080)],
                                  disk_mb=disk_mb, egress_mbit=egress_mbit, volume_path=volume_path,
                                  keep_volume=keep_volume)


@dataclass
class HostdUnderTest:
    cfg: ClusterConfig
    nc: nats.NATS
    docker: aiodocker.Docker
    host: str
    env: dict[str, str] = field(default_factory=dict)
    reports: list[messages.IpReport] = field(default_factory=list)
    heartbeats: list[messages.Heartbeat] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    settings: HostdSettings | None = None
    _subs: list[Subscription] = field(default_factory=list)

    # ------------------------------------------------------------ lifecycle

    async def watch(self) -> None:
        async def on_report(msg: Msg) -> None:
            self.reports.append(messages.decode(msg.data, messages.IpReport))

        async def on_heartbeat(msg: Msg) -> None:
            self.heartbeats.append(messages.decode(msg.data, messages.Heartbeat))

        self._subs.append(await self.nc.subscribe(subjects.report(self.host), cb=on_report))
        self._subs.append(await self.nc.subscribe(subjects.heartbeat(self.host), cb=on_heartbeat))
        await self.nc.flush()

    def build_settings(self, **extra: str) -> HostdSettings:
        infra.ensure_nats_identities(self.cfg.run_dir, [self.host], monitor_port=self.cfg.nats_monitor_port)
        return load_settings({
            "NOOPS_CLUSTER": self.cfg.cluster,
            "NOOPS_NATS_URL": self.cfg.nats_url,
            "NOOPS_HOST_ID": self.host,
            "NOOPS_HOSTD_PORT": str(infra.free_port()),
            "NOOPS_STOP_TIMEOUT_S": "1",
            "NOOPS_HEARTBEAT_INTERVAL_S": "0.2",
            "NOOPS_CONNECT_RETRY_MAX_S": "0.5",
            "NOOPS_HOSTD_LOOP_DIR": str(self.cfg.volume_dir),
            "NOOPS_HOSTD_STATE_DIR": str(self.state_dir.parent),
            "NOOPS_HOSTD_DHCP_TIMEOUT_S": "3",
            **self.cfg.net.hostd_env(self.host),
            **natsconf.env(self.cfg.run_dir, f"hostd-{self.host}"),
            **self.env, **extra,
        })

    async def start(self, *, wait_ready: bool = True, **extra: str) -> None:
        assert self.task is None, "already running"
        self.settings = self.build_settings(**extra)
        self.task = asyncio.create_task(main(self.settings), name=f"hostd-{self.host}")
        if wait_ready:
            await eventually(self.ready, timeout=30, what=f"hostd {self.host} /healthz ready")

    async def ready(self) -> bool:
        assert self.settings is not None and self.task is not None
        if self.task.done():
            self.task.result()  # surface a crash instead of timing out
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                r = await client.get(f"http://127.0.0.1:{self.settings.port}/healthz")
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    async def stop(self) -> None:
        if self.task is not None:
            task, self.task = self.task, None
            # Bounded: a hostd that does not stop is a bug to see (with every task's stack), not a
            # hung session.  hostd's own shutdown waits at most grace + cancel bounds.
            stuck = await cancel_within([task], what=f"hostd {self.host}", timeout_s=STOP_DEADLINE_S)
            if stuck:
                others = "\n".join(f"--- {t.get_name()}\n{task_stack(t)}" for t in asyncio.all_tasks()
                                   if t is not asyncio.current_task())
                raise AssertionError(f"hostd {self.host} did not stop within {STOP_DEADLINE_S:.0f} s; tasks:\n{others}")

    async def cleanup(self) -> None:
        await self.stop()
        for sub in self._subs:
            await sub.unsubscribe()
        for c in await self.containers():
            await c.delete(force=True)
        # Volumes and the simulated NIC this host had (its containers are gone by now).
        simnet.remove_volumes_of(self.cfg.volume_dir / f"{self.cfg.cluster}-{self.host}")
        simnet.remove_host(self.cfg.net, self.host)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        js = self.nc.jetstream()
        consumer = subjects.hostd_consumer(self.host)
        for coro in (js.delete_consumer(consumer.stream.name, consumer.durable),
                     js.purge_stream(subjects.PLACEMENTS.name, subject=subjects.place(self.host)),
                     js.purge_stream(subjects.REPORTS.name, subject=subjects.report(self.host))):
            try:
                await coro
            except Exception:
                pass

    # ------------------------------------------------------------ driving and observing

    @property
    def state_dir(self) -> Path:
        """This hostd's own state directory (lease journal, tombstones)."""
        return self.cfg.run_dir / "hostd-state" / f"{self.cfg.cluster}-{self.host}"

    async def never(self, cond: Callable[[], Any], *, for_s: float, what: str, interval: float = 0.1) -> None:
        """Poll ``cond`` (sync or async) for ``for_s`` seconds; fail as soon as it is truthy."""
        deadline = time.monotonic() + for_s
        while time.monotonic() < deadline:
            got = cond()
            if inspect.isawaitable(got):
                got = await got
            assert not got, f"{what} appeared: {got!r}"
            await asyncio.sleep(interval)

    @property
    def nic(self) -> str:
        return self.cfg.net.nic(self.host)

    async def place(self, instance: str, *, action: str = "start", epoch: int = 1, app: str = "web",
                    container: messages.ContainerSpec | None = None, address: str = "") -> None:
        p = messages.Placement(instance=instance, app=app, version=1, host=self.host, epoch=epoch,
                               action=action, spec=container or spec(), address=address)  # type: ignore[arg-type]
        await self.nc.jetstream().publish(subjects.place(self.host),
                                          messages.encode(messages.Placements(host=self.host, items=[p])))

    def states(self, instance: str) -> list[str]:
        return [r.state for r in self.reports if r.instance == instance]

    async def report(self, instance: str, state: str, *, after: int = 0, timeout: float = 30) -> messages.IpReport:
        """The first report of ``state`` for ``instance`` among reports[after:]."""
        def found() -> messages.IpReport | None:
            return next((r for r in self.reports[after:] if r.instance == instance and r.state == state), None)
        return await eventually(found, timeout=timeout, what=f"{state} report for {instance}")

    async def containers(self, instance: str | None = None) -> list[DockerContainer]:
        labels = [f"{LABEL_CLUSTER}={self.cfg.cluster}", f"{LABEL_HOST}={self.host}"]
        if instance is not None:
            labels.append(f"{LABEL_INSTANCE}={instance}")
        return await self.docker.containers.list(all=True, filters=json.dumps({"label": labels}))


# ---------------------------------------------------------------- fixtures (import them into a test module)

@pytest_asyncio.fixture(scope="session")
async def docker(cluster_cfg: ClusterConfig) -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker()
    yield client
    await client.close()


@pytest_asyncio.fixture
async def hostd(cluster_cfg: ClusterConfig, nc: nats.NATS, docker: aiodocker.Docker,
                uid: str) -> AsyncIterator[HostdUnderTest]:
    """A not-yet-started hostd for host ``hx<uid>``, its reports and heartbeats already watched."""
    h = HostdUnderTest(cfg=cluster_cfg, nc=nc, docker=docker, host=f"hx{uid}")
    simnet.add_host(cluster_cfg.net, h.host)  # this host's "physical NIC" on the session's switch
    await h.watch()
    try:
        yield h
    finally:
        await h.cleanup()
