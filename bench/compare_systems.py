"""The three systems `make bench` (bench/compare.py) puts side by side, each with the same image and
command (examples/web.json's): start N containers until all run, then scale N → 0 until none is
left.  Every wait is bounded; every system removes what it made in ``close()``.

- ``Raw``: parallel ``docker run -d --network none`` (the limit), ``docker rm -f`` to stop.
- ``Swarm``: Docker Swarm on this engine (``swarm init`` on loopback, address pool 198.19.240.0/20,
  which no test network uses: devtools/simnet.py numbers clusters below 198.19.224.0), a service
  of N replicas; ``docker service scale =0`` to stop.
- ``Noops``: a throw-away platform of its own (NATS, database, run dir, simulated hosts with DHCP,
  HAProxy), from the POST to N instances RUNNING with their DHCP addresses, healthy (an HTTP
  check) and in HAProxy; PATCH instances 0 until no container of the app is left.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx

from bench.placer_e2e import cpu_seconds, postgres_pids
from devtools import infra
from devtools import sinks as sink_procs
from devtools.cluster import ClusterConfig, start_infra
from devtools.platform import Platform
from services.registry.sinks import haproxy_config as hc
from services.registry.sinks.haproxy import HAProxyError, runtime

IMAGE = "noops/base:latest"
CMD: list[str] = json.loads((infra.REPO / "examples" / "web.json").read_text())["cmd"]
SWARM_POOL = "198.19.240.0/20"
BENCH_LABEL = "noops.bench"


async def docker(*args: str, timeout: float = 60.0, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec("docker", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise TimeoutError(f"docker {' '.join(args[:3])}: no answer within {timeout:.0f}s") from None
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} failed: {err.decode().strip()[:300]}")
    return out.decode()


async def count(*filters: str, running: bool = True) -> int:
    args = ["ps", "-q"] + ([] if running else ["-a"])
    for f in filters:
        args += ["--filter", f]
    return len((await docker(*args)).split())


ENGINE = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc", "docker-init", "docker-proxy")


def engine_pids() -> list[int]:
    """The engine's processes now (its shims and runc come and go: an approximation)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() in ENGINE:
                    out.append(int(d.name))
            except OSError:
                pass
    return out


async def until(cond: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.1) -> float:
    """Seconds until ``cond`` holds (polled); TimeoutError past ``timeout``."""
    t0 = time.monotonic()
    while not await cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(interval)
    return time.monotonic() - t0


@dataclass
class Raw:
    n: int
    parallel: int = 8        # as /work/shared/BASELINES.md's `xargs -P 8`
    timeout_s: float = 120.0
    name: str = "raw engine"
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def label(self) -> str:
        return f"label={BENCH_LABEL}={self.tag}"

    async def open(self) -> None: ...

    async def start(self) -> dict[str, float]:
        sem = asyncio.Semaphore(self.parallel)

        async def one() -> None:
            async with sem:
                await docker("run", "-d", "--network", "none", "--label", f"{BENCH_LABEL}={self.tag}", IMAGE, *CMD)
        t0 = time.monotonic()
        engine0 = cpu_seconds(engine_pids())
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(self.n))), self.timeout_s)
        await until(lambda: _eq(count(self.label), self.n), self.timeout_s, "raw containers running")
        return {"start_s": time.monotonic() - t0, "engine_cpu_s": cpu_seconds(engine_pids()) - engine0}

    async def stop(self) -> dict[str, float]:
        t0 = time.monotonic()
        ids = (await docker("ps", "-aq", "--filter", self.label)).split()
        if ids:
            await docker("rm", "-f", *ids, timeout=self.timeout_s)
        await until(lambda: _eq(count(self.label, running=False), 0), self.timeout_s, "raw containers gone")
        return {"stop_s": time.monotonic() - t0}

    async def close(self) -> None:
        ids = (await docker("ps", "-aq", "--filter", self.label, check=False)).split()
        if ids:
            await docker("rm", "-f", *ids, check=False, timeout=self.timeout_s)


