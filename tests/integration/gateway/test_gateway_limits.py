"""Size limits of the API: a body over NOOPS_GATEWAY_MAX_BODY_BYTES is 413 with a JSON error
(nothing stored), a spec whose env would make a placement too big for NATS is 422 naming the
field; dead letters are listed."""
from __future__ import annotations

import json

import asyncpg
import httpx

from tests.integration.gateway.test_gateway_apps import spec


async def test_a_body_over_the_limit_is_413_with_a_json_error(client: httpx.AsyncClient, pool: asyncpg.Pool,
                                                              settings, uid: str) -> None:
    app = f"huge-{uid}"
    body = json.dumps(spec(app, env={"BIG": "x" * (settings.max_body_bytes + 1)}))
    r = await client.post("/v1/apps", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"] == "request body too large"
    assert await pool.fetchval("SELECT count(*) FROM apps WHERE id = $1", app) == 0


async def test_a_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient, settings, uid: str) -> None:
    chunk = b" " * 65536

    async def chunks():
        for _ in range(settings.max_body_bytes // len(chunk) + 2):
            yield chunk
    r = await client.post("/v1/apps", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["details"][0]["reason"]


async def test_env_too_big_for_a_placement_is_422_naming_the_field(client: httpx.AsyncClient, pool: asyncpg.Pool,
                                                                   uid: str) -> None:
    app = f"fat-{uid}"
    r = await client.post("/v1/apps", json=spec(app, env={f"V{i}": "x" * 1000 for i in range(200)}))
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["details"]] == ["env"]
    assert "bytes encoded" in r.json()["details"][0]["reason"]
    r = await client.post("/v1/apps", json=spec(app, labels={f"l{i}": "v" for i in range(100)}))
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "labels"
    assert await pool.fetchval("SELECT count(*) FROM apps WHERE id = $1", app) == 0


async def test_dead_letters_are_listed(client: httpx.AsyncClient, pool: asyncpg.Pool, uid: str) -> None:
    consumer = f"dl-{uid}"
    await pool.execute("INSERT INTO dead_letters (stream, consumer, stream_seq, subject, reason, source) "
                       "VALUES ('NOOPS_DEPLOY', $1, 42, 'noops.deploy.x', 'handler_error', 'test')", consumer)
    try:
        r = await client.get("/v1/dead-letters", params={"consumer": consumer})
        assert r.status_code == 200
        assert [(d["stream_seq"], d["reason"]) for d in r.json()] == [(42, "handler_error")]
    finally:
        await pool.execute("DELETE FROM dead_letters WHERE consumer = $1", consumer)
