"""GET /v1/apps/{id}/instances a page at a time (limit, cursor, live/ended), and the app's
last_failure, which outlives the instance row retention removes (real task log)."""
from __future__ import annotations

import base64

import asyncpg
import httpx

from libs import db
from services.reconciler.retention import RetentionPolicy, prune


def spec(app_id: str) -> dict[str, object]:
    # No instances wanted: nothing places any, the test writes the rows it lists.
    return {"id": app_id, "image": "nginx:1", "instances": 0, "resources": {"cpus": 0.25, "mem_mb": 64}}


async def _instance(pool: asyncpg.Pool, app: str, iid: str, state: str = "RUNNING", *, after_s: float = 0.0,
                    reason: str = "") -> None:
    """An instance created ``after_s`` seconds after the app (rows of the current incarnation)."""
    await pool.execute(
        "INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, reason, created_at) "
        "SELECT $1, $2, 1, 'h1', 1, 0.1, 32, $3, $4, a.created_at + make_interval(secs => $5) "
        "FROM apps a WHERE a.id = $2", iid, app, state, reason, after_s)


async def _walk(client: httpx.AsyncClient, url: str, on_page=None) -> tuple[list[str], int]:
    seen, pages = [], 0
    while url:
        r = await client.get(url)
        assert r.status_code == 200, r.text
        pages += 1
        seen += [i["id"] for i in r.json()]
        nxt = r.headers.get("X-Next-Cursor")
        link = r.headers.get("Link")
        assert (nxt is None) == (link is None)
        if link:
            assert link.endswith('>; rel="next"') and f"cursor={nxt}" in link
            url = link[1:link.index(">")]
        else:
            url = ""
        if on_page is not None:
            await on_page(pages)
    return seen, pages


async def test_pages_walk_every_instance_once_while_new_ones_arrive(client, pool, created, uid) -> None:
    app = created.app(f"pages-{uid}")
    assert (await client.post("/v1/apps", json=spec(app))).status_code == 201
    first = [f"{app}-{k:02d}" for k in range(10)]
    for k, iid in enumerate(first):
        # Two share a creation time: the id breaks the tie.
        await _instance(pool, app, iid, after_s=float(min(k, 8)))

    async def more(page: int) -> None:
        await _instance(pool, app, f"{app}-new{page}", after_s=100.0 + page)

    seen, pages = await _walk(client, f"/v1/apps/{app}/instances?limit=3", more)

    assert sorted(seen) == sorted(first) and len(seen) == len(set(seen)) == 10
    assert seen == sorted(first, key=lambda i: (min(first.index(i), 8), i), reverse=True)   # newest first
    assert pages == 4
    everything = (await client.get(f"/v1/apps/{app}/instances")).json()
    assert len(everything) == 14   # the default page holds them all


async def test_live_and_ended_filters_and_the_state_filter(client, pool, created, uid) -> None:
    app = created.app(f"phase-{uid}")
    assert (await client.post("/v1/apps", json=spec(app))).status_code == 201
    states = {"PENDING": "p", "STARTING": "s", "RUNNING": "r", "FAILED": "f", "KILLED": "k", "LOST": "l"}
    for state, tag in states.items():
        await _instance(pool, app, f"{app}-{tag}", state)

    async def ids(query: str) -> set[str]:
        r = await client.get(f"/v1/apps/{app}/instances?{query}")
        assert r.status_code == 200, r.text
        return {i["id"].rsplit("-", 1)[1] for i in r.json()}

    assert await ids("phase=live") == {"p", "s", "r"}
    assert await ids("phase=ended") == {"f", "k", "l"}
    assert await ids("state=FAILED") == {"f"}
    assert await ids("state=FAILED&phase=live") == set()
    assert await ids("phase=ended&limit=2") | await ids(
        "phase=ended&cursor=" + (await client.get(f"/v1/apps/{app}/instances?phase=ended&limit=2"))
        .headers["X-Next-Cursor"]) == {"f", "k", "l"}


async def test_bad_paging_input_is_refused_with_the_error_body(client, created, uid) -> None:
    app = created.app(f"badpage-{uid}")
    assert (await client.post("/v1/apps", json=spec(app))).status_code == 201
    def forged(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    for query, field in (("cursor=not-a-cursor", "query.cursor"), ("cursor=" + forged(b"1.1.<bad>"), "query.cursor"),
                         ("cursor=" + forged(b"2.1.a"), "query.cursor"), ("cursor=" + "A" * 201, "query.cursor"),
                         ("cursor=" + forged(b"1.9999999999999999999.a"), "query.cursor"),
                         ("limit=0", "query.limit"), ("limit=5001", "query.limit"), ("limit=x", "query.limit"),
                         ("phase=gone", "query.phase")):
        r = await client.get(f"/v1/apps/{app}/instances?{query}")
        assert r.status_code == 422, (query, r.text)
        body = r.json()
        assert body["error"] == "invalid request" and [d["field"] for d in body["details"]] == [field], body


async def test_last_failure_outlives_the_pruned_instance(client, pool, created, uid) -> None:
    app = created.app(f"lastfail-{uid}")
    assert (await client.post("/v1/apps", json=spec(app))).status_code == 201
    assert (await client.get(f"/v1/apps/{app}")).json()["last_failure"] is None
    await _instance(pool, app, f"{app}-a", "RUNNING", after_s=1)
    await _instance(pool, app, f"{app}-b", "RUNNING", after_s=2)
    # As the registry records a crash: the row's state changes.
    await pool.execute("UPDATE instances SET state = 'FAILED', reason = 'exited with code 3', updated_at = now() "
                       "WHERE id = $1", f"{app}-a")
    await pool.execute("UPDATE instances SET state = 'KILLED', updated_at = now() + interval '1 second' "
                       "WHERE id = $1", f"{app}-b")

    await prune(pool, db.Queries("retention"), RetentionPolicy(keep_per_app=1, max_age_s=0))

    assert [i["id"] for i in (await client.get(f"/v1/apps/{app}/instances")).json()] == [f"{app}-b"]
    for view in ((await client.get(f"/v1/apps/{app}")).json(),
                 next(a for a in (await client.get("/v1/apps")).json() if a["id"] == app)):
        lf = view["last_failure"]
        assert (lf["instance"], lf["state"], lf["reason"], lf["version"], lf["host"]) == \
            (f"{app}-a", "FAILED", "exited with code 3", 1, "h1")
        assert lf["at"]
