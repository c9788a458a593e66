"""`make chaos`: the fault matrix on a throw-away local cluster, with a bounded HTTP load through
HAProxy meanwhile.  Writes bench/CHAOS.md: per fault, instances restarted (a container of the
app's that stopped running), lost (LOST events), duplicated (most containers of the app seen at
once, above what its deployment allows), requests that failed through the load balancer, and the
time from the end of the fault until the app is whole again.

Every fault is caused for real, by PID or on the link, and undone in a ``finally``.  The cluster
(its own ports, database, network numbering and run directory) is removed at the end.

    .venv/bin/python -m bench.chaos [--only NAME ...] [--out bench/CHAOS.md]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform as pyplatform
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import httpx

from devtools import infra
from devtools.cluster import ClusterConfig, start_infra
from devtools.platform import Platform

N = 10              # instances of the app every fault runs against
ROLLING_N = 30      # instances of the rolling update the service kills run in the middle of
LOAD_RPS = 40       # bounded load through HAProxy while a fault runs
CMD = ["httpd", "-f", "-p", "8080", "-h", "/www"]


@dataclass
class Row:
    fault: str
    restarted: int = 0
    lost: int = 0
    duplicated: int = 0
    requests: int = 0
    failed: int = 0
    converge_s: float = 0.0
    note: str = ""


@dataclass
class Load:
    """GETs through the app's HAProxy frontend at a fixed rate until stopped (bounded in time)."""
    url: str
    rps: float = LOAD_RPS
    max_s: float = 180.0
    sent: int = 0
    failed: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        deadline = time.monotonic() + self.max_s
        async with httpx.AsyncClient(timeout=3.0) as c:
            while not self._stop.is_set() and time.monotonic() < deadline:
                self.sent += 1
                try:
                    if (await c.get(self.url)).status_code >= 500:
                        self.failed += 1
                except httpx.HTTPError:
                    self.failed += 1
                try:
                    await asyncio.wait_for(self._stop.wait(), 1 / self.rps)
                except asyncio.TimeoutError:
                    pass

    def stop(self) -> None:
        self._stop.set()


def running_containers(cluster: str, app: str) -> set[str]:
    out = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"label=noops.cluster={cluster}",
                          "--filter", f"label=noops.app={app}"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@dataclass
class Peak:
    """The most containers of the app seen running at once (sampled every half second)."""
    cluster: str
    app: str
    most: int = 0

    async def watch(self) -> None:
        while True:
            self.most = max(self.most, len(running_containers(self.cluster, self.app)))
            await asyncio.sleep(0.5)


