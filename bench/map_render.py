"""The cluster map in a real browser at scale: ``--hosts`` hosts (default 1,000) and
``--instances`` RUNNING instances (default 10,000, over ``--apps`` apps) in a throwaway task log,
served by the real gateway app (uvicorn, an admin token) to Debian's Chromium driven by Playwright.

Reads the page's own performance.now() figures (window.noopsMap.stats):
  * first render: navigation start → every tile, the apps table and the status in the DOM
    (the REST reads included: /v1/hosts, /v1/apps, /v1/instances in pages of 5,000), and → the
    next frame after it (style and layout done);
  * an update: a change handed to the function every /v1/events frame goes through → painted in
    the next animation frame (one host DOWN; a wave of 1,000 instance changes).

    .venv/bin/python -m bench.map_render [--hosts 1000] [--instances 10000] [--apps 100] [--reps 5]

Its own database, dropped after; the browser's profile is removed too.  No NATS: the page's event
stream fails and is retried with backoff, which the figures do not depend on (changes are handed
to the page directly).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
from collections.abc import AsyncIterator

import uvicorn

from bench import taskdb
from devtools import infra
from devtools.browser import chromium, open_map

HOSTS = """
INSERT INTO hosts (id, cpus, mem_mb, labels, load1, instances, last_seen)
SELECT 'hh' || lpad(k::text, 5, '0'), 32, 131072, jsonb_build_object('rack', 'r' || (k / 40), 'zone', 'z' || (k % 4)),
       (k % 50) * 0.64, 0, now() + interval '1 day'
  FROM generate_series(0, $1::int - 1) AS k
"""
APPS = """
INSERT INTO apps (id, version, spec, instances, status)
SELECT 'app' || lpad(a::text, 4, '0'), 1,
       jsonb_build_object('id', 'app' || lpad(a::text, 4, '0'), 'image', 'nginx:1', 'instances', $2::int,
                          'resources', jsonb_build_object('cpus', 0.5, 'mem_mb', 512)), $2::int, 'running'
  FROM generate_series(0, $1::int - 1) AS a
"""
VERSIONS = "INSERT INTO app_versions (app, version, spec, restart_gen, created_by) SELECT id, 1, spec, 0, 'bench' FROM apps"
# Reservations vary per host (k % 7), so the tiles cover the whole colour range.
INSTANCES = """
INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, ip, healthy)
SELECT 'app' || lpad((k % $3::int)::text, 4, '0') || '-' || lpad(to_hex(k), 12, '0'), 'app' || lpad((k % $3::int)::text, 4, '0'),
       1, 'hh' || lpad((k % $2::int)::text, 5, '0'), 1, 0.4 * ((k / $2::int) % 7), 512, 'RUNNING',
       '198.18.' || (k / 250 % 250) || '.' || (k % 250 + 1), true
  FROM generate_series(0, $1::int - 1) AS k
"""

UPDATE_HOST = """async ([host, state]) => {
  noopsMap.apply("host", {host, state, draining: false, cordoned: false, at: new Date().toISOString()});
  await new Promise(ok => requestAnimationFrame(() => setTimeout(ok)));
  return [noopsMap.stats.lastApplyMs, noopsMap.stats.flushMs,
          document.querySelector(`[data-host="${host}"]`).classList.contains("down")];
}"""
UPDATE_WAVE = """async (n) => {
  const insts = [...noopsMap.state.insts.values()].slice(0, n);
  for (const i of insts) noopsMap.apply("instance", {app: i.app, instance: i.id, host: i.host, state: "FAILED",
                                                     health: null, ip: i.ip, epoch: 2, reason: "bench", at: ""});
  await new Promise(ok => requestAnimationFrame(() => setTimeout(ok)));
  const hosts = new Set(insts.map(i => i.host)).size;
  return [noopsMap.stats.lastApplyMs, noopsMap.stats.flushMs, document.querySelectorAll(".tile.trouble").length === hosts];
}"""


@contextlib.asynccontextmanager
async def serving(app) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    port = infra.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


def med(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.0f} ms (min {min(xs):.0f}, max {max(xs):.0f}, {len(xs)} runs)"


async def measure(url: str, token: str, args: argparse.Namespace) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("first_render", "first_paint", "rest_reads", "dom_build",
                                                    "host_down", "host_down_flush", "wave", "wave_flush")}
    async with chromium() as ctx:
        page = await open_map(ctx, url, token)
        for rep in range(args.reps):
            if rep:
                await page.reload()
            await page.wait_for_function("noopsMap.stats.firstPaintMs !== null", timeout=120_000)
            st = await page.evaluate("noopsMap.stats")
            assert await page.locator(".tile").count() == args.hosts
            assert st["renderMs"] is not None
            out["first_render"].append(st["firstRenderMs"])
            out["first_paint"].append(st["firstPaintMs"])
            out["rest_reads"].append(st["loadMs"])
            out["dom_build"].append(st["renderMs"])
            for k in range(10):
                host = f"hh{(rep * 10 + k) * 7 % args.hosts:05d}"
                applied, flushed, down = await page.evaluate(UPDATE_HOST, [host, "DOWN"])
                assert down, f"{host} not white"
                out["host_down"].append(applied)
                out["host_down_flush"].append(flushed)
            applied, flushed, trouble = await page.evaluate(UPDATE_WAVE, 1000)
            assert trouble, "not every host of the changed instances is marked"
            out["wave"].append(applied)
            out["wave_flush"].append(flushed)
        await page.screenshot(path=args.screenshot, full_page=False)
    return out


async def run(args: argparse.Namespace) -> None:
    async with taskdb.throwaway("map") as (name, pool):
        await pool.execute(HOSTS, args.hosts)
        await pool.execute(APPS, args.apps, args.instances // args.apps)
        await pool.execute(VERSIONS)
        await pool.execute(INSTANCES, args.instances, args.hosts, args.apps)
        for table in ("hosts", "apps", "app_versions", "instances"):
            await pool.execute(f"VACUUM ANALYZE {table}")
        # No NATS: only /v1/events needs it, and the figures hand changes to the page directly.
        app, token = await taskdb.gateway(name, pool)
        async with serving(app) as url:
            out = await measure(url, token, args)
    print(f"cluster map: {args.hosts} hosts, {args.instances} RUNNING instances, {args.apps} apps; "
          f"{platform.node()} ({platform.machine()}), Chromium headless")
    labels = {"first_render": "first render (navigation → DOM built)", "first_paint": "… → next frame (laid out)",
              "rest_reads": "  of which REST reads", "dom_build": "  of which tile DOM build (one innerHTML)",
              "host_down": "update: one host DOWN → painted", "host_down_flush": "  of which the frame's work",
              "wave": "update: 1,000 instance changes → painted", "wave_flush": "  of which the frame's work"}
    for k, label in labels.items():
        print(f"{label}: {med(out[k])}")
    if args.json:
        print(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--instances", type=int, default=10000)
    p.add_argument("--apps", type=int, default=100)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--screenshot", default="/tmp/noops-map-bench.png")
    p.add_argument("--json", action="store_true", help="also print every figure as JSON")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
