"""/v1/apps against the real task log and JetStream: create, conflict, update, scale, delete."""
from __future__ import annotations

import asyncpg
import httpx

from libs.messages import STATES


def spec(app_id: str, **changes: object) -> dict[str, object]:
    return {"id": app_id, "image": "nginx:1", "instances": 2, "resources": {"cpus": 0.25, "mem_mb": 64},
            **changes}


async def test_create_stores_and_publishes_a_deploy_request(client: httpx.AsyncClient, pool: asyncpg.Pool,
                                                            created, deploy_requests, uid: str) -> None:
    app = created.app(f"web-{uid}")
    watch = await deploy_requests(app)

    r = await client.post("/v1/apps", json=spec(app))

    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["id"], body["version"], body["instances"], body["status"]) == (app, 1, 2, "deploying")
    assert body["counts"] == {s: 0 for s in STATES}
    assert body["spec"]["image"] == "nginx:1" and body["spec"]["resources"]["cpus"] == 0.25
    got = await watch.wait_for(1)
    assert [(m.app, m.reason) for m in got] == [(app, "created")]
    assert await pool.fetchval("SELECT count(*) FROM app_versions WHERE app = $1", app) == 1


async def test_duplicate_create_is_409_and_changes_nothing(client: httpx.AsyncClient, pool: asyncpg.Pool,
                                                           created, uid: str) -> None:
    app = created.app(f"dup-{uid}")
    assert (await client.post("/v1/apps", json=spec(app))).status_code == 201

    r = await client.post("/v1/apps", json=spec(app, image="other:2"))

    assert r.status_code == 409
    assert r.json() == {"error": f"app '{app}' already exists"}
    row = await pool.fetchrow("SELECT version, spec->>'image' AS image FROM apps WHERE id = $1", app)
    assert (row["version"], row["image"]) == (1, "nginx:1")


async def test_delete_hides_the_app_and_asks_for_a_deploy(client: httpx.AsyncClient, created, deploy_requests,
                                                          uid: str) -> None:
    app = created.app(f"del-{uid}")
    watch = await deploy_requests(app)
    assert (await client.post("/v1/apps", json=spec(app))).status_code == 201

    r = await client.delete(f"/v1/apps/{app}")

    assert r.status_code == 202
    assert r.json() == {"id": app, "status": "deleting"}
    assert (await client.get(f"/v1/apps/{app}")).status_code == 404
    assert app not in [a["id"] for a in (await client.get("/v1/apps")).json()]
    # The row stays while instances are stopped, so they remain visible.
    assert (await client.get(f"/v1/apps/{app}/instances")).json() == []
    assert (await client.delete(f"/v1/apps/{app}")).status_code == 404
    assert [m.reason for m in await watch.wait_for(2)] == ["created", "deleted"]


async def test_recreate_after_delete_is_a_new_version_and_a_fresh_incarnation(
        client: httpx.AsyncClient, pool: asyncpg.Pool, created, uid: str) -> None:
    app = created.app(f"again-{uid}")
    assert (await client.post("/v1/apps", json=spec(app))).status_code == 201
    old = f"{app}-old"
    await pool.execute("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state) "
                       "VALUES ($1, $2, 1, 'h1', 1, 0.25, 64, 'RUNNING')", old, app)
    assert (await client.get(f"/v1/apps/{app}")).json()["counts"]["RUNNING"] == 1
    assert (await client.delete(f"/v1/apps/{app}")).status_code == 202
    await pool.execute("UPDATE instances SET state = 'KILLED' WHERE id = $1", old)
    assert [i["state"] for i in (await client.get(f"/v1/apps/{app}/instances")).json()] == ["KILLED"]

    r = await client.post("/v1/apps", json=spec(app, instances=1))

    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["version"], body["instances"], body["status"]) == (2, 1, "deploying")
    assert body["counts"] == {s: 0 for s in STATES}  # the old incarnation's instance is not counted
    assert (await client.get(f"/v1/apps/{app}/instances")).json() == []
    assert await pool.fetchval("SELECT array_agg(version ORDER BY version) FROM app_versions WHERE app = $1",
                               app) == [1, 2]


async def test_put_and_patch_make_new_versions(client: httpx.AsyncClient, pool: asyncpg.Pool, created,
                                               deploy_requests, uid: str) -> None:
    app = created.app(f"upd-{uid}")
    watch = await deploy_requests(app)
    assert (await client.post("/v1/apps", json=spec(app))).status_code == 201

    put = await client.put(f"/v1/apps/{app}", json={k: v for k, v in spec(app, image="nginx:2").items() if k != "id"})
    assert put.status_code == 200, put.text
    assert (put.json()["version"], put.json()["spec"]["image"], put.json()["spec"]["id"]) == (2, "nginx:2", app)

    patch = await client.patch(f"/v1/apps/{app}", json={"instances": 5})
    assert patch.status_code == 200, patch.text
    body = patch.json()
    assert (body["version"], body["instances"], body["spec"]["instances"], body["spec"]["image"]) == (3, 5, 5, "nginx:2")

    stored = await pool.fetch("SELECT version, spec->>'instances' AS n FROM app_versions WHERE app = $1 "
                              "ORDER BY version", app)
    assert [(r["version"], r["n"]) for r in stored] == [(1, "2"), (2, "2"), (3, "5")]
    assert [m.reason for m in await watch.wait_for(3)] == ["created", "updated", "scaled"]


