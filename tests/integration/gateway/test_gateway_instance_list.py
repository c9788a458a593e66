"""GET /v1/instances: every app's instances the token may see, `host=` and `phase=` filters,
paged like the per-app listing (real task log)."""
from __future__ import annotations

import asyncpg


def spec(app_id: str) -> dict[str, object]:
    return {"id": app_id, "image": "nginx:1", "instances": 0, "resources": {"cpus": 0.25, "mem_mb": 64}}


async def _instance(pool: asyncpg.Pool, app: str, iid: str, host: str, state: str = "RUNNING") -> None:
    await pool.execute("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state) "
                       "VALUES ($1, $2, 1, $3, 1, 0.1, 32, $4)", iid, app, host, state)


async def test_every_app_one_host_live_only_in_pages_and_within_the_token_scope(client, client_as, pool, created,
                                                                                uid) -> None:
    mine, other = created.app(f"payments-il-{uid}"), created.app(f"il-{uid}")
    host_a, host_b = f"ila-{uid}", f"ilb-{uid}"
    for app in (mine, other):
        assert (await client.post("/v1/apps", json=spec(app))).status_code == 201
    await _instance(pool, mine, f"{mine}-1", host_a)
    await _instance(pool, mine, f"{mine}-2", host_b)
    await _instance(pool, mine, f"{mine}-3", host_a, "FAILED")
    await _instance(pool, other, f"{other}-1", host_a, "STARTING")

    async def ids(c, query: str) -> set[str]:
        out: set[str] = set()
        url = f"/v1/instances?{query}"
        while url:
            r = await c.get(url)
            assert r.status_code == 200, r.text
            out |= {i["id"] for i in r.json()}
            url = (r.headers.get("Link") or "<>")[1:].split(">")[0]
        return out

    assert await ids(client, f"host={host_a}") == {f"{mine}-1", f"{mine}-3", f"{other}-1"}
    assert await ids(client, f"host={host_a}&phase=live&limit=1") == {f"{mine}-1", f"{other}-1"}
    assert {f"{mine}-2", f"{other}-1"} <= await ids(client, "phase=live")
    # A viewer limited to payments-* never sees the other app's instance.
    assert await ids(client_as("payments-viewer"), f"host={host_a}") == {f"{mine}-1", f"{mine}-3"}
    assert await ids(client, "host=nowhere-at-all") == set()
    r = await client.get("/v1/instances?host=Bad_Host")
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "query.host"
