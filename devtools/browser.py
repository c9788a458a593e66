"""Debian's Chromium driven by Playwright, for the browser tests and bench/map_render.py.

Never a downloaded browser: Playwright is only the driver of /usr/bin/chromium (scripts/install.sh
installs it).  Headless, with everything that phones home switched off, and a fresh profile each
time (removed on exit)."""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator

from playwright.async_api import BrowserContext, async_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.asynccontextmanager
async def chromium(*, width: int = 1600, height: int = 1000) -> AsyncIterator[BrowserContext]:
    """A browser context of a fresh Chromium profile; closed and removed on exit, even after a failure."""
    profile = tempfile.mkdtemp(prefix="noops-chromium-")
    try:
        async with async_playwright() as pw:
            ctx = await pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": width, "height": height})
            try:
                yield ctx
            finally:
                await ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


async def open_map(ctx: BrowserContext, base_url: str, token: str):  # type: ignore[no-untyped-def]
    """The map page with ``token`` in the tab's sessionStorage before its script runs (as after
    the login form), so its timings start at navigation."""
    page = ctx.pages[0] if ctx.pages else await ctx.new_page()
    await page.add_init_script(f"sessionStorage.setItem('noops-token', {json.dumps(token)})")
    await page.goto(base_url + "/")
    return page
