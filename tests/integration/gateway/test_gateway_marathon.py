"""Marathon's /v2 API on the real gateway (task log, JetStream, tokens): what each call writes
(through the same store functions as /v1, visible on /v1) and answers (Marathon's shapes and
errors).  The test plays the placer where an answer needs instances or a deployment."""
from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from services.gateway.marathon import ids

DOCKER = {"type": "DOCKER", "docker": {"image": "nginx:1.27", "privileged": False, "forcePullImage": False},
          "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp", "name": "http"}]}


def definition(mid: str, **more: Any) -> dict[str, Any]:
    return {"id": mid, "container": DOCKER, "cpus": 0.1, "mem": 32, "instances": 2,
            "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0}], **more}


async def _made(client: httpx.AsyncClient, created, uid: str, name: str = "web") -> tuple[str, str]:
    mid = f"/mt-{uid}/{name}"
    app_id = created.app(ids.to_noops(mid))
    r = await client.post("/v2/apps", json=definition(mid))
    assert r.status_code == 201, r.text
    return mid, app_id


async def _run(pool: asyncpg.Pool, created, app_id: str, n: int, *, healthy: bool | None = True) -> list[str]:
    """Instances of the app's current version, RUNNING (what the placer and hostd would make)."""
    version = await pool.fetchval("SELECT version FROM apps WHERE id = $1", app_id)
    out = []
    for i in range(n):
        iid = f"{app_id}-{i:012x}"
        created.instances.append(iid)
        await pool.execute("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, ip, healthy) "
                           "VALUES ($1, $2, $3, 'mt-host', 1, 0.1, 32, 'RUNNING', $4, $5)",
                           iid, app_id, version, f"198.18.7.{i + 1}", healthy)
        out.append(iid)
    return out


async def test_create_writes_the_native_app_and_answers_marathons_shape(client: httpx.AsyncClient, created,
                                                                        deploy_requests, uid: str) -> None:
    mid = f"/mt-{uid}/web"
    app_id = created.app(f"mt-{uid}--web")
    watch = await deploy_requests(app_id)
    r = await client.post("/v2/apps", json=definition(mid, env={"A": "1"}, labels={"HAPROXY_GROUP": "external"}))
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/v2/apps{mid}"
    assert r.headers["marathon-deployment-id"] == body["deployments"][0]["id"] == f"{app_id}.1"
    assert (body["id"], body["instances"], body["tasksRunning"], body["tasksStaged"]) == (mid, 2, 0, 0)
    assert body["container"]["docker"]["image"] == "nginx:1.27" and body["labels"] == {"HAPROXY_GROUP": "external"}
    assert body["version"].endswith("Z") and "tasks" not in body
    native = (await client.get(f"/v1/apps/{app_id}")).json()
    assert native["spec"]["image"] == "nginx:1.27" and native["spec"]["health_checks"][0]["port_name"] == "http"
    assert native["spec"]["resources"]["cpus"] == 0.1 and native["instances"] == 2
    assert [m.reason for m in await watch.wait_for(1)] == ["created"]

    again = await client.post("/v2/apps", json=definition(mid))
    assert (again.status_code, again.json()) == (409, {"message": f"An app with id [{mid}] already exists."})


async def test_refusals_are_in_marathons_shape_and_store_nothing(client: httpx.AsyncClient, pool: asyncpg.Pool,
                                                                 created, uid: str) -> None:
    mid = f"/mt-{uid}/priv"
    created.app(ids.to_noops(mid))
    bad = definition(mid, container={**DOCKER, "docker": {**DOCKER["docker"], "privileged": True}},
                     upgradeStrategy={"minimumHealthCapacity": 2}, fetch=[{"uri": "http://x/y"}])
    r = await client.post("/v2/apps", json=bad)
    assert r.status_code == 422
    assert r.json()["message"] == "Object is not valid"
    assert {d["path"] for d in r.json()["details"]} == {"/container/docker/privileged", "/fetch",
                                                        "/upgradeStrategy/minimumHealthCapacity"}
    assert await pool.fetchval("SELECT count(*) FROM apps WHERE id = $1", ids.to_noops(mid)) == 0
    huge = await client.post("/v2/apps", json=definition(f"/mt-{uid}/huge", cpus=100000))
    assert huge.status_code == 422 and huge.json()["details"][0]["path"] == "/cpus"
    dotted = await client.post("/v2/apps", json=definition(f"/mt-{uid}/a.b"))
    assert dotted.status_code == 422 and dotted.json()["details"][0]["path"] == "/id"
    broken = await client.post("/v2/apps", content=b"{nope", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and isinstance(broken.json()["details"], str)
    missing = await client.get(f"/v2/apps/mt-{uid}/nope")
    assert (missing.status_code, missing.json()) == (404, {"message": f"App '/mt-{uid}/nope' does not exist"})


async def test_get_and_list_with_tasks(client: httpx.AsyncClient, pool: asyncpg.Pool, created, uid: str) -> None:
    mid, app_id = await _made(client, created, uid)
    iids = await _run(pool, created, app_id, 2)
    r = await client.get(f"/v2/apps/{mid}")  # the client builds "/v2/apps/" + "/mt-.../web": "//" collapses
    assert r.status_code == 200, r.text
    app = r.json()["app"]
    assert (app["tasksRunning"], app["tasksHealthy"]) == (2, 2)
    assert sorted(t["id"] for t in app["tasks"]) == iids
    task = app["tasks"][0]
    assert (task["appId"], task["host"], task["state"], task["ports"]) == (mid, "mt-host", "TASK_RUNNING", [80])
    assert task["ipAddresses"][0]["ipAddress"].startswith("198.18.7.")
    assert task["healthCheckResults"][0]["alive"] is True
    listed = (await client.get("/v2/apps", params={"embed": "apps.tasks", "id": f"mt-{uid}"})).json()["apps"]
    assert [a["id"] for a in listed] == [mid] and len(listed[0]["tasks"]) == 2
    plain = (await client.get("/v2/apps", params={"id": f"mt-{uid}"})).json()["apps"]
    assert "tasks" not in plain[0] and plain[0]["tasksRunning"] == 2
    assert (await client.get("/v2/apps", params={"label": "nope", "id": f"mt-{uid}"})).json() == {"apps": []}
    tasks = (await client.get(f"/v2/apps/{mid}/tasks")).json()["tasks"]
    assert sorted(t["id"] for t in tasks) == iids
    everywhere = (await client.get("/v2/tasks", params={"status": "running"})).json()["tasks"]
    assert set(iids) <= {t["id"] for t in everywhere}


async def test_updates_scale_restart_rollback_and_delete(client: httpx.AsyncClient, pool: asyncpg.Pool, created,
                                                         deploy_requests, uid: str) -> None:
    mid, app_id = await _made(client, created, uid)
    watch = await deploy_requests(app_id)
    first = (await client.get(f"/v2/apps/{mid}")).json()["app"]["version"]
    scaled = await client.put(f"/v2/apps/{mid}", json={"instances": 3})
    assert scaled.status_code == 200, scaled.text
    assert scaled.json()["deploymentId"] == f"{app_id}.2" == scaled.headers["marathon-deployment-id"]
    changed = await client.patch(f"/v2/apps/{mid}", params={"force": "True"}, json={"cmd": "nginx -g 'daemon off;'"})
    assert changed.status_code == 200, changed.text
    native = (await client.get(f"/v1/apps/{app_id}")).json()
    assert native["instances"] == 3 and native["spec"]["cmd"] == ["/bin/sh", "-c", "nginx -g 'daemon off;'"]
    assert native["spec"]["health_checks"][0]["port_name"] == "http"   # a partial update keeps the rest
    restarted = await client.post(f"/v2/apps/{mid}/restart")
    assert restarted.status_code == 200 and restarted.json()["deploymentId"] == f"{app_id}.4"
    back = await client.put(f"/v2/apps/{mid}", json={"version": first})
    assert back.status_code == 200, back.text
    native = (await client.get(f"/v1/apps/{app_id}")).json()
    assert (native["version"], native["instances"], native["spec"]["cmd"]) == (5, 2, [])
    assert (await client.put(f"/v2/apps/{mid}", json={"version": "2001-01-01T00:00:00.000Z"})).status_code == 404
    assert (await client.patch(f"/v2/apps/mt-{uid}/ghost", json={"instances": 1})).status_code == 404
    made = await client.put(f"/v2/apps/mt-{uid}/new", json=definition(f"/mt-{uid}/new"))
    created.app(f"mt-{uid}--new")
    assert made.status_code == 201, made.text
    gone = await client.delete(f"/v2/apps/{mid}")
    assert gone.status_code == 200 and set(gone.json()) == {"deploymentId", "version"}
    assert (await client.get(f"/v2/apps/{mid}")).status_code == 404
    reasons = [m.reason for m in await watch.wait_for(6)]
    assert reasons == ["created", "scaled", "updated", "restart", "rollback to 1", "deleted"]


async def test_killing_tasks(client: httpx.AsyncClient, pool: asyncpg.Pool, created, uid: str) -> None:
    mid, app_id = await _made(client, created, uid)
    await client.put(f"/v2/apps/{mid}", json={"instances": 4})
    a, b, c, d = await _run(pool, created, app_id, 4)
    one = await client.delete(f"/v2/apps/{mid}/tasks/{a}", params={"scale": "true"})
    assert one.status_code == 200 and one.json()["deploymentId"] == f"{app_id}.3"
    assert await pool.fetchval("SELECT instances FROM apps WHERE id = $1", app_id) == 3
    replaced = await client.delete(f"/v2/apps/{mid}/tasks/{b}")
    assert replaced.status_code == 200 and replaced.json()["task"]["state"] == "TASK_KILLING"
    assert await pool.fetchval("SELECT instances FROM apps WHERE id = $1", app_id) == 3
    assert (await client.delete(f"/v2/apps/{mid}/tasks/{app_id}-ffffffffffff")).status_code == 404
    many = await client.post("/v2/tasks/delete", params={"scale": "True"}, json={"ids": [c]})
    assert many.status_code == 200, many.text
    assert await pool.fetchval("SELECT instances FROM apps WHERE id = $1", app_id) == 2
    rest = await client.delete(f"/v2/apps/{mid}/tasks", params={"host": "mt-host"})
    assert [t["id"] for t in rest.json()["tasks"]] == [d]
    killing = await pool.fetch("SELECT id FROM instances WHERE app = $1 AND kill_requested ORDER BY id", app_id)
    assert [r["id"] for r in killing] == [a, b, c, d]
    bad = await client.post("/v2/tasks/delete", json={"ids": ["not-a-task"]})
    assert bad.status_code == 422 and bad.json()["details"][0]["path"] == "/ids/0"


async def test_deployments_list_and_cancel(client: httpx.AsyncClient, pool: asyncpg.Pool, created, uid: str) -> None:
    mid, app_id = await _made(client, created, uid)
    await client.put(f"/v2/apps/{mid}", json={"instances": 3})
    # The placer opens the deployment of version 2 (from the good version 1).
    await pool.execute("INSERT INTO deployments (app, from_version, to_version) VALUES ($1, 1, 2)", app_id)
    listed = [d for d in (await client.get("/v2/deployments")).json() if d["affectedApps"] == [mid]]
    assert [d["id"] for d in listed] == [f"{app_id}.2"]
    assert listed[0]["steps"][0]["actions"][0] == {"action": "RestartApplication", "app": mid}
    assert (await client.get(f"/v2/apps/{mid}")).json()["app"]["deployments"] == [{"id": f"{app_id}.2"}]
    reverted = await client.delete(f"/v2/deployments/{app_id}.2")
    assert reverted.status_code == 200, reverted.text
    native = (await client.get(f"/v1/apps/{app_id}")).json()
    assert (native["version"], native["instances"]) == (3, 2)
    await pool.execute("INSERT INTO deployments (app, from_version, to_version) VALUES ($1, 1, 3)", app_id)
    forced = await client.delete(f"/v2/deployments/{app_id}.3", params={"force": "true"})
    assert (forced.status_code, forced.content) == (202, b"")
    assert await pool.fetchval("SELECT state FROM deployments WHERE app = $1 AND to_version = 3", app_id) == "cancelled"
    assert (await client.delete(f"/v2/deployments/{app_id}.3")).status_code == 404


async def test_info_leader_ping(client: httpx.AsyncClient, client_as) -> None:
    info = (await client.get("/v2/info")).json()
    assert info["version"] >= "0.8.1" and all(isinstance(info[k], dict) for k in
                                                ("marathon_config", "zookeeper_config", "http_config"))
    assert (await client.get("/v2/leader")).json() == {"leader": "gateway"}
    pong = await client_as(None).get("/ping")
    assert (pong.status_code, pong.text, pong.headers["content-type"].split(";")[0]) == (200, "pong", "text/plain")


async def test_tokens_and_scopes(client_as, tokens: dict[str, str], created, uid: str) -> None:
    anon = await client_as(None).get("/v2/apps")
    assert anon.status_code == 401 and "message" in anon.json()
    viewer = await client_as("viewer").post("/v2/apps", json=definition(f"/mt-{uid}/v"))
    assert viewer.status_code == 403 and "operator" in viewer.json()["message"]
    other = await client_as("payments").post("/v2/apps", json=definition(f"/mt-{uid}/x"))
    assert other.status_code == 403
    mine = created.app(f"payments--mt-{uid}")
    dcos = await client_as(None, headers={"Authorization": f"token={tokens['payments']}"}).post(
        "/v2/apps", json=definition(f"/payments/mt-{uid}"))
    assert dcos.status_code == 201, dcos.text
    seen = (await client_as("payments-viewer").get("/v2/apps")).json()["apps"]
    assert {a["id"] for a in seen} == {f"/payments/mt-{uid}"} | {a["id"] for a in seen if a["id"].startswith("/payments")}
    app = (await client_as("payments-viewer").get(f"/v2/apps/payments/mt-{uid}")).json()["app"]
    assert app["id"] == ids.to_marathon(mine)
