"""Benchmark: latency from a hostd's IP report to every sink updated, at a given report rate.

Real parts: NATS (JetStream), PostgreSQL (the task log), the registry as its own process (its
own ``main``, bench/fanout_registry.py, which also takes the times), a real HAProxy
(master-worker, Runtime API) and real nftables (a table of its own).  This process only
generates: instances are inserted STARTING, then one RUNNING report per instance (standing in
for hostd) is published at the target rate.  CPU seconds of each process while the reports flow
are printed (``cpu_s``; PostgreSQL: this database's backends only).  No traffic is sent to the
(made-up, 198.18.0.0/15) addresses: HAProxy has no health checks and no request is proxied.

Per report three times are taken: the registry committed it (from then on the Prometheus
discovery endpoint, which reads the task log, lists it: the monitoring "sink"), HAProxy holds
the server, the nft set holds the address.  "all" is the latest of the three.

    .venv/bin/python -m bench.fanout_latency [--rates 100,1000] [--seconds 5] [--apps 200] [--profile DIR] [--dump DIR]
                                             [--registry floor]

``--registry floor`` runs bench/floor_registry.py in the registry's place: the least a registry
could do per batch (one statement, acks, one HAProxy session), the floor under the goal.

Starts its own NATS server, database, HAProxy and nft table; removes them at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench import unwind_on_sigterm
from bench.placer_e2e import cpu_seconds
from devtools import infra
from devtools import sinks as sink_procs
from devtools.cluster import ClusterConfig
from libs import bus, db, messages, subjects

HOSTS = ("h1", "h2", "h3", "h4")
# The process that takes the reports (--registry): the real registry, or the floor under it.
REGISTRIES = {"noops": "bench.fanout_registry", "floor": "bench.floor_registry"}
# Report addresses count up from here, inside 198.18.0.0/15 (room for 75,000 reports).
FIRST_ADDRESS = ipaddress.ip_address("198.18.200.1")


async def setup_rows(pool, apps: list[str], per_app: int) -> list[tuple[str, str, str]]:
    """(instance, app, host) rows, PENDING, epoch 1."""
    out = []
    spec = {"ports": [{"name": "http", "container_port": 8080}]}
    for a in apps:
        await pool.execute("INSERT INTO apps (id, version, spec, instances) VALUES ($1, 1, $2::jsonb, $3)",
                           a, json.dumps({"id": a, **spec}), per_app)
        await pool.execute("INSERT INTO app_versions (app, version, spec) VALUES ($1, 1, $2::jsonb)",
                           a, json.dumps({"id": a, **spec}))
    for a in apps:
        for k in range(per_app):
            out.append((f"{a}-{k:05d}", a, HOSTS[k % len(HOSTS)]))
    await pool.executemany("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state) "
                           "VALUES ($1, $2, 1, $3, 1, 0.01, 1, 'STARTING')", out)
    return out


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (every state of /proc/stat's cpu
    line but idle and iowait)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def _pids_where(match) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if match(d):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def postgres_backends(db_name: str) -> list[int]:
    """This database's backends (their title names it), not the server's other work (shared with
    other users of the machine: checkpointer and WAL writer are left out)."""
    return _pids_where(lambda d: (d / "comm").read_text().strip() == "postgres"
                       and f" {db_name} " in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))


def group_pids(pgid: int) -> list[int]:
    """Every process of a process group (HAProxy's master and workers, which change on reload)."""
    return _pids_where(lambda d: int((d / "stat").read_text().rsplit(") ", 1)[1].split()[2]) == pgid)


def registry_env(run_dir: Path, db_name: str, nats_port: int, paths, table: str, port_range) -> dict[str, str]:
    """The registry's environment as the platform gives it (devtools/cluster.py), with the
    benchmark's sinks: no health checks (the addresses are made up, and 25,000 servers checked
    every second would measure HAProxy's checks), no spare frontends, no periodic resync."""
    cfg = ClusterConfig(run_dir=run_dir, cluster=run_dir.name, db_name=db_name, nats_port=nats_port,
                        registry_port=infra.free_port(), hosts=())
    return {**cfg.env("registry"),
            "NOOPS_SINKS": "haproxy,nft", "NOOPS_HAPROXY_DIR": str(paths.dir), "NOOPS_NFT_TABLE": table,
            "NOOPS_LB_PORTS": f"{port_range[0]}-{port_range[1]}", "NOOPS_LB_SPARE_FRONTENDS": "0",
            "NOOPS_LB_CHECK_INTERVAL_S": "0", "NOOPS_SINKS_RESYNC_S": "3600", "NOOPS_LOG_LEVEL": "WARNING",
            "NOOPS_REGISTRY_CONTAINER_RANGES": "198.18.0.0/15"}


def parse_rates(text: str) -> list[int]:
    """``--rates``: report rates per second, comma-separated; a rate may repeat (each run is its own)."""
    try:
        rates = [int(r) for r in text.split(",")]
    except ValueError:
        rates = []
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"want positive whole reports per second, comma-separated (e.g. 100,1000), not {text!r}")
    return rates


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"want a positive number, not {text!r}")
        return value
    return parse


