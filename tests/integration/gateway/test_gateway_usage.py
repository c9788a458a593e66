"""GET /v1/hosts/{id}/usage on the gateway's own NATS identity, answered by hostd's real usage
responder (tests/support/usage.py: services/hostd/usage.py serve_usage under hostd-<host>, its
book filled from noops-init stats text): 200 with the items (a scoped token sees its apps' only),
404 for a host the task log does not know, 503 with a clear message (no traceback) when no hostd
listens or when one hears and does not answer within NOOPS_GATEWAY_USAGE_TIMEOUT_S."""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import pytest_asyncio

from devtools import infra
from devtools.cluster import ClusterConfig
from libs import natsauth, outbox, subjects
from libs.settings import GatewaySettings
from services.gateway.app import create_app
from tests.support.usage import body, connect_as, hostd_usage

TIMEOUT_S = 0.5


@pytest_asyncio.fixture
async def ask(cluster_cfg: ClusterConfig, settings: GatewaySettings, pool: asyncpg.Pool, tokens: dict[str, str],
              uid: str) -> AsyncIterator:  # type: ignore[type-arg]
    """``ask(host, token_name)``: the answer of a gateway connected to NATS as ``gateway``."""
    gw = await connect_as(cluster_cfg, "gateway", f"gateway-usage-{uid}")
    app = create_app(dataclasses.replace(settings, usage_timeout_s=TIMEOUT_S), pool, gw,
                     outbox.Relay(pool, gw.jetstream(), subjects=natsauth.relay_subjects("gateway")))
    clients: list[httpx.AsyncClient] = []

    async def get(host: str, who: str = "admin") -> httpx.Response:
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                              headers={"Authorization": f"Bearer {tokens[who]}"})
        clients.append(c)
        return await c.get(f"/v1/hosts/{host}/usage")

    yield get
    for c in clients:
        await c.aclose()
    await gw.close()


async def _host(pool: asyncpg.Pool, created, host: str) -> None:  # type: ignore[no-untyped-def]
    created.hosts.append(host)
    await pool.execute("INSERT INTO hosts (id, cpus, mem_mb, labels, last_seen) VALUES ($1, 4, 4096, $2::jsonb, now())",
                       host, json.dumps({}))


async def test_usage_of_a_hosts_instances(cluster_cfg: ClusterConfig, pool: asyncpg.Pool, created, ask, uid: str) -> None:
    host = f"gwuse-{uid}"
    await _host(pool, created, host)
    rounds = [(1_700_000_000.0, {"web-1": ("web", body(1.0, 64 << 20)), "payments-api-1": ("payments-api", body(2.0, 32 << 20))}),
              (1_700_000_010.0, {"web-1": ("web", body(2.2, 65 << 20)), "payments-api-1": ("payments-api", body(2.5, 33 << 20))})]
    async with hostd_usage(cluster_cfg, host, rounds):
        r = await ask(host, "viewer")
        assert r.status_code == 200, r.text
        got = r.json()
        assert [i.pop("cpu_cores") for i in got["items"]] == pytest.approx([0.05, 0.12])   # Δcpu s / 10 s
        assert got == {"host": host, "truncated": False, "items": [
            {"instance": "payments-api-1", "app": "payments-api", "cpu_seconds": 2.5, "memory_bytes": 33 << 20,
             "ready": True, "at": "2023-11-14T22:13:30+00:00"},
            {"instance": "web-1", "app": "web", "cpu_seconds": 2.2, "memory_bytes": 65 << 20, "ready": True,
             "at": "2023-11-14T22:13:30+00:00"}]}
        scoped = await ask(host, "payments-viewer")
        assert scoped.status_code == 200, scoped.text
        assert [i["instance"] for i in scoped.json()["items"]] == ["payments-api-1"]


async def test_unknown_host_and_hosts_that_do_not_answer(cluster_cfg: ClusterConfig, pool: asyncpg.Pool, created,
                                                         ask, uid: str) -> None:
    r = await ask(f"gwnone-{uid}")
    assert (r.status_code, r.json()) == (404, {"error": f"host 'gwnone-{uid}' not found"})

    silent = f"gwsilent-{uid}"
    await _host(pool, created, silent)
    t0 = time.monotonic()
    r = await ask(silent)
    assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
    assert r.json() == {"error": f"host {silent!r} does not answer (no hostd listening); retry"}
    assert time.monotonic() - t0 < TIMEOUT_S + 1

    # A hostd that hears the request and never answers (hung): a subscription under its identity
    # that takes the request and does not respond.  The gateway gives up after its timeout.
    hung = f"gwhung-{uid}"
    await _host(pool, created, hung)
    infra.ensure_nats_identities(cluster_cfg.run_dir, [hung], monitor_port=cluster_cfg.nats_monitor_port)
    nc = await connect_as(cluster_cfg, f"hostd-{hung}", f"hostd-hung-{uid}")
    try:
        await nc.subscribe(subjects.usage(hung))
        await nc.flush()
        t0 = time.monotonic()
        r = await ask(hung)
        took = time.monotonic() - t0
    finally:
        await nc.close()
    assert r.status_code == 503, r.text
    assert r.json() == {"error": f"host {hung!r} did not answer within {TIMEOUT_S:g}s (TimeoutError); retry"}
    assert TIMEOUT_S <= took < TIMEOUT_S + 1, f"answered after {took:.2f}s"
