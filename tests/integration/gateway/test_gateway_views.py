"""Read side of the gateway against the real task log: hosts, instances, app counts, health,
a database that went away, and the SSE stream of endpoint changes over a real socket."""
from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import httpx
import nats
import uvicorn

from devtools import infra
from devtools.cluster import ClusterConfig
from libs import bus, db, messages, natsauth, outbox, subjects
from libs.settings import GatewaySettings
from services.gateway.app import create_app
from tests.support.wait import eventually


async def _instance(pool: asyncpg.Pool, created, iid: str, app: str, host: str, state: str,
                    ago_s: float = 0.0) -> None:
    created.instances.append(iid)
    await pool.execute(
        "INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, created_at) "
        "VALUES ($1, $2, 1, $3, 1, 0.5, 100, $4, now() - make_interval(secs => $5))", iid, app, host, state, ago_s)


async def test_hosts_show_online_and_reservations(client: httpx.AsyncClient, pool: asyncpg.Pool, created,
                                                  uid: str) -> None:
    up, down = f"up-{uid}", f"down-{uid}"
    created.hosts += [up, down]
    await pool.execute("INSERT INTO hosts (id, cpus, mem_mb, labels, load1, last_seen) VALUES "
                       "($1, 4, 8192, '{\"rack\": \"r1\"}', 0.5, now()), ($2, 2, 2048, '{}', 0, now() - interval '1 hour')",
                       up, down)
    app = created.app(f"res-{uid}")
    for n, state in enumerate(["RUNNING", "STARTING", "FAILED", "KILLED"]):
        await _instance(pool, created, f"{app}-{n}", app, up, state)

    hosts = {h["id"]: h for h in (await client.get("/v1/hosts")).json()}

    assert hosts[up]["online"] is True and hosts[down]["online"] is False
    assert hosts[up]["labels"] == {"rack": "r1"} and hosts[up]["load1"] == 0.5
    assert hosts[up]["reserved"] == {"cpus": 1.0, "mem_mb": 200}  # FAILED and KILLED hold nothing
    assert hosts[down]["reserved"] == {"cpus": 0.0, "mem_mb": 0}


async def test_instances_newest_first_filtered_and_counted(client: httpx.AsyncClient, pool: asyncpg.Pool,
                                                           created, uid: str) -> None:
    app = created.app(f"inst-{uid}")
    assert (await client.post("/v1/apps", json={"id": app, "image": "nginx:1", "instances": 3})).status_code == 201
    await _instance(pool, created, f"{app}-a", app, "h1", "RUNNING", ago_s=-2)
    await _instance(pool, created, f"{app}-b", app, "h2", "FAILED", ago_s=-1)
    await _instance(pool, created, f"{app}-c", app, "h1", "RUNNING", ago_s=0)
    await _instance(pool, created, f"{app}-stale", app, "h1", "RUNNING", ago_s=3600)  # before this incarnation

    all_ = (await client.get(f"/v1/apps/{app}/instances")).json()
    running = (await client.get(f"/v1/apps/{app}/instances", params={"state": "RUNNING"})).json()
    one = await client.get(f"/v1/instances/{app}-b")
    listed = {a["id"]: a for a in (await client.get("/v1/apps")).json()}

    assert [i["id"] for i in all_] == [f"{app}-a", f"{app}-b", f"{app}-c"]
    assert [i["id"] for i in running] == [f"{app}-a", f"{app}-c"]
    assert one.status_code == 200
    assert set(one.json()) == {"id", "app", "version", "host", "epoch", "desired", "state", "ip", "container_id",
                               "reason", "created_at", "updated_at", "mac", "parent", "lease_expires",
                               "healthy", "health"}
    assert (one.json()["state"], one.json()["host"]) == ("FAILED", "h2")
    assert (one.json()["healthy"], one.json()["health"]) == (None, "")  # no verdict recorded
    await pool.execute("UPDATE instances SET healthy = false, health = 'http /: status 500' WHERE id = $1", f"{app}-a")
    a = (await client.get(f"/v1/instances/{app}-a")).json()
    assert (a["healthy"], a["health"]) == (False, "http /: status 500")
    assert listed[app]["counts"] == {"PENDING": 0, "STARTING": 0, "RUNNING": 2, "FAILED": 1, "KILLED": 0, "LOST": 0}
    assert (await client.get(f"/v1/apps/{app}")).json()["counts"] == listed[app]["counts"]