async def until(cond: Callable[[], Awaitable[object]], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not await cond():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(0.2)
    return time.monotonic() - start


class Chaos:
    def __init__(self, p: Platform, pool: asyncpg.Pool, c: httpx.AsyncClient) -> None:
        self.p, self.pool, self.c = p, pool, c
        self.cluster = p.cfg.cluster

    async def running(self, app: str, n: int, version: int | None = None) -> bool:
        try:
            insts = (await self.c.get(f"/v1/apps/{app}/instances")).json()
        except httpx.HTTPError:
            return False
        live = [i for i in insts if i.get("state") == "RUNNING" and (version is None or i["version"] == version)]
        return len(live) == n and len(running_containers(self.cluster, app)) == n

    async def deploy(self, app: str, n: int) -> str:
        r = await self.c.post("/v1/apps", json=self._spec(app, n))
        assert r.status_code == 201, r.text
        await until(lambda: self.running(app, n), 180, f"{app} running")

        async def lb() -> str:
            return ((await self.c.get(f"/v1/apps/{app}")).json().get("lb") or {}).get("http", "")
        await until(lb, 30, "lb port")
        return f"http://{await lb()}/"

    async def remove(self, app: str) -> None:
        await self.c.delete(f"/v1/apps/{app}")
        await until(lambda: _async(not running_containers(self.cluster, app)), 120, f"{app} removed")

    async def events(self, app: str, state: str, since: datetime) -> int:
        return await self.pool.fetchval(
            "SELECT count(*) FROM instance_events e JOIN instances i ON i.id = e.instance "
            "WHERE i.app = $1 AND e.state = $2 AND e.at >= $3", app, state, since)

    async def scenario(self, name: str, fault: Callable[[], Awaitable[str | None]], *, n: int = N,
                       expect_replaced: Callable[[set[str]], int] | None = None) -> Row:
        app = f"c{uuid.uuid4().hex[:6]}"
        url = await self.deploy(app, n)
        before = running_containers(self.cluster, app)
        since = datetime.now(timezone.utc)
        load = Load(url)
        loader = asyncio.create_task(load.run())
        peak = Peak(self.cluster, app)
        watcher = asyncio.create_task(peak.watch())
        row = Row(name)
        try:
            row.note = await fault() or ""
            row.converge_s = round(await until(lambda: self.running(app, n), 180, f"{name}: converged"), 1)
        finally:
            load.stop()
            watcher.cancel()
            await asyncio.gather(loader, watcher, return_exceptions=True)
        after = running_containers(self.cluster, app)
        gone = before - after
        row.restarted = len(gone) - (expect_replaced(gone) if expect_replaced else 0)
        row.lost = await self.events(app, "LOST", since)
        row.duplicated = max(0, peak.most - n)
        row.requests, row.failed = load.sent, load.failed
        await self.remove(app)
        return row

    # ---------------------------------------------------------------- the faults

    def nats_outage(self, seconds: float, *, wipe: bool = False) -> Callable[[], Awaitable[None]]:
        async def fault() -> None:
            self.p.stop_nats(wipe=wipe)
            try:
                await asyncio.sleep(seconds)   # the outage itself
            finally:
                self.p.start_nats()
        return fault

    def hostd_restart(self, *, graceful: bool) -> Callable[[], Awaitable[None]]:
        async def fault() -> None:
            if graceful:
                infra.stop_pidfile(self.p.cfg.run_dir / "hostd-h1.pid", timeout=10)
            else:
                self.p.kill("hostd-h1")
            await asyncio.sleep(4)            # an upgrade's gap
            self.p.start("hostd-h1")
        return fault

    def db_outage(self, seconds: float) -> Callable[[], Awaitable[None]]:
        async def fault() -> None:
            self.p.stop_postgres()
            try:
                await asyncio.sleep(seconds)
            finally:
                self.p.start_postgres()
        return fault

    def host_loss(self) -> Callable[[], Awaitable[str]]:
        async def fault() -> str:
            self.p.cut_host("h1")
            self.p.kill("hostd-h1")
            try:
                await until(lambda: self._host_state("h1", "DOWN"), 60, "h1 DOWN")
                await asyncio.sleep(15)       # long enough for the replacements to take over
            finally:
                self.p.mend_host("h1")
                self.p.start("hostd-h1")
            return "only h1's instances replaced"
        return fault

    def kill_mid_rolling_update(self, app: str, service: str) -> Callable[[], Awaitable[str]]:
        async def fault() -> str:
            r = await self.c.put(f"/v1/apps/{app}", json={**self._spec(app, ROLLING_N), "env": {"V": "2"}})
            assert r.status_code == 200, r.text
            await until(lambda: self._some_new(app), 60, "rolling update under way")
            self.p.kill(service)
            self.p.start(service)
            await until(lambda: self.running(app, ROLLING_N, version=2), 180, "v2 everywhere")
            return ""
        return fault

    async def _some_new(self, app: str) -> bool:
        insts = (await self.c.get(f"/v1/apps/{app}/instances")).json()
        return any(i["version"] == 2 and i["state"] in ("STARTING", "RUNNING") for i in insts)

    async def _host_state(self, host: str, state: str) -> bool:
        try:
            return any(h["id"] == host and h["state"] == state for h in (await self.c.get("/v1/hosts")).json())
        except httpx.HTTPError:
            return False

    def _spec(self, app: str, n: int) -> dict:
        return {"id": app, "image": "noops/base:latest", "cmd": CMD, "instances": n, "placement": "spread",
                "resources": {"cpus": 0.05, "mem_mb": 16}, "ports": [{"name": "http", "container_port": 8080}]}


async def _async(value: object) -> object:
    return value


async def main(only: list[str], out: Path) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="noops-chaos-"))
    tag = uuid.uuid4().hex[:8]
    ports = infra.free_ports(10)
    cfg = ClusterConfig(run_dir=run_dir, cluster=f"x{tag}", db_name=f"noops_chaos_{tag}", nats_port=ports[0],
                        nats_monitor_port=ports[1], gateway_port=ports[2], placer_port=ports[3],
                        registry_port=ports[4], reconciler_port=ports[5], hostd_base_port=ports[6],
                        hosts=("h1", "h2", "h3"), host_cpus=8.0, host_mem_mb=16384,
                        extra_env={"NOOPS_LOG_FORMAT": "text"})
    p = Platform(cfg)
    rows: list[Row] = []
    order: list[str] = []
    try:   # start_infra inside: what a failed start left running is stopped below too
        start_infra(cfg, fresh_db=True)
        p.start_all()
        pool = await asyncpg.create_pool(cfg.db_dsn, min_size=0, max_size=2)  # 0: no floor to restore (and log) while PostgreSQL is down
        async with p.client() as c:  # with the cluster's admin token
            ch = Chaos(p, pool, c)
            on_h1 = lambda gone: len(gone)   # noqa: E731 -- host loss: what went was h1's, by design
            matrix: list[tuple[str, Callable[[], Awaitable[Row]]]] = [
                ("NATS stopped 5 s", lambda: ch.scenario("NATS stopped 5 s", ch.nats_outage(5))),
                ("NATS stopped 60 s", lambda: ch.scenario("NATS stopped 60 s", ch.nats_outage(60))),
                ("NATS back without its store", lambda: ch.scenario("NATS back without its store",
                                                                    ch.nats_outage(5, wipe=True))),
                ("hostd SIGKILL, back in 4 s", lambda: ch.scenario("hostd SIGKILL, back in 4 s",
                                                                   ch.hostd_restart(graceful=False))),
                ("hostd stopped, back in 4 s", lambda: ch.scenario("hostd stopped, back in 4 s",
                                                                   ch.hostd_restart(graceful=True))),
                ("PostgreSQL stopped 30 s", lambda: ch.scenario("PostgreSQL stopped 30 s", ch.db_outage(30))),
                ("host lost (link cut, hostd killed)", lambda: ch.scenario(
                    "host lost (link cut, hostd killed)", ch.host_loss(), expect_replaced=on_h1)),
            ]
            for svc in ("gateway", "placer", "registry", "reconciler", "hostd-h2"):
                name = f"SIGKILL {svc} mid rolling update of {ROLLING_N}"

                async def rolling(svc: str = svc, name: str = name) -> Row:
                    return await _rolling(ch, f"c{uuid.uuid4().hex[:6]}", name, svc)
                matrix.append((name, rolling))
            order = [name for name, _ in matrix]
            for name, run in matrix:
                if only and not any(o.lower() in name.lower() for o in only):
                    continue
                print(f"chaos: {name} ...", flush=True)
                try:
                    row = await run()
                except Exception as exc:   # the table says what broke; the other faults still run
                    row = Row(name, note=f"ERROR: {exc}")
                print(f"chaos: {row}", flush=True)
                rows.append(row)
        await pool.close()
    finally:
        p.remove()
    if rows:
        write(out, rows, order)