@dataclass
class Swarm:
    """Joins swarm mode only if this engine is in none (``inactive``), and leaves it in ``close``."""
    n: int
    timeout_s: float = 180.0
    init: bool = True
    name: str = "Docker Swarm"
    joined: bool = False
    had_gwbridge: bool = True   # until known: a network that was there before is left alone
    services: list[str] = field(default_factory=list)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    async def open(self) -> None:
        state = (await docker("info", "--format", "{{.Swarm.LocalNodeState}}")).strip()
        if state != "inactive":
            raise RuntimeError(f"this engine's swarm state is {state!r}: not touching it")
        self.had_gwbridge = bool((await docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$")).split())
        await docker("swarm", "init", "--advertise-addr", "127.0.0.1", "--default-addr-pool", SWARM_POOL)
        self.joined = True

    def _label(self, service: str) -> str:
        return f"label=com.docker.swarm.service.name={service}"

    async def start(self) -> dict[str, float]:
        service = f"nb-{self.tag}-{len(self.services)}"
        self.services.append(service)
        t0 = time.monotonic()
        # --init as noops runs them (NOOPS_HOSTD_INIT), so the scale-down is not the 10 s stop grace;
        # --no-resolve-image: the image is local (no registry round trip to pin its digest).
        await docker("service", "create", "--detach", "--quiet", "--name", service, "--replicas", str(self.n),
                     *(["--init"] if self.init else []), "--no-resolve-image", "--container-label", f"{BENCH_LABEL}={self.tag}", IMAGE, *CMD)
        await until(lambda: _eq(count(self._label(service)), self.n), self.timeout_s, "swarm tasks running",
                    interval=0.2)
        return {"start_s": time.monotonic() - t0}

    async def stop(self) -> dict[str, float]:
        service = self.services[-1]
        t0 = time.monotonic()
        await docker("service", "scale", "--detach", f"{service}=0")
        await until(lambda: _eq(count(self._label(service)), 0), self.timeout_s, "swarm tasks stopped", interval=0.2)
        out = {"stop_s": time.monotonic() - t0}
        # Swarm keeps stopped tasks' containers as history: removing the service removes them (untimed).
        await docker("service", "rm", service)
        await until(lambda: _eq(count(self._label(service), running=False), 0), self.timeout_s,
                    "swarm containers removed", interval=0.2)
        return out

    async def close(self) -> None:
        for service in self.services:
            await docker("service", "rm", service, check=False)
        if self.joined:
            # Leaving removes the ingress and docker_gwbridge networks swarm made, and its tasks.
            await docker("swarm", "leave", "--force", check=False)
            if not self.had_gwbridge:
                await docker("network", "rm", "docker_gwbridge", check=False)
            self.joined = False


@dataclass
class Noops:
    n: int
    hosts: tuple[str, ...] = ("h1", "h2")
    placement: str = "spread"
    timeout_s: float = 180.0
    init: bool = True       # NOOPS_HOSTD_INIT
    env: dict[str, str] = field(default_factory=dict)   # more settings for the platform (--noops-env)
    name: str = "noops"
    cfg: ClusterConfig | None = None
    platform: Platform | None = None
    pool: asyncpg.Pool | None = None
    client: httpx.AsyncClient | None = None
    app: str = ""
    stages: list[dict[str, float]] = field(default_factory=list)
    _posted_at: float = 0.0     # wall-clock time of the last POST (the task log's times are wall-clock)

    async def open(self) -> None:
        run_dir = Path(tempfile.mkdtemp(prefix="noops-bench-"))
        tag = uuid.uuid4().hex[:8]
        ports = infra.free_ports(7)
        self.cfg = ClusterConfig(run_dir=run_dir, cluster=f"v{tag}", db_name=f"noops_cmp_{tag}", nats_port=ports[0],
                                 nats_monitor_port=ports[1], gateway_port=ports[2], placer_port=ports[3],
                                 registry_port=ports[4], reconciler_port=ports[5], hostd_base_port=ports[6],
                                 hosts=self.hosts, host_cpus=8.0, host_mem_mb=16384,
                                 extra_env={"NOOPS_LOG_LEVEL": "WARNING", "NOOPS_HOSTD_INIT": str(self.init).lower(),
                                            **self.env})
        self.platform = Platform(self.cfg)   # from here on, close() removes it, even if the start fails
        # start_infra runs in a worker thread: it bootstraps tokens on a loop of its own.
        await asyncio.to_thread(start_infra, self.cfg, fresh_db=True)
        await asyncio.to_thread(self.platform.start_all)
        self.pool = await asyncpg.create_pool(self.cfg.db_dsn, min_size=1, max_size=2)
        self.client = self.platform.client()

    def spec(self) -> dict:
        web = json.loads((infra.REPO / "examples" / "web.json").read_text())
        return {**web, "id": self.app, "instances": self.n, "placement": self.placement,
                "health_checks": [{"protocol": "HTTP", "port_name": "http", "path": "/", "grace_period_s": 30,
                                   "interval_s": 1, "timeout_s": 1}]}

    async def _lb_members(self) -> set[str]:
        assert self.client is not None and self.cfg is not None
        addr = ((await self.client.get(f"/v1/apps/{self.app}")).json().get("lb") or {}).get("http", "")
        if not addr:
            return set()
        try:
            state = hc.parse_servers_state(await runtime(sink_procs.haproxy_paths(self.cfg.run_dir).admin_socket,
                                                         "show servers state"))
        except HAProxyError:
            return set()
        return {name for name, s in state.get(int(addr.rsplit(":", 1)[1]), {}).items() if s.enabled}

    async def _watch(self, seen: dict[str, dict], changed: asyncio.Event, subscribed: asyncio.Event) -> None:
        """The app's instance events from /v1/events (Server-Sent Events), latest per instance."""
        assert self.client is not None
        async with self.client.stream("GET", "/v1/events", params={"type": "instance", "app": self.app},
                                      timeout=httpx.Timeout(10.0, read=None)) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if line.startswith(": subscribed"):
                    subscribed.set()
                elif line.startswith("data: "):
                    ev = json.loads(line[6:])
                    if "instance" in ev:
                        seen[ev["instance"]] = ev
                        changed.set()

    def _all_up(self, seen: dict[str, dict]) -> bool:
        up = [e for e in seen.values() if e.get("state") == "RUNNING" and e.get("ip") and e.get("health") == "healthy"]
        return len(up) >= self.n

    async def start(self) -> dict[str, float]:
        assert self.client is not None
        self.app = f"cmp-{uuid.uuid4().hex[:6]}"
        marks: dict[str, float] = {}
        # The app's event stream tells when to look (as `noops apps deploy` waits): polling the
        # REST listing ten times a second cost the platform ~0.4 s of CPU a start (the gateway's
        # ~4.5 ms a request, and PostgreSQL's), beside an engine whose `docker run` is not polled.
        # The end is still read from the API and HAProxy; without events the poll is 1 s.
        seen: dict[str, dict] = {}
        changed, subscribed = asyncio.Event(), asyncio.Event()
        watch = asyncio.create_task(self._watch(seen, changed, subscribed))
        try:
            await asyncio.wait_for(asyncio.shield(subscribed.wait()), 10)
        except asyncio.TimeoutError:
            pass   # no stream: the 1 s poll below still ends the wait
        t0 = time.monotonic()
        self._posted_at = time.time()
        engine0, platform0 = cpu_seconds(engine_pids()), cpu_seconds(self._platform_pids())
        r = await self.client.post("/v1/apps", json=self.spec())
        assert r.status_code == 201, r.text
        marks["accepted_s"] = time.monotonic() - t0

        async def done() -> bool:
            if not self._all_up(seen) and not watch.done():
                changed.clear()
                try:   # the next event, or a look every second whatever the stream says
                    await asyncio.wait_for(changed.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                if not self._all_up(seen):
                    return False
            now = time.monotonic() - t0
            insts = (await self.client.get(f"/v1/apps/{self.app}/instances",   # type: ignore[union-attr]
                                           params={"phase": "live", "limit": 500})).json()
            running = {i["id"] for i in insts if i["state"] == "RUNNING" and i["ip"]}
            if len(running) == self.n:
                marks.setdefault("running_s", now)
                if all(i["healthy"] is True for i in insts):
                    marks.setdefault("healthy_s", now)
            if "running_s" in marks and await self._lb_members() == running:
                marks.setdefault("in_lb_s", now)
            return {"running_s", "healthy_s", "in_lb_s"} <= set(marks)
        try:
            await until(done, self.timeout_s, "noops instances running, healthy and in HAProxy")
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        marks["start_s"] = time.monotonic() - t0
        marks["engine_cpu_s"] = cpu_seconds(engine_pids()) - engine0
        # Everything noops runs on this machine besides the engine: its services, NATS, PostgreSQL,
        # HAProxy, dnsmasq (each simulated host's DHCP server), and the health checks they make.
        marks["platform_cpu_s"] = cpu_seconds(self._platform_pids()) - platform0
        self.stages.append(await self._stages())
        return marks

    def _platform_pids(self) -> list[int]:
        assert self.cfg is not None
        pids = [infra.read_pid(f) for f in self.cfg.run_dir.rglob("*.pid")]
        # PostgreSQL: the backends of the platform's own database (another run's are not noops').
        return [p for p in pids if p] + postgres_pids(self.cfg.db_name)

    async def _stages(self) -> dict[str, float]:
        """Where the start went, from the task log's events (their times are the registry's)."""
        assert self.pool is not None
        rows = await self.pool.fetch(
            "SELECT e.instance, e.state, min(e.at) AS at FROM instance_events e JOIN instances i ON i.id = e.instance "
            "WHERE i.app = $1 GROUP BY e.instance, e.state", self.app)
        at: dict[str, dict[str, float]] = {}
        for r in rows:
            at.setdefault(r["instance"], {})[r["state"]] = r["at"].timestamp()
        # The engine's own times: the process started (State.StartedAt) splits STARTING → RUNNING
        # into the engine's start and hostd's network step (macvlan, DHCP) with its report.
        ids = (await docker("ps", "-q", "--filter", f"label=noops.app={self.app}")).split()
        for c in json.loads(await docker("inspect", *ids)) if ids else []:
            inst = c["Config"]["Labels"].get("noops.instance", "")
            if inst in at:
                at[inst]["started"] = _unix(c["State"]["StartedAt"])
        both = [a for a in at.values() if {"PENDING", "STARTING", "RUNNING", "started"} <= set(a)]
        if not both:
            return {}
        starting = [a["STARTING"] for a in both]

        def med(a: str, b: str) -> float:
            return statistics.median(x[b] - x[a] for x in both)
        per = sorted(a["RUNNING"] - a["STARTING"] for a in both)
        # The lead-in (POST → the first placement acted on) and the tail (the last process started →
        # the last instance RUNNING): what noops adds around the engine's own work.
        return {"first_starting_s": min(starting) - self._posted_at,
                "first_pending_s": min(a["PENDING"] for a in both) - self._posted_at,
                "tail_s": max(a["RUNNING"] for a in both) - max(a["started"] for a in both),
                "starting_spread_s": max(starting) - min(starting),
                "pending_to_starting_s": med("PENDING", "STARTING"),
                "starting_to_started_s": med("STARTING", "started"),
                "started_to_running_s": med("started", "RUNNING"),
                "starting_to_running_s": statistics.median(per),
                "starting_to_running_p90_s": per[int(0.9 * (len(per) - 1))]}

    def _containers(self, running: bool) -> Callable[[], Awaitable[int]]:
        assert self.cfg is not None
        return lambda: count(f"label=noops.cluster={self.cfg.cluster}", f"label=noops.app={self.app}",  # type: ignore[union-attr]
                             running=running)

    async def stop(self) -> dict[str, float]:
        assert self.client is not None
        t0 = time.monotonic()
        r = await self.client.patch(f"/v1/apps/{self.app}", json={"instances": 0})
        assert r.status_code == 200, r.text
        none_left = self._containers(running=False)
        await until(lambda: _eq(none_left(), 0), self.timeout_s, "noops containers gone")
        out = {"stop_s": time.monotonic() - t0}
        await self.client.delete(f"/v1/apps/{self.app}")
        return out

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        if self.pool is not None:
            await self.pool.close()
        if self.platform is not None:
            self.platform.remove()
            self.platform = None


def _unix(rfc3339: str) -> float:
    """Docker's '2026-12-01T13:00:00.123456789Z' → unix time (to the microsecond)."""
    head, _, frac = rfc3339.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


async def _eq(got: Awaitable[int], want: int) -> bool:
    return await got == want