async def test_put_with_another_id_is_refused(client: httpx.AsyncClient, created, uid: str) -> None:
    app = created.app(f"ids-{uid}")
    assert (await client.post("/v1/apps", json=spec(app))).status_code == 201

    r = await client.put(f"/v1/apps/{app}", json=spec(f"other-{uid}"))

    assert r.status_code == 422
    assert [d["field"] for d in r.json()["details"]] == ["id"]


async def test_unknown_app_is_404_everywhere(client: httpx.AsyncClient, uid: str) -> None:
    app = f"nope-{uid}"
    expected = {"error": f"app '{app}' not found"}
    for method, path, body in [("GET", f"/v1/apps/{app}", None), ("DELETE", f"/v1/apps/{app}", None),
                               ("PUT", f"/v1/apps/{app}", spec(app)), ("PATCH", f"/v1/apps/{app}", {"instances": 1}),
                               ("GET", f"/v1/apps/{app}/instances", None)]:
        r = await client.request(method, path, json=body)
        assert (r.status_code, r.json()) == (404, expected), f"{method} {path}"
    r = await client.get(f"/v1/instances/{app}-0")
    assert (r.status_code, r.json()) == (404, {"error": f"instance '{app}-0' not found"})


async def test_invalid_input_stores_nothing(client: httpx.AsyncClient, pool: asyncpg.Pool, created, uid: str) -> None:
    app = created.app(f"bad-{uid}")
    for body in [spec(app, instances=-1), spec(app, image=""), spec(app, extra=1)]:
        assert (await client.post("/v1/apps", json=body)).status_code == 422
    assert (await client.post("/v1/apps", content=b'{"id": "' + app.encode(),
                              headers={"content-type": "application/json"})).status_code == 400
    assert await pool.fetchval("SELECT count(*) FROM apps WHERE id = $1", app) == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE subject LIKE '%.' || $1", app) == 0


async def test_resources_larger_than_any_host_are_refused(client: httpx.AsyncClient, pool: asyncpg.Pool,
                                                          created, uid: str) -> None:
    app = created.app(f"big-{uid}")
    host = f"gw-{uid}"
    created.hosts.append(host)
    await pool.execute("INSERT INTO hosts (id, cpus, mem_mb, last_seen) VALUES ($1, 2, 4096, now())", host)
    # Other tests share the database: the limit is the largest host there, whichever it is.
    cpus, mem = await pool.fetchrow("SELECT max(cpus), max(mem_mb) FROM hosts")

    r = await client.post("/v1/apps", json=spec(app, resources={"cpus": cpus + 1, "mem_mb": mem + 1}))

    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid app spec"
    assert [d["field"] for d in r.json()["details"]] == ["resources.cpus", "resources.mem_mb"]
    assert await pool.fetchval("SELECT count(*) FROM apps WHERE id = $1", app) == 0
    fits = await client.post("/v1/apps", json=spec(app, resources={"cpus": cpus, "mem_mb": mem}))
    assert fits.status_code == 201, fits.text


async def test_bulk_create_writes_all_in_one_go(client: httpx.AsyncClient, pool: asyncpg.Pool, created,
                                               deploy_requests, uid: str) -> None:
    apps = [created.app(f"bulk{k}-{uid}") for k in range(3)]
    watches = [await deploy_requests(a) for a in apps]

    r = await client.post("/v1/apps/bulk", json=[spec(a, instances=k + 1) for k, a in enumerate(apps)])

    assert r.status_code == 201, r.text
    assert r.json() == {"created": [{"id": a, "version": 1} for a in apps]}
    stored = await pool.fetch("SELECT id, instances FROM apps WHERE id = ANY($1) ORDER BY id", apps)
    assert [(x["id"], x["instances"]) for x in stored] == [(a, k + 1) for k, a in enumerate(apps)]
    for a, w in zip(apps, watches):
        assert [(m.app, m.reason) for m in await w.wait_for(1)] == [(a, "created")]


async def test_bulk_create_names_the_item_and_stores_nothing(client: httpx.AsyncClient, pool: asyncpg.Pool,
                                                             created, uid: str) -> None:
    good, bad, live = created.app(f"bg-{uid}"), created.app(f"bb-{uid}"), created.app(f"bl-{uid}")
    assert (await client.post("/v1/apps", json=spec(live))).status_code == 201
    cases = [
        ([spec(good), spec(bad, resources={"cpus": -1, "mem_mb": 64})], 422, ["1.resources.cpus"]),
        ([spec(good), spec(bad, resources={"cpus": 0.25, "mem_mb": 10 ** 9})], 422, ["1.resources.mem_mb"]),
        ([spec(good), spec(good)], 422, ["1.id"]),
        ([spec(good), spec(live)], 409, ["1.id"]),
        ([], 422, [""]),
    ]
    for body, status, fields in cases:
        r = await client.post("/v1/apps/bulk", json=body)
        assert (r.status_code, [d["field"] for d in r.json().get("details", [])]) == (status, fields), r.text
    assert await pool.fetchval("SELECT count(*) FROM apps WHERE id = ANY($1)", [good, bad]) == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE subject LIKE '%.' || $1", good) == 0
