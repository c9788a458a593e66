"""noops-gateway: the HTTP API and web UI.

Start order matters: the task log must be migrated before the API accepts writes, and the
streams must exist before the outbox relay publishes into them."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from libs import bus, db, natsauth, outbox, retry, settings
from libs.service import Health, run_service, serve_http
from libs.settings import GatewaySettings
from services.gateway.app import create_app

log = logging.getLogger("noops.gateway")

CLOSE_TIMEOUT_S = 5.0


async def main(cfg: GatewaySettings) -> None:
    common = cfg.common
    policy = retry.Policy.from_settings(common)
    health = Health()
    async with contextlib.AsyncExitStack() as stack:
        pool = await db.connect_with(common, service="gateway")
        stack.push_async_callback(_close_pool, pool)
        await db.migrate(pool)
        nc = await bus.connect_as(common, "gateway")
        stack.push_async_callback(nc.close)
        js = nc.jetstream()
        await bus.ensure_streams(js)
        relay = outbox.Relay(pool, js, subjects=natsauth.relay_subjects("gateway"), service="gateway", policy=policy,
                             max_attempts=common.outbox_max_attempts, declare_streams=lambda: bus.ensure_streams(js))
        # The relay restarts with the policy's backoff if it crashes; /healthz shows it (503 if dead).
        sup = health.supervisor(policy)
        relay_task = sup.start("outbox-relay", relay.run)
        stack.push_async_callback(_cancel, relay_task)
        health.ready = True
        log.info("gateway listening", extra={"host": cfg.http.http_host, "port": cfg.port,
                                             "scheme": "https" if cfg.tls_cert_file else "http"})
        await serve_http(create_app(cfg, pool, nc, relay, health=health), cfg.http.http_host, cfg.port,
                         tls_cert_file=cfg.tls_cert_file, tls_key_file=cfg.tls_key_file)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _close_pool(pool) -> None:  # type: ignore[no-untyped-def]
    # close() waits for connections in use; on shutdown we do not wait for stragglers forever.
    try:
        await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
    except asyncio.TimeoutError:
        pool.terminate()


def run() -> None:
    run_service("gateway", lambda: settings.load(GatewaySettings), main)  # type: ignore[arg-type]
