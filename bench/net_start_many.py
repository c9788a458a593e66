"""Benchmark: N instances started at once through hostd's own Agent, one hostd process per
simulated host (real Docker, real netlink, real dnsmasq; reports go to a recorder instead of
JetStream), next to N parallel `docker run -d --network none` (xargs -P 8) of the same image and
command on the same machine, interleaved, several repetitions.

    .venv/bin/python -m bench.net_start_many [--n 50] [--hosts 2] [--reps 3] [--concurrency 8]

Each host's hostd gets one Placements message with its share of the N starts (what the placer
publishes for one deploy) and handles it with ``Agent.handle_batch``, so the agent's own bound
on concurrent instances applies.  Reported per repetition: *total* (from the go to the last
RUNNING with its DHCP address), the spread of the STARTING reports, and STARTING → RUNNING per
instance (median, p90, max).  Everything made is removed on exit (containers by label).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nats.aio.msg import Msg

from bench.net_setup import IMAGE, Lab, percentile, sh
from bench.net_start import Recorder
from libs import messages
from services.hostd.agent import Agent
from services.hostd.leases import LeaseJournal
from services.hostd.network import Network
from services.hostd.runtime import connect_docker
from services.hostd.volumes import LoopVolumes

CMD = ["httpd", "-f", "-p", "8080", "-h", "/www"]  # as /work/shared/BASELINES.md


PHASES: dict[str, list[float]] = {}


def _timed(owner: object, attr: str, label: str) -> None:
    """Wrap ``owner.attr`` (a coroutine function) to record its durations under ``label``."""
    fn = getattr(owner, attr)

    async def wrapper(*a: object, **kw: object) -> object:
        t = time.perf_counter()
        try:
            return await fn(*a, **kw)
        finally:
            PHASES.setdefault(label, []).append(time.perf_counter() - t)
    setattr(owner, attr, wrapper)


def time_phases(runtime: object, network: Network) -> None:
    """--phases: how long each engine call and network step takes (the worker's own copies)."""
    from services.hostd import dhcp, netns
    for name in ("list", "create", "start", "inspect"):
        _timed(runtime, name, f"engine {name}")
    _timed(network, "attach", "network attach (all)")
    _timed(network, "_dhcp", "dhcp exchange (socket + acquire)")
    _timed(dhcp, "acquire", "dhcp acquire (DISCOVER..ACK)")
    for fn in ("in_netns", "in_root"):
        _timed(netns, fn, f"netns.{fn}")


def _batch(host: str, names: list[str], action: str, epoch: int, spec: messages.ContainerSpec) -> Msg:
    items = [messages.Placement(instance=i, app="sm", version=1, host=host, epoch=epoch, action=action, spec=spec)
             for i in names]
    data = messages.encode(messages.Placements(host=host, items=items))
    return Msg(_client=None, subject=f"bench.{host}", data=data)  # type: ignore[arg-type]


async def worker(host: str, nic: str, tag: str, names: list[str], concurrency: int, run_dir: Path,
                 phases: bool) -> None:
    """One hostd: wait for "go", start ``names``, print the reports; on "stop" remove them."""
    runtime = await connect_docker("")
    rec = Recorder()
    network = Network(host=host, parent=nic, journal=LeaseJournal(run_dir / f"leases-{host}"))
    if phases:
        time_phases(runtime, network)
    agent = Agent(cluster=f"bench{tag}", host=host, runtime=runtime, reporter=rec,  # type: ignore[arg-type]
                  stop_timeout_s=1, concurrency=concurrency, network=network,
                  volumes=LoopVolumes(root=run_dir / f"volumes-{host}", host=host))
    spec = messages.ContainerSpec(image=IMAGE, cmd=CMD, env={}, labels={"noops.bench": tag}, cpus=0.1, mem_mb=32,
                                  ports=[])
    loop = asyncio.get_running_loop()
    lines = sys.stdin

    async def line() -> str:
        return (await loop.run_in_executor(None, lines.readline)).strip()

    epoch = 0
    print("ready", flush=True)
    try:
        while (cmd := await line()) == "go":
            epoch += 1
            rec.reports.clear()
            PHASES.clear()
            cpu = time.process_time()
            verdicts = await agent.handle_batch([_batch(host, names, "start", epoch, spec)])
            out = {"verdicts": [v.outcome.name for v in verdicts],
                   "reports": [{"instance": r.instance, "state": r.state, "at": r.at, "ip": r.ip, "reason": r.reason}
                               for _, r in rec.reports],
                   "phases": PHASES, "cpu_s": time.process_time() - cpu}
            print(json.dumps(out), flush=True)
            if await line() != "stop":
                break
            # A fresh epoch per repetition; the stop leaves a tombstone, so the next round's
            # instances get new names (the placer never reuses one either).
            await agent.handle_batch([_batch(host, names, "stop", epoch, spec)])
            names = [f"{n.rsplit('-r', 1)[0]}-r{epoch + 1}" for n in names]
            print("stopped", flush=True)
    finally:
        await agent.health.close()
        await runtime.close()


@dataclass
class Round:
    total_s: float
    starting_spread_s: float
    start_to_running: list[float]
    hostd_cpu_s: float  # the hostds' own CPU time (all threads) for the round
    failed: int  # starts that ended FAILED (not counted in the times)


def noops_round(procs: list[subprocess.Popen]) -> Round:  # type: ignore[type-arg]
    t0 = time.time()
    for p in procs:
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
    results = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
    phases: dict[str, list[float]] = {}
    for res in results:
        for k, v in res.get("phases", {}).items():
            phases.setdefault(k, []).extend(v)
    for k, v in sorted(phases.items()):
        print(f"#   {k:36} n={len(v):3}  median {statistics.median(v) * 1000:7.1f} ms  "
              f"p90 {percentile(v, 0.9) * 1000:7.1f} ms  max {max(v) * 1000:7.1f} ms", flush=True)
    starting: dict[str, float] = {}
    running: dict[str, float] = {}
    failed: list[dict[str, object]] = []
    for res in results:
        for r in res["reports"]:
            if r["state"] == "STARTING":
                starting[r["instance"]] = r["at"]
            elif r["state"] == "RUNNING" and r["ip"]:
                running[r["instance"]] = r["at"]
            else:
                failed.append(r)
    for r in failed:
        print(f"#   start failed: {r['instance']} {r['state']} {r['reason']}", flush=True)
    if not running:
        raise RuntimeError("no instance came up")
    for p in procs:
        p.stdin.write("stop\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
    for p in procs:
        assert p.stdout.readline().strip() == "stopped"  # type: ignore[union-attr]
    return Round(total_s=max(running.values()) - t0, starting_spread_s=max(starting.values()) - min(starting.values()),
                 start_to_running=[running[i] - starting[i] for i in running], failed=len(failed),
                 hostd_cpu_s=sum(res["cpu_s"] for res in results))


def docker_round(n: int, tag: str) -> float:
    t0 = time.perf_counter()
    argv = ["docker", "run", "-d", "--network", "none", "--label", f"noops.bench={tag}", "--label",
            "noops.bench.raw=1", IMAGE, *CMD]
    subprocess.run(["xargs", "-P", "8", "-I", "{}", *argv], input="\n".join(map(str, range(n))) + "\n",
                   capture_output=True, text=True, check=True)
    total = time.perf_counter() - t0
    ids = sh("docker", "ps", "-q", "--filter", f"label=noops.bench={tag}", "--filter", "label=noops.bench.raw=1").split()
    if len(ids) != n:
        raise RuntimeError(f"{len(ids)} of {n} raw containers running")
    sh("docker", "rm", "-f", *ids)
    return total


def spawn_workers(lab: Lab, hosts: list[str], n: int, concurrency: int,
                  phases: bool) -> list[subprocess.Popen]:  # type: ignore[type-arg]
    procs = []
    for k, host in enumerate(hosts):
        names = [f"sm{lab.tag}-{i}-r1" for i in range(k, n, len(hosts))]
        p = subprocess.Popen([sys.executable, "-m", "bench.net_start_many", "--worker", host, "--nic", lab.net.nic(host),
                              "--tag", lab.tag, "--names", ",".join(names), "--concurrency", str(concurrency),
                              "--run-dir", str(lab.run_dir), *(["--phases"] if phases else [])],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        lab.procs.append(p)
        procs.append(p)
    for p in procs:
        if p.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
            raise RuntimeError("a worker did not start")
    return procs


def main(n: int, hosts: int, reps: int, concurrency: int, phases: bool) -> None:
    lab = Lab()
    try:
        lab.up()
        names = [f"s{k + 1}" for k in range(hosts)]
        for h in names:
            lab.add_host(h)
        procs = spawn_workers(lab, names, n, concurrency, phases)
        rounds: list[Round] = []
        raw: list[float] = []
        loads = [os.getloadavg()[0]]
        for _ in range(reps):
            raw.append(docker_round(n, lab.tag))
            rounds.append(noops_round(procs))
            loads.append(os.getloadavg()[0])
        for p in procs:
            p.stdin.close()  # type: ignore[union-attr]
            p.wait(timeout=60)
        print(f"# n={n}, hosts={hosts}, concurrency={concurrency} per host, reps={reps}, "
              f"load average (1 min) {min(loads):.2f} .. {max(loads):.2f}")
        print("| rep | raw docker run (xargs -P 8) | noops total | ratio | STARTING spread "
              "| STARTING→RUNNING median / p90 / max | hostd CPU per instance | failed |")
        print("|---|---|---|---|---|---|---|---|")
        for k, (d, r) in enumerate(zip(raw, rounds), start=1):
            s = r.start_to_running
            print(f"| {k} | {d:.2f} s | {r.total_s:.2f} s | {r.total_s / d:.2f}× | {r.starting_spread_s:.2f} s "
                  f"| {statistics.median(s):.2f} / {percentile(s, 0.9):.2f} / {max(s):.2f} s "
                  f"| {r.hostd_cpu_s / n * 1000:.0f} ms | {r.failed} |")
        ratios = [r.total_s / d for d, r in zip(raw, rounds)]
        print(f"median: raw {statistics.median(raw):.2f} s, noops {statistics.median(r.total_s for r in rounds):.2f} s, "
              f"ratio {statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})")
    finally:
        lab.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--hosts", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8, help="the agent's bound on instances at once, per host")
    ap.add_argument("--phases", action="store_true", help="print how long each engine call and network step took")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    ap.add_argument("--nic", default="", help=argparse.SUPPRESS)
    ap.add_argument("--tag", default="", help=argparse.SUPPRESS)
    ap.add_argument("--names", default="", help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker, args.nic, args.tag, args.names.split(","), args.concurrency,
                           Path(args.run_dir), args.phases))
    else:
        print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {platform.platform()}")
        main(args.n, args.hosts, args.reps, args.concurrency, args.phases)