async def test_healthz_is_ready_when_connected(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert (r.status_code, r.json()["ready"]) == (200, True)


async def test_unreachable_task_log_is_503(cluster_cfg: ClusterConfig, settings: GatewaySettings,
                                          nc: nats.NATS) -> None:
    # The token lookup is the first read of the task log: it fails like any other, with 503.
    closed = await db.connect(cluster_cfg.db_dsn)
    await closed.close()  # every use now fails the way a lost database does (InterfaceError)
    app = create_app(settings, closed, nc, outbox.Relay(closed, nc.jetstream()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                 headers=cluster_cfg.auth_headers()) as c:
        for method, path, body in [("GET", "/v1/apps", None), ("GET", "/v1/hosts", None),
                                   ("POST", "/v1/apps", {"id": "x", "image": "nginx:1"})]:
            r = await c.request(method, path, json=body)
            assert (r.status_code, r.json()) == (503, {"error": "task log unavailable, retry"}), f"{method} {path}"
        health = await c.get("/healthz")
        assert (health.status_code, health.json()["ready"], health.json()["db"]) == (503, False, False)


async def _consumers(nc: nats.NATS, stream: str) -> int:
    return (await nc.jetstream().stream_info(stream)).state.consumer_count


async def test_events_stream_endpoint_changes_and_drop_their_consumers_on_disconnect(
        cluster_cfg: ClusterConfig, settings: GatewaySettings, pool: asyncpg.Pool, nc: nats.NATS, created,
        uid: str) -> None:
    name = f"gateway-test-{uid}"
    gw_nc = await bus.connect(cluster_cfg.nats_url, name, **cluster_cfg.nats_credentials("gateway"))
    port = infra.free_port()
    app = create_app(settings, pool, gw_nc, outbox.Relay(pool, gw_nc.jetstream(), subjects=natsauth.relay_subjects("gateway")))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    serving = asyncio.create_task(server.serve())
    target = created.app(f"ev-{uid}")
    created.endpoint_subjects.append(subjects.endpoints(target))
    change = messages.EndpointsChanged(app=target, seq=7, endpoints=[
        messages.Endpoint(instance=f"{target}-0", host="h1", ip="198.18.0.5", ports={"http": 8080})])
    before = await _consumers(nc, subjects.ENDPOINTS.name)
    before_events = await _consumers(nc, subjects.EVENTS.name)

    async def _consumers_back() -> bool:
        return (await _consumers(nc, subjects.ENDPOINTS.name), await _consumers(nc, subjects.EVENTS.name)) == (
            before, before_events)

    try:
        await eventually(lambda: server.started, timeout=10, what="uvicorn started")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10,
                                     headers=cluster_cfg.auth_headers()) as http:
            async with http.stream("GET", "/v1/events") as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                lines = r.aiter_lines()
                assert await anext(lines) == ": subscribed"  # the server has our consumers now
                assert await _consumers(nc, subjects.ENDPOINTS.name) == before + 1
                await nc.publish(subjects.endpoints(target), messages.encode(change))
                event = []
                while len(event) < 3:  # skip the blank lines that end each SSE message
                    if line := await anext(lines):
                        event.append(line)
        assert event[0].startswith("id: ") and event[1] == "event: endpoints"
        assert messages.decode(event[2].removeprefix("data: ").encode(), messages.EndpointsChanged) == change
        await eventually(lambda: _consumers_back(), timeout=10,
                         what="the gateway to delete its consumers after the client left")
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(serving, 10)
        await gw_nc.close()