async def _rolling(ch: Chaos, app: str, name: str, service: str) -> Row:
    """The rolling-update variant: the app starts at ROLLING_N, version 2 rolls out while a service
    is SIGKILLed; restarts count containers of version 1 that went before their turn (none may),
    and the surge the update's maximum_over_capacity allows is not a duplicate."""
    url = await ch.deploy(app, ROLLING_N)
    since = datetime.now(timezone.utc)
    peak = Peak(ch.cluster, app)
    watcher = asyncio.create_task(peak.watch())
    load = Load(url)
    loader = asyncio.create_task(load.run())
    row = Row(name)
    t = time.monotonic()
    try:
        await ch.kill_mid_rolling_update(app, service)()
        row.converge_s = round(time.monotonic() - t, 1)
    finally:
        load.stop()
        watcher.cancel()
        await asyncio.gather(loader, watcher, return_exceptions=True)
    row.requests, row.failed = load.sent, load.failed
    placed = await ch.pool.fetchval("SELECT count(*) FROM instances WHERE app = $1 AND version = 2", app)
    row.duplicated = max(0, placed - ROLLING_N) + max(0, peak.most - 2 * ROLLING_N)
    row.lost = await ch.events(app, "LOST", since)
    row.note = f"{placed} v2 instances placed for {ROLLING_N}"
    await ch.remove(app)
    return row


def _kept_rows(out: Path, ran: set[str]) -> list[str]:
    """Table lines of an earlier run for the faults this run did not take (``--only``)."""
    if not out.exists():
        return []
    return [ln for ln in out.read_text().splitlines()
            if ln.startswith("| ") and not ln.startswith("| fault ") and ln.split(" | ")[0][2:] not in ran]


def write(out: Path, rows: list[Row], order: list[str]) -> None:
    head = (f"# `make chaos` — the fault matrix\n\nRun {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on "
            f"{pyplatform.node()} ({os.cpu_count()} cores, Python {pyplatform.python_version()}); a cluster of "
            f"3 simulated hosts, an app of {N} instances (spread) under {LOAD_RPS} requests/s through HAProxy for "
            f"each fault, {ROLLING_N} for the rolling updates. `restarted`: containers of the app that stopped "
            f"running (for host loss: beyond the lost host's own); `lost`: LOST events; `duplicated`: containers "
            f"above what the deployment allows; `failed`: requests through HAProxy that failed (connect error or "
            f"5xx); `converge`: seconds from the end of the fault until the app is whole again (rolling updates: "
            f"from the new version's PUT until it serves everywhere). A run with `--only` keeps the other rows "
            f"of the earlier table.\n\n")
    lines = ["| fault | restarted | lost | duplicated | requests | failed | converge (s) | note |",
             "|---|---|---|---|---|---|---|---|"]
    fresh = {r.fault: f"| {r.fault} | {r.restarted} | {r.lost} | {r.duplicated} | {r.requests} | {r.failed} | "
                      f"{r.converge_s} | {r.note} |" for r in rows}
    kept = {ln.split(" | ")[0][2:]: ln for ln in _kept_rows(out, set(fresh))}
    lines += [fresh.get(name) or kept[name] for name in order if name in fresh or name in kept]
    out.write_text(head + "\n".join(lines) + "\n")
    print(f"chaos: wrote {out}")


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=[], help="run only the faults whose name contains one of these")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("CHAOS.md"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("make chaos needs root (network namespaces, nftables, stopping PostgreSQL)")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    asyncio.run(main(args.only, args.out))


if __name__ == "__main__":
    run()
