"""`make bench BENCH_ARGS=--all`: the other benchmarks, each run as its own process (bounded in time), its
key figure read from its output and set beside its goal (issues 3, 4, 5, 10, 11, 12 and 13)."""
from __future__ import annotations

import ast
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from devtools import infra


@dataclass(frozen=True)
class Figure:
    name: str
    figure: str
    goal: str
    command: str


def _dicts(out: str) -> list[dict]:
    """One dict per line (JSON or a Python repr), or one indented JSON document."""
    got = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                got.append(json.loads(line))
            except json.JSONDecodeError:
                got.append(ast.literal_eval(line))
    if not got and "{" in out:
        got.append(json.loads(out[out.index("{"):]))
    return got


def placer_core(out: str) -> str:
    rows = {d["strategy"]: d for d in _dicts(out) if "strategy" in d}
    rss = next((d["peak_rss_mb"] for d in _dicts(out) if "peak_rss_mb" in d), "?")
    b, s = rows["binpack"], rows["spread"]
    return (f"binpack {b['placements_per_s']:,}/s, {b['hosts_used']:,} hosts used vs lower bound "
            f"{b['lower_bound_hosts']:,}; spread {s['placements_per_s']:,}/s; peak RSS {rss} MB")


def placer_e2e(out: str) -> str:
    d = _dicts(out)[-1]
    if not d["all_running_s"]:
        return (f"not all RUNNING within its timeout: {d['running']:,} of {d['instances']:,} "
                f"(placed {d['placed']:,}, posted in {d['posted_s']} s)")
    return f"all RUNNING after {d['all_running_s']} s ({d['end_to_end_per_s']:,}/s); CPU s {d['cpu_s']}"


def floor_e2e(out: str) -> str:
    d = _dicts(out)[-1]
    return f"all recorded after {d['all_recorded_s']} s; CPU s {d['cpu_s']} (sum {d['cpu_sum']})"


def fanout(out: str) -> str:
    return "; ".join(f"{d['rate']}/s (achieved {d['achieved_rate']}): all sinks p50 {d['all_p50_ms']} ms, "
                     f"p99 {d['all_p99_ms']} ms"
                     + (f", registry {d['registry_cpu_ms_per_report']} ms CPU/report" if "registry_cpu_ms_per_report" in d else "")
                     + (f", load {d['load_avg_1m'][0]}" if "load_avg_1m" in d else "")
                     for d in _dicts(out) if "rate" in d)


def reconcile_core(out: str) -> str:
    d = _dicts(out)[-1]
    return f"one comparison {d['round_s_median']} s (best {d['round_s_best']}), core peak {d['core_peak_mib']} MiB"


def reconcile_round(out: str) -> str:
    d = _dicts(out)[-1]
    return "rounds " + ", ".join(f"{r['seconds']} s" for r in d["rounds"]) + f"; peak RSS {d['process_peak_rss_mib']} MiB"


def lines_with(*words: str) -> Callable[[str], str]:
    def pick(out: str) -> str:
        keep = [re.sub(r"\s+", " ", ln).strip() for ln in out.splitlines()
                if not ln.startswith("#") and any(w in ln for w in words)]
        return "; ".join(keep) or "no figure in the output"
    return pick


M = "-m"
BENCHES: list[tuple[str, list[str], float, Callable[[str], str], str]] = [
    ("placer core, 100k instances / 10k hosts", [M, "bench.placer_core"], 300, placer_core,
     "binpack within 1% of the lower bound"),
    ("placer core, 1M instances / 100k hosts",
     [M, "bench.placer_core", "--hosts", "100000", "--apps", "10000", "--instances", "1000000"], 900, placer_core,
     "≥ 100,000 placements/s, peak < 1 GiB, binpack within 1% of the lower bound"),
    ("placer end to end, 100k instances (hollow hosts)", [M, "bench.placer_e2e", "--timeout", "90"], 300,
     placer_e2e, "< 8 s"),
    ("  its floor: the same work with no scheduling or verification (bench.floor_e2e)", [M, "bench.floor_e2e"], 300,
     floor_e2e, "(what this machine allows)"),
    ("fan-out, report → every sink", [M, "bench.fanout_latency", "--rates", "1000,5000"], 600, fanout,
     "5,000 reports/s with p99 < 25 ms"),
    ("  its floor: the least a registry could do, HAProxy only (bench.floor_registry)",
     [M, "bench.fanout_latency", "--rates", "1000,5000", "--registry", "floor"], 600, fanout, "(what this machine allows)"),
    ("network: placement → RUNNING + DHCP, one at a time", [M, "bench.net_start", "--n", "50"], 600,
     lines_with("median"), "(part of the start: ≤ 1.2× raw)"),
    ("network: TCP round trip, 64 B", [M, "bench.net_latency", "--trips", "2000", "--reps", "4"], 600,
     lines_with("macvlan", "no macvlan"), "macvlan within 5% of the same switch without it"),
    ("reconciler core, 100k instances / 10k hosts, 1% drift", [M, "bench.reconcile_core"], 600, reconcile_core,
     "< 1 s, < 500 MiB"),
    ("reconciler round with I/O, same scale", [M, "bench.reconcile_round"], 600, reconcile_round, "reported"),
    ("gateway: Marathon /v2/apps?embed=apps.tasks, 10,000 apps × 3 tasks", [M, "bench.marathon_apps", "--reps", "3"],
     600, lines_with("GET /v2/apps"), "well under a second"),
    ("cluster map, 1,000 hosts / 10,000 instances (Chromium)", [M, "bench.map_render", "--reps", "3"], 600,
     lines_with("first render", "update:"), "stays responsive (reported)"),
]


def run_one(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """(exit code, stdout, stderr).  Past ``timeout`` (or when this process is interrupted) the
    benchmark gets SIGINT, so its own ``finally`` removes what it started (NATS, its database)."""
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=infra.REPO)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except BaseException:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise


def run_all() -> list[Figure]:
    figures = []
    for name, argv, timeout, read, goal in BENCHES:
        command = ".venv/bin/python " + " ".join(argv)
        print(f"bench: {name} ...", flush=True)
        try:
            code, out, err = run_one(argv, timeout)
            figure = read(out) if code == 0 else f"FAILED (exit {code}): {err.strip().splitlines()[-1:]}"
        except subprocess.TimeoutExpired:
            figure = f"not done within {timeout:.0f} s"
        except Exception as exc:   # one benchmark's surprise does not cost the others' figures
            figure = f"output not understood ({type(exc).__name__}: {exc})"
        print(f"bench: {name}: {figure}", flush=True)
        figures.append(Figure(name, figure, goal, command))
    return figures
