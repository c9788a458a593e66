"""The cluster map page in Debian's Chromium (Playwright) over the real gateway app, task log and
event stream: tile colours follow the documented load formula, DOWN is white, draining and
cordoned are marked, a failed deployment shows its reason, the reconciler's drift is shown, user
data stays text; the host panel shows CPU and memory of instances its hostd has stats of ("—" for
the others, and for every instance of a host that does not answer); and changes made in the task log reach the page through /v1/events (a host
marked DOWN is white within 2 s).  (A host brought down for real is in tests/e2e/test_map.py.)"""
from __future__ import annotations

import colorsys
import json
import math
import re

import time

import asyncpg
import pytest_asyncio
from playwright.async_api import Page, expect

from devtools.browser import chromium, open_map
from libs import db
from services.placer import liveness
from tests.integration.placer.taskrows import committer
from tests.support.serve import serving
from tests.support.usage import body, hostd_usage

# Resolves after the page's next animation frame (and its flush of what was applied before it).
NEXT_FRAME = "() => new Promise(ok => requestAnimationFrame(() => setTimeout(ok)))"
EVIL = '<img src=x onerror="document.title=\'owned\'">'


@pytest_asyncio.fixture
async def base_url(gateway_app):
    async with serving(gateway_app) as url:
        yield url


def heat_rgb(load: float) -> str:
    """The page's colour for a load (services/gateway/README.md, "Cluster map"; hue and lightness
    written as whole numbers), as Chromium computes it."""
    h, s, light = math.floor(120 - 120 * load + 0.5) / 360, 0.70, math.floor(78 - 23 * load + 0.5) / 100
    r, g, b = (round(c * 255) for c in colorsys.hls_to_rgb(h, light, s))
    return f"rgb({r}, {g}, {b})"


async def _host(pool: asyncpg.Pool, host: str, *, cpus: float = 4, mem_mb: int = 4096, load1: float = 0.0,
                state: str = "UP", draining: bool = False, cordoned: bool = False, labels: dict | None = None) -> None:
    # last_seen ahead of now: online (NOOPS_HOST_ONLINE_S) for the whole test whatever its pace.
    await pool.execute("INSERT INTO hosts (id, cpus, mem_mb, labels, load1, last_seen, state, draining, cordoned) "
                       "VALUES ($1, $2, $3, $4::jsonb, $5, now() + interval '1 hour', $6, $7, $8)",
                       host, cpus, mem_mb, json.dumps(labels or {}), load1, state, draining, cordoned)


async def _app_with_instance(client, pool: asyncpg.Pool, created, app: str, host: str, *, cpus: float,  # type: ignore[no-untyped-def]
                             healthy: bool | None) -> str:
    """An app (through the API, wanting no instances) and one RUNNING instance of it on ``host``
    (written as the registry would have); returns the instance's id."""
    r = await client.post("/v1/apps", json={"id": app, "image": "nginx:1", "instances": 0,
                                            "resources": {"cpus": 0.25, "mem_mb": 64}})
    assert r.status_code == 201, r.text
    iid = f"{app}-000000000001"
    created.instances.append(iid)
    await pool.execute("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, ip, healthy) "
                       "VALUES ($1, $2, 1, $3, 1, $4, 64, 'RUNNING', '198.18.7.7', $5)", iid, app, host, cpus, healthy)
    return iid


async def _bg(page: Page, host: str) -> str:
    return await page.locator(f'.tile[data-host="{host}"]').evaluate("t => getComputedStyle(t).backgroundColor")