def run_label(position: int, rate: int) -> str:
    """What one run's apps, files and registry are named by: its place in ``--rates`` and its rate,
    so that a repeated rate (``--rates 1000,1000``) inserts apps of its own."""
    return f"{position + 1}-r{rate}"


async def run_rate(pool, nc, run_dir: Path, env: dict[str, str], rate: int, seconds: float, n_apps: int,
                   tag: str, db_name: str, nats_pid: int, haproxy_pgid: int, profile: Path | None = None,
                   dump: Path | None = None, registry: str = "noops", label: str = "") -> dict:
    label = label or run_label(0, rate)
    apps = [f"b{tag}-{label}-a{i}" for i in range(n_apps)]
    n = int(rate * seconds)
    rows = await setup_rows(pool, apps, (n + n_apps - 1) // n_apps)
    rows = rows[:n]
    published: dict[str, float] = {}
    out = run_dir / f"registry-{label}"
    out.mkdir()
    # The registry in its own process, as the platform runs it; this process only generates.
    pidfile = run_dir / f"registry-{label}.pid"
    rpid = infra.spawn([sys.executable, "-m", REGISTRIES[registry], "--out", str(out), "--expect", str(n)],
                       pidfile=pidfile, logfile=run_dir / "logs" / f"registry-{label}.log",
                       env={**os.environ, **env}, cwd=infra.REPO)
    spy: subprocess.Popen | None = None
    try:
        # Frontends for every app exist before the clock starts (one reload), as in steady state.
        await _until_file(out / "ready", 60, rpid, run_dir / "logs" / f"registry-{label}.log")
        procs = {"registry": lambda: [rpid], "bench (generator)": lambda: [os.getpid()],
                 "postgres (this db)": lambda: postgres_backends(db_name), "nats": lambda: [nats_pid],
                 "haproxy": lambda: group_pids(haproxy_pgid)}
        if profile is not None:   # py-spy on the registry while the reports flow (raw stacks, for flamegraph.pl)
            profile.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--nonblocking", "-r", "100",
                                    "-f", "raw", "-o", str(profile / f"registry-{label}.txt"), "--pid", str(rpid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = {k: cpu_seconds(f()) for k, f in procs.items()}
        load0, busy0 = os.getloadavg()[0], machine_busy_s()
        t0 = time.monotonic()
        for i, (iid, app, host) in enumerate(rows):
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            rep = messages.IpReport(instance=iid, app=app, host=host, epoch=1, state="RUNNING",
                                    container_id=f"c{i}", ip=str(FIRST_ADDRESS + i), at=time.time())
            published[iid] = time.monotonic()
            await nc.publish(subjects.report(host), messages.encode(rep))
        sent_s = time.monotonic() - t0
        try:
            await _until_file(out / "done.json", 180, rpid, run_dir / "logs" / f"registry-{label}.log")
        except TimeoutError:
            infra.stop_pidfile(pidfile)   # it writes what it has on the way out
            got = json.loads((out / "done.json").read_text()) if (out / "done.json").exists() else {"times": {}}
            missing = defaultdict(list)
            for iid, _, _ in rows:
                times = got["times"].get(iid) or [None, None, None]
                for sink, t in zip(("commit", "haproxy", "nft"), times):
                    if t is None:
                        missing[sink].append(iid)
            raise TimeoutError(f"reports not in every sink after 180 s: "
                               + "; ".join(f"{k}: {len(v)} (e.g. {v[:3]})" for k, v in missing.items())) from None
        cpu = {k: round(cpu_seconds(f()) - cpu0[k], 2) for k, f in procs.items()}
        load1, busy = os.getloadavg()[0], machine_busy_s() - busy0
        window_s = time.monotonic() - t0
        stages = registry_stages(int(env["NOOPS_REGISTRY_PORT"]))
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)   # py-spy writes its file on SIGINT
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(10)
            if spy.poll() is None:
                spy.kill()
        infra.stop_pidfile(pidfile)
    got = json.loads((out / "done.json").read_text())
    col = {k: i for i, k in enumerate(got["names"])}
    times = got["times"]
    lat = {k: np.array([(times[i][col[k]] - published[i]) * 1000 for i, _, _ in rows]) for k in ("commit", "haproxy", "nft")}
    lat["all"] = np.maximum.reduce([lat["commit"], lat["haproxy"], lat["nft"]])
    # What the fan-out adds after the registry committed (the part this code owns).
    lat["fanout"] = np.maximum(lat["haproxy"], lat["nft"]) - lat["commit"]
    if dump is not None:   # per report, in publish order: when it was sent (s after the first) and its latencies
        dump.mkdir(parents=True, exist_ok=True)
        sent = np.array([published[i] - t0 for i, _, _ in rows])
        np.savetxt(dump / f"reports-{label}.tsv", np.column_stack([sent, lat["commit"], lat["haproxy"], lat["nft"]]),
                   fmt="%.4f", delimiter="\t", header="sent_s\tcommit_ms\thaproxy_ms\tnft_ms")
    return {"rate": rate, "reports": n, "achieved_rate": round(n / sent_s, 1),
            **{f"{k}_p50_ms": round(float(np.percentile(v, 50)), 2) for k, v in lat.items()},
            **{f"{k}_p99_ms": round(float(np.percentile(v, 99)), 2) for k, v in lat.items()},
            "cpu_s": cpu, "registry_cpu_ms_per_report": round(cpu["registry"] / n * 1000, 3),
            "load_avg_1m": [round(load0, 2), round(load1, 2)],
            # The machine's CPU while the reports flowed, and the part that was not this run's:
            # other work on a shared machine (the figure to read the latencies against).
            "machine_busy_cores": round(busy / window_s, 2), "others_cores": round((busy - sum(cpu.values())) / window_s, 2),
            "registry_gc": got.get("gc"), "registry_stages": stages}


# The registry's own histograms, read from its /metrics at the end: how many and how long (mean).
STAGES = ("noops_registry_fanout_read_seconds", "noops_registry_sink_lag_seconds", "noops_registry_sink_step_seconds")


def registry_stages(port: int) -> dict[str, dict[str, float]]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError as exc:
        return {"error": {"metrics": str(exc)}}  # type: ignore[dict-item]
    sums: dict[str, dict[str, float]] = defaultdict(dict)
    for line in text.splitlines():
        for name in STAGES:
            for part in ("_sum", "_count"):
                if line.startswith(name + part):
                    key, _, value = line.rpartition(" ")
                    sums[name.removeprefix("noops_registry_") + key[len(name) + len(part):]][part[1:]] = float(value)
    return {k: {"n": v.get("count", 0), "mean_ms": round(v.get("sum", 0) / max(v.get("count", 0), 1) * 1000, 2)}
            for k, v in sums.items()}


async def _until_file(path: Path, timeout: float, pid: int, logfile: Path) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if not infra.pid_alive(pid):
            raise RuntimeError(f"the registry ({pid}) ended: {logfile.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} not written after {timeout:.0f} s")
        await asyncio.sleep(0.02)


async def main_async(rates: list[int], seconds: float, n_apps: int, profile: Path | None = None,
                     dump: Path | None = None, registry: str = "noops") -> list[dict]:
    tag = uuid.uuid4().hex[:6]
    run_dir = Path(tempfile.mkdtemp(prefix="noops-bench-fanout-"))
    (run_dir / "logs").mkdir()
    db_name = f"noops_bench_{tag}"
    table = f"noops_bench_{tag}"
    nport, mport = infra.free_ports(2)
    infra.ensure_postgres()
    dsn = infra.ensure_database(db_name, fresh=True)
    results = []
    try:
        infra.start_nats(run_dir, port=nport, monitor_port=mport)
        paths = sink_procs.start_haproxy(run_dir)
        pool = await db.connect(dsn, max_size=10)
        await db.migrate(pool)
        nc = await bus.connect(f"nats://127.0.0.1:{nport}", "bench")
        js = nc.jetstream()
        await bus.ensure_streams(js)
        nats_pid = infra.read_pid(run_dir / "nats.pid") or 0
        haproxy_pgid = infra.read_pid(run_dir / "haproxy.pid") or 0   # spawn() made it a session (and group) leader
        try:
            for k, rate in enumerate(rates):
                lo = 30000 + 1000 * (k % 2)          # below the ephemeral range, clear of cluster ranges
                env = registry_env(run_dir, db_name, nport, paths, table, (lo, lo + 999))
                results.append(await run_rate(pool, nc, run_dir, env, rate, seconds, n_apps, tag, db_name,
                                              nats_pid, haproxy_pgid, profile, dump, registry, run_label(k, rate)))
                print(json.dumps(results[-1]), flush=True)
        finally:
            await nc.close()
            await pool.close()
    finally:
        sink_procs.stop_haproxy(run_dir)
        infra.stop_pidfile(run_dir / "nats.pid")
        sink_procs.delete_nft_table(table)
        infra.drop_database(db_name)
        shutil.rmtree(run_dir, ignore_errors=True)   # NATS store, logs, sockets
    return results


def main() -> None:
    unwind_on_sigterm()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", type=parse_rates, default=parse_rates("100,1000"),
                   help="report rates per second, comma-separated; a rate may repeat")
    p.add_argument("--seconds", type=_positive(float), default=5.0)
    p.add_argument("--apps", type=_positive(int), default=200)
    p.add_argument("--profile", type=Path, help="directory for py-spy's raw stacks of the registry, one file per run")
    p.add_argument("--dump", type=Path, help="directory for each report's send time and latencies, one file per run")
    p.add_argument("--registry", choices=sorted(REGISTRIES), default="noops",
                   help="noops: the real registry; floor: bench/floor_registry.py, the least a registry could do")
    args = p.parse_args()
    asyncio.run(main_async(args.rates, args.seconds, args.apps, args.profile, args.dump, args.registry))


if __name__ == "__main__":
    main()
