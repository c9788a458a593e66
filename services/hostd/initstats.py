"""Scraping noops-init's stats (docs/images.md): every instance whose image runs noops-init serves
``GET /stats`` on its stats port (a label of the image); hostd reads them all each interval,
concurrently, each within a timeout, and hands the round's results to the /metrics collector.
Containers of other images are not asked (they are not listed: the label filter skips them).

    cpu_seconds 0.120          the app's process tree (its reaped children included)
    memory_bytes 2871296       resident memory of that tree
    processes 2
    uptime_seconds 12.3
    ready 1                    the image's readiness (ports listening, or a command)
    counter requests 7         app-defined, from the file the app writes (/run/noops/counters)
"""
from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from services.hostd import containers as ct
from services.hostd.runtime import ContainerRuntime, RuntimeRefused, RuntimeUnavailable

log = logging.getLogger("noops.hostd.initstats")

_MAX_BODY = 64 * 1024
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_COUNTERS = 32   # per instance: an app cannot blow up hostd's /metrics


@dataclass(frozen=True)
class InitStats:
    cpu_seconds: float
    memory_bytes: int
    processes: int
    ready: bool
    counters: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Target:
    instance: str
    app: str
    ip: str
    port: int


def parse(text: str) -> InitStats:
    """noops-init's /stats body; ValueError when the required lines are missing."""
    values: dict[str, float] = {}
    counters: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        try:
            if len(parts) == 3 and parts[0] == "counter" and _NAME.fullmatch(parts[1]):
                value = float(parts[2])
                if math.isfinite(value) and len(counters) < MAX_COUNTERS:
                    counters[parts[1]] = value
            elif len(parts) == 2:
                values[parts[0]] = float(parts[1])
        except ValueError:
            continue   # one bad line does not cost the rest
    missing = {"cpu_seconds", "memory_bytes"} - set(values)
    if missing:
        raise ValueError(f"not noops-init stats: {', '.join(sorted(missing))} missing")
    return InitStats(cpu_seconds=values["cpu_seconds"], memory_bytes=int(values["memory_bytes"]),
                     processes=int(values.get("processes", 0)), ready=values.get("ready", 0) == 1,
                     counters=tuple(counters.items()))


def targets(infos: Iterable[ct.ContainerInfo], ip_of: Callable[[str], str]) -> list[Target]:
    """The running noops-init containers that have an address and a stats port."""
    out = []
    for info in infos:
        ip = ip_of(info.instance) if info.running else ""
        if ip and info.init_stats_port:
            out.append(Target(info.instance, info.app, ip, info.init_stats_port))
    return out


async def fetch(ip: str, port: int) -> str:
    reader, writer = await asyncio.open_connection(ip, port)
    try:
        writer.write(f"GET /stats HTTP/1.0\r\nHost: {ip}:{port}\r\nUser-Agent: noops-hostd\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read(_MAX_BODY)
        while len(raw) < _MAX_BODY and (more := await reader.read(_MAX_BODY - len(raw))):
            raw += more
    finally:
        writer.close()
    head, _, body = raw.decode(errors="replace").partition("\r\n\r\n")
    status = head.split(" ", 2)
    if len(status) < 2 or status[1] != "200":
        raise ValueError(f"answered {head.splitlines()[0][:60] if head else 'nothing'!r}")
    return body


async def scrape(found: list[Target], *, timeout_s: float, concurrency: int) -> dict[str, tuple[str, InitStats]]:
    """instance -> (app, stats) for those that answered in time; the others are left out."""
    slots = asyncio.Semaphore(concurrency)

    async def one(t: Target) -> tuple[Target, InitStats | None]:
        async with slots:
            try:
                return t, parse(await asyncio.wait_for(fetch(t.ip, t.port), timeout_s))
            except (OSError, ValueError, asyncio.TimeoutError) as exc:
                log.debug("no init stats", extra={"instance": t.instance, "error": str(exc) or type(exc).__name__})
                return t, None

    results = await asyncio.gather(*(one(t) for t in found))
    return {t.instance: (t.app, stats) for t, stats in results if stats is not None}


async def scrape_loop(runtime: ContainerRuntime, *, owner: Mapping[str, str], ip_of: Callable[[str], str],
                      publish: Callable[[dict[str, tuple[str, InitStats]]], None], interval_s: float,
                      timeout_s: float, concurrency: int) -> None:
    """Each round replaces what /metrics shows: an instance gone or not answering drops out."""
    while True:
        try:
            infos = await runtime.list({**owner, ct.LABEL_INIT: "1"})
        except (RuntimeUnavailable, RuntimeRefused) as exc:
            log.warning("cannot list containers for init stats", extra={"error": str(exc)})
        else:
            publish(await scrape(targets(infos, ip_of), timeout_s=timeout_s, concurrency=concurrency))
        await asyncio.sleep(interval_s)