async def test_tiles_apps_and_drift_as_documented(base_url, client, pool, created, tokens, uid, tmp_path) -> None:
    idle, busy, half, down, held = (f"map{k}-{uid}" for k in ("idle", "busy", "half", "down", "held"))
    created.hosts.extend([idle, busy, half, down, held])
    await _host(pool, idle, labels={"rack": "r1", "note": EVIL})
    await _host(pool, busy, cpus=4)                 # fully reserved below: load 1
    await _host(pool, half, cpus=8, load1=4.0)      # load average half the cpus: load 0.5
    await _host(pool, down, state="DOWN")
    await _host(pool, held, draining=True, cordoned=True)
    app = created.app(f"mapapp-{uid}")
    iid = await _app_with_instance(client, pool, created, app, busy, cpus=4, healthy=False)
    await pool.execute("INSERT INTO deployments (app, from_version, to_version, state, reason, progress) "
                       "VALUES ($1, 1, 2, 'failed', $2, '{\"target\": 3, \"new_running\": 1, \"old_live\": 2}')",
                       app, f"no progress for 60s {EVIL}")
    round_id = await pool.fetchval(
        "INSERT INTO reconciler_rounds (started_at, holder, fence, dry_run, counts, findings) "
        "VALUES (now(), 'test', 1, false, '{\"orphan\": 1}', $1::jsonb) RETURNING id",
        json.dumps([{"kind": "orphan", "where": busy, "app": app, "instance": "", "detail": "a stray container",
                     "since": "", "action": "sweep"}]))
    try:
        async with chromium() as ctx:
            page = await open_map(ctx, base_url, tokens["admin"])
            for host in (idle, busy, half, down, held):
                await page.locator(f'.tile[data-host="{host}"]').wait_for()
            await page.screenshot(path=tmp_path / "map.png", full_page=True)
            assert await _bg(page, idle) == heat_rgb(0.0)
            assert await _bg(page, busy) == heat_rgb(1.0)
            assert await _bg(page, half) == heat_rgb(0.5)
            assert await _bg(page, down) == "rgb(255, 255, 255)"
            held_tile = page.locator(f'.tile[data-host="{held}"]')
            await expect(held_tile).to_have_class(re.compile(r"\bdraining\b.*\bcordoned\b"))
            # The unhealthy instance marks its host.
            await expect(page.locator(f'.tile[data-host="{busy}"]')).to_have_class(re.compile(r"\btrouble\b"))

            row = page.locator(f'#apps tr[data-app="{app}"]')
            await expect(row).to_contain_text("failed")
            await expect(row).to_contain_text("1/3 new, 2 old")
            await expect(row.locator(".reason")).to_have_text(f"no progress for 60s {EVIL}")
            await expect(page.locator("#drift")).to_contain_text("a stray container")

            await page.locator(f'.tile[data-host="{idle}"]').click()
            await expect(page.locator("#panel")).to_contain_text(f"note={EVIL}")
            await expect(page.locator("#panel")).to_contain_text("no instance on this host")
            await page.screenshot(path=tmp_path / "panel.png", full_page=True)
            assert await page.title() == "noops cluster map"   # the label stayed text
    finally:
        await pool.execute("DELETE FROM reconciler_rounds WHERE id = $1", round_id)


