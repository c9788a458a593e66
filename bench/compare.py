"""`make bench`: noops side by side with the raw engine and Docker Swarm on this machine, in one run.

Each repetition starts N containers of the same image and command on each system and scales them
back to 0 (bench/compare_systems.py says what each system's "started" and "stopped" mean), the
systems interleaved and their order rotated from one repetition to the next, so drift of the
machine spreads over all three.  Median and spread (min–max) of the repetitions go to
bench/RESULTS.md, in a section of its own that a re-run replaces (nothing else in the file is
touched).  ``--all`` also runs the other benchmarks and lists their figures beside their goals.

    .venv/bin/python -m bench.compare [--n 50] [--reps 3] [--all | --others-only] [--no-init] [--out FILE]
        [--systems raw,swarm,noops] [--noops-env NOOPS_NAME=VALUE ...]

Everything it makes is removed at the end, also on Ctrl-C or SIGTERM: the containers, the swarm
(it joins swarm mode only from ``inactive`` and leaves it), the throw-away noops platform.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform as pyplatform
import re
import statistics
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import compare_others, unwind_on_sigterm
from bench.compare_systems import CMD, IMAGE, Noops, Raw, Swarm

BEGIN, END = "<!-- make bench: begin -->", "<!-- make bench: end -->"
ALL_BEGIN, ALL_END = "<!-- make bench --all: begin -->", "<!-- make bench --all: end -->"


async def measure(n: int, reps: int, deadline_s: float, init: bool = True, noops_env: dict[str, str] | None = None,
                  only: set[str] | None = None) -> tuple[dict[str, list[dict[str, float]]], list[dict]]:
    """``only``: the systems to run (names as in the table); all three by default."""
    systems = [s for s in (Raw(n), Swarm(n, init=init), Noops(n, init=init, env=dict(noops_env or {})))
               if only is None or s.name in only]
    results: dict[str, list[dict[str, float]]] = {s.name: [] for s in systems}
    results["load average"] = []   # 1 min, after each system's turn: was the machine shared?
    t_end = time.monotonic() + deadline_s
    try:
        for s in systems:
            print(f"bench: setting up {s.name} ...", flush=True)
            await s.open()
        for rep in range(reps):
            k = rep % len(systems)
            order = systems[k:] + systems[:k]
            for s in order:
                if time.monotonic() > t_end:
                    raise TimeoutError(f"the whole run is bounded by {deadline_s:.0f}s")
                row = await s.start()
                row |= await s.stop()
                results[s.name].append(row)
                results["load average"].append({"load1": os.getloadavg()[0]})
                print(f"bench: rep {rep + 1} {s.name}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
        stages = next((s.stages for s in systems if isinstance(s, Noops)), [])
    finally:
        for s in reversed(systems):
            try:
                await s.close()
            except Exception as exc:   # the others are still cleaned up
                print(f"bench: cleaning up {s.name} failed: {exc}", flush=True)
    return results, stages


def cell(xs: list[float]) -> str:
    """Median (min–max) in seconds."""
    if not xs:
        return "–"
    return f"**{statistics.median(xs):.2f}** ({min(xs):.2f}–{max(xs):.2f})"


def ratio(a: list[float], b: list[float]) -> str:
    return f"{statistics.median(a) / statistics.median(b):.2f}×" if a and b else "–"


def _version(argv: list[str], pattern: str = r"(\d+\.\d+(\.\d+)?)") -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else "?"


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    mem_kb = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")))
    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    engine = _version(["docker", "version", "--format", "{{.Server.Version}}"], r"(\S+)")
    return (f"{os.cpu_count()} vCPU {cpu}, {mem_kb / 2**20:.0f} GB, Debian {debian}, kernel {pyplatform.release()}; "
            f"Docker {engine}, Python {pyplatform.python_version()}, PostgreSQL {_version(['psql', '--version'])}, "
            f"NATS {_version(['nats-server', '--version'])}, HAProxy {_version(['haproxy', '-v'])}")


def section(n: int, reps: int, results: dict[str, list[dict[str, float]]], stages: list[dict]) -> str:
    col = {name: {k: [r[k] for r in rows if k in r] for k in ("start_s", "stop_s")} for name, rows in results.items()}
    none: dict[str, list[float]] = {"start_s": [], "stop_s": []}   # a system not run (--systems)
    raw, swarm, nos = (col.get(name, none) for name in ("raw engine", "Docker Swarm", "noops"))
    lines = [BEGIN,
             f"## `make bench`: noops, the raw engine and Docker Swarm side by side (issue 13) — "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             "",
             f"{machine()}. `.venv/bin/python -m bench.compare --n {n} --reps {reps}` (`make bench`): {n} containers "
             f"of `{IMAGE}` running `{' '.join(CMD)}` on each system, {reps} repetitions, the systems interleaved "
             "(order rotated each repetition); seconds, **median** (min–max). Start: raw = parallel "
             "`docker run -d --network none` (8 at a time) until all run; Swarm = a service of N replicas "
             "(`--init`, `--no-resolve-image`; swarm on 127.0.0.1, pool 198.19.240.0/20) until all tasks run; "
             "noops = from the POST until all N instances are RUNNING with their DHCP addresses, healthy (an HTTP "
             "check every 1 s) and in HAProxy (its Runtime API), on a throw-away platform of 2 simulated hosts "
             "(spread). Stop (scale N → 0): raw = one `docker rm -f` until no container is left; Swarm = "
             "`service scale =0` until no task runs (Swarm keeps stopped tasks as history); noops = PATCH "
             "instances 0 until no container of the app is left (hostd: SIGTERM through the engine's init, "
             "then remove).",
             "",
             "| | raw engine | Docker Swarm | noops | noops / raw | goal |",
             "|---|---|---|---|---|---|",
             f"| start {n} | {cell(raw['start_s'])} | {cell(swarm['start_s'])} | {cell(nos['start_s'])} | "
             f"{ratio(nos['start_s'], raw['start_s'])} | ≤ 1.2× |",
             f"| stop {n} (scale → 0) | {cell(raw['stop_s'])} | {cell(swarm['stop_s'])} | {cell(nos['stop_s'])} | "
             f"{ratio(nos['stop_s'], raw['stop_s'])} | ≤ 1.5× |",
             ""]
    raw_cpu = [r["engine_cpu_s"] for r in results.get("raw engine", []) if "engine_cpu_s" in r]
    noops_cpu = [(r["engine_cpu_s"], r["platform_cpu_s"]) for r in results.get("noops", []) if "platform_cpu_s" in r]
    if raw_cpu and noops_cpu:
        # On two cores the start is CPU-bound: what each system made the machine do, in CPU seconds.
        lines += [f"CPU seconds during the start (medians): raw — the engine {statistics.median(raw_cpu):.2f}; "
                  f"noops — the engine {statistics.median(e for e, _ in noops_cpu):.2f} and the platform "
                  f"(services, NATS, the PostgreSQL backends of its database, HAProxy, dnsmasq) "
                  f"{statistics.median(p for _, p in noops_cpu):.2f}.", ""]
    noops_rows = results.get("noops", [])
    if noops_rows:
        marks = {k: [r[k] for r in noops_rows if k in r] for k in ("accepted_s", "running_s", "healthy_s", "in_lb_s")}
        lines += ["noops' start, from the POST (median of the repetitions): accepted (201) "
                  f"{statistics.median(marks['accepted_s']):.2f} s; all RUNNING with addresses "
                  f"{statistics.median(marks['running_s']):.2f} s; all healthy {statistics.median(marks['healthy_s']):.2f} s; "
                  f"all in HAProxy {statistics.median(marks['in_lb_s']):.2f} s."]
    if stages and all(stages):
        med = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
        lines += [f"Per instance, from the task log's events and the engine's `State.StartedAt` (medians over "
                  f"the instances, then over the repetitions): first PENDING {med['first_pending_s']:.2f} s and first "
                  f"STARTING {med['first_starting_s']:.2f} s after the POST; STARTING reports spread over "
                  f"{med['starting_spread_s']:.2f} s; PENDING → STARTING (placement delivered, `docker create`) "
                  f"{med['pending_to_starting_s']:.2f} s; STARTING → process started (`docker start`) "
                  f"{med['starting_to_started_s']:.2f} s; started → RUNNING (hostd's network step: macvlan, DHCP; "
                  f"the report and the registry's commit) {med['started_to_running_s']:.2f} s; STARTING → RUNNING "
                  f"{med['starting_to_running_s']:.2f} s (p90 {med['starting_to_running_p90_s']:.2f} s); the last process "
                  f"started → the last instance RUNNING {med['tail_s']:.2f} s."]
    load = [r["load1"] for r in results.get("load average", [])]
    if load:
        lines += ["", f"Load average (1 min) after each system's turn: {min(load):.1f} – {max(load):.1f} on "
                  f"{os.cpu_count()} vCPUs" + (" — the machine was shared with other runs; compare within this run "
                                               "only." if max(load) > 2 * (os.cpu_count() or 1) else ".")]
    lines += [END, ""]
    return "\n".join(lines)


def others_section(others: list[compare_others.Figure]) -> str:
    lines = [ALL_BEGIN, f"### The other benchmarks — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"`make bench BENCH_ARGS=--all` ran each as its own process on the same machine ({machine()}); its key "
             "figure beside the goal of its issue. A run without `--all` leaves this table as it was.", "",
             "| benchmark | figure | goal | command |", "|---|---|---|---|"]
    lines += [f"| {f.name} | {f.figure} | {f.goal} | `{f.command}` |" for f in others]
    return "\n".join([*lines, ALL_END, ""])


def replace_section(old: str, begin: str, end: str, text: str) -> str:
    """``old`` with the block between ``begin`` and ``end`` replaced by ``text`` (or appended)."""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        return head + text + ("\n" + tail if tail else "")
    return old.rstrip("\n") + ("\n\n" if old else "") + text


def write(out: Path, main_text: str | None, others_text: str | None) -> None:
    """Only this benchmark's own sections change (those given); everything else in the file stays."""
    text = out.read_text() if out.exists() else ""
    if main_text is not None:
        text = replace_section(text, BEGIN, END, main_text)
    if others_text is not None:
        text = replace_section(text, ALL_BEGIN, ALL_END, others_text)
    out.write_text(text)
    print(f"bench: wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="containers per system")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--all", action="store_true", help="also run the other benchmarks (adds ~15 min)")
    ap.add_argument("--others-only", action="store_true",
                    help="only the other benchmarks (their table; the side-by-side section stays as it is)")
    ap.add_argument("--no-init", action="store_true",
                    help="Swarm and noops without the engine's init (what a stop costs then); printed, not written "
                         "unless --out is given")
    ap.add_argument("--noops-env", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for the noops platform (repeatable), e.g. NOOPS_HOSTD_CONCURRENCY=4; printed, "
                         "not written unless --out is given")
    ap.add_argument("--systems", default="raw,swarm,noops",
                    help="which systems to run, comma separated (raw, swarm, noops); printed, not written unless "
                         "--out is given when not all three")
    ap.add_argument("--max-s", type=float, default=900.0, help="bound of the side-by-side part")
    ap.add_argument("--out", type=Path, default=None, help="default bench/RESULTS.md (with --no-init: none)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("make bench needs root (network namespaces, nftables, swarm mode)")
    if not 1 <= args.n <= 200 or not 1 <= args.reps <= 10:
        raise SystemExit("--n is 1..200 and --reps 1..10")
    noops_env = {}
    for item in args.noops_env:
        name, eq, value = item.partition("=")
        if not eq or not name.startswith("NOOPS_"):
            raise SystemExit(f"--noops-env takes NOOPS_NAME=VALUE, not {item!r}")
        noops_env[name] = value
    names = {"raw": "raw engine", "swarm": "Docker Swarm", "noops": "noops"}
    picked = [x.strip() for x in args.systems.split(",") if x.strip()]
    if not picked or set(picked) - set(names):
        raise SystemExit(f"--systems is a comma-separated choice of {', '.join(names)}, not {args.systems!r}")
    only = {names[x] for x in picked}
    default_run = not args.no_init and not noops_env and len(only) == 3
    # SIGTERM unwinds like Ctrl-C (asyncio.run cancels the run; the other benchmarks get SIGINT),
    # through every finally: containers, swarm, platform.
    unwind_on_sigterm()
    default_out = Path(__file__).with_name("RESULTS.md")
    if args.others_only:
        write(args.out or default_out, None, others_section(compare_others.run_all()))
        return
    results, stages = asyncio.run(measure(args.n, args.reps, args.max_s, init=not args.no_init, noops_env=noops_env,
                                          only=only))
    others = others_section(compare_others.run_all()) if args.all else None
    text = section(args.n, args.reps, results, stages)
    out = args.out or (default_out if default_run else None)
    if out is None:
        print(text)
    else:
        write(out, text, others)


if __name__ == "__main__":
    main()