async def test_changes_arrive_through_the_event_stream(base_url, client, pool, created, tokens, uid, tmp_path) -> None:
    host, app = f"maplive-{uid}", created.app(f"maplive-{uid}")
    created.hosts.append(host)
    await _host(pool, host)
    iid = await _app_with_instance(client, pool, created, app, host, cpus=0.5, healthy=None)
    dep = await pool.fetchval("INSERT INTO deployments (app, from_version, to_version, state) "
                              "VALUES ($1, 1, 2, 'running') RETURNING id", app)
    try:
        async with chromium() as ctx:
            page = await open_map(ctx, base_url, tokens["admin"])
            t = page.locator(f'.tile[data-host="{host}"]')
            await expect(t).to_contain_text("· 1")          # one live instance
            await expect(page.locator("#live")).to_have_class("on")
            await t.click()
            await expect(page.locator(f'#panel tr[data-instance="{iid}"]')).to_contain_text("RUNNING")

            # An instance ends (as the registry records it: the row, then its event).
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("UPDATE instances SET state = 'FAILED', reason = 'exited with code 3' "
                                   "WHERE id = $1", iid)
                await conn.execute("INSERT INTO instance_events (instance, state, reason, source) "
                                   "VALUES ($1, 'FAILED', 'exited with code 3', 'test')", iid)
            await expect(page.locator(f'#panel tr[data-instance="{iid}"]')).to_contain_text("exited with code 3")
            await expect(t).to_have_class(re.compile(r"\btrouble\b"))
            await expect(t).to_contain_text("· 0")
            # The panel read again (closed and opened): its rows hold the FAILED one, after the
            # event -- the order in which the mark once went missing.  It stays.
            await t.click()
            reads = await page.evaluate("noopsMap.stats.panelReads")
            await t.click()
            await page.wait_for_function("n => noopsMap.stats.panelReads > n", arg=reads)
            await page.evaluate(NEXT_FRAME)
            assert re.search(r"\btrouble\b", await t.get_attribute("class") or ""), await t.get_attribute("class")

            await pool.execute("UPDATE deployments SET state = 'failed', reason = 'no progress for 60s' "
                               "WHERE id = $1", dep)
            await expect(page.locator(f'#apps tr[data-app="{app}"] .reason')).to_have_text("no progress for 60s")

            began = time.monotonic()
            await liveness.mark_down(pool, db.Queries("placer"), [host], fence_token=(await committer(pool)).token)
            await page.wait_for_selector(f'.tile.down[data-host="{host}"]', timeout=5_000)
            took = time.monotonic() - began
            await page.screenshot(path=tmp_path / "live.png", full_page=True)
            assert took < 2.0, f"white only {took:.2f}s after the host was marked DOWN"
    finally:
        await pool.execute("DELETE FROM instance_events WHERE instance = $1", iid)


async def test_the_panel_shows_cpu_and_memory(base_url, client, pool, created, tokens, uid, cluster_cfg,
                                              tmp_path) -> None:
    host, mute = f"mapuse-{uid}", f"mapmute-{uid}"
    created.hosts.extend([host, mute])
    await _host(pool, host)
    await _host(pool, mute)
    app = created.app(f"mapuse-{uid}")
    measured = await _app_with_instance(client, pool, created, app, host, cpus=0.5, healthy=None)
    plain = f"{app}-000000000002"       # its image has no noops-init: hostd has no stats of it
    silent = f"{app}-000000000003"      # on a host whose hostd does not answer
    created.instances.extend([plain, silent])
    for iid, on in ((plain, host), (silent, mute)):
        await pool.execute("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, ip) "
                           "VALUES ($1, $2, 1, $3, 1, 0.5, 64, 'RUNNING', '198.18.7.8')", iid, app, on)
    # hostd's real responder, two scrapes 10 s apart: 1.2 CPU seconds → 0.12 cores; 64 MiB resident.
    rounds = [(1000.0, {measured: (app, body(1.0, 60 << 20))}), (1010.0, {measured: (app, body(2.2, 64 << 20))})]
    async with hostd_usage(cluster_cfg, host, rounds), chromium() as ctx:
        page = await open_map(ctx, base_url, tokens["admin"])
        await page.locator(f'.tile[data-host="{host}"]').click()
        row = page.locator(f'#panel tr[data-instance="{measured}"]')
        await expect(row.locator(".cpu")).to_have_text("0.12")
        await expect(row.locator(".mem")).to_have_text("64.0")
        other = page.locator(f'#panel tr[data-instance="{plain}"]')
        await expect(other).to_contain_text("RUNNING")
        await expect(other.locator(".cpu")).to_have_text("—")
        await expect(other.locator(".mem")).to_have_text("—")
        await page.screenshot(path=tmp_path / "usage.png", full_page=True)

        # A host that does not answer (503): the panel is whole, its columns "—".
        async with page.expect_response(lambda r: r.url.endswith(f"/v1/hosts/{mute}/usage")) as answer:
            await page.locator(f'.tile[data-host="{mute}"]').click()
        assert (await answer.value).status == 503
        row = page.locator(f'#panel tr[data-instance="{silent}"]')
        await expect(row).to_contain_text("RUNNING")
        await expect(page.locator("#panel h2")).to_contain_text(mute)
        await expect(row.locator(".cpu")).to_have_text("—")
        await expect(row.locator(".mem")).to_have_text("—")
