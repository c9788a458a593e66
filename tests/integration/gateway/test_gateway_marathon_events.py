"""/v2/events over a real socket, read the way marathon-lb reads it (lines starting ``data: ``,
``event_type`` filters, basic auth as marathon-python sends it): the endpoint changes the registry
publishes on NATS become Marathon status updates and health changes of the tasks."""
from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import nats

from devtools.cluster import ClusterConfig
import logging

from libs import bus, db, messages, natsauth, outbox, subjects
from libs.settings import GatewaySettings
from services.gateway.app import create_app
from services.gateway.marathon import ids
from services.gateway.routes import marathon_events
from tests.support.wait import eventually
from tests.support.serve import serving

DOCKER = {"docker": {"image": "nginx:1.27"}, "portMappings": [{"containerPort": 80, "name": "http"}]}


async def _events(lines: AsyncIterator[str], n: int) -> list[dict[str, Any]]:
    out = []
    async for line in lines:
        if line.startswith("data: "):
            out.append(json.loads(line[len("data: "):]))
            if len(out) == n:
                return out
    raise AssertionError("stream ended")


async def test_marathon_lb_sees_status_updates(cluster_cfg: ClusterConfig, settings: GatewaySettings,
                                               pool: asyncpg.Pool, nc: nats.NATS, tokens: dict[str, str],
                                               created, uid: str) -> None:
    gw_nc = await bus.connect(cluster_cfg.nats_url, f"gateway-mev-{uid}", **cluster_cfg.nats_credentials("gateway"))
    app = create_app(settings, pool, gw_nc, outbox.Relay(pool, gw_nc.jetstream(),
                                                         subjects=natsauth.relay_subjects("gateway")))
    mid = f"/mev-{uid}/web"
    app_id = created.app(ids.to_noops(mid))
    created.endpoint_subjects.append(subjects.endpoints(app_id))
    basic = base64.b64encode(f"marathon:{tokens['viewer']}".encode()).decode()
    iid = f"{app_id}-{1:012x}"
    created.instances.append(iid)
    try:
        async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            made = await http.post("/v2/apps", headers={"Authorization": f"Bearer {tokens['operator']}"},
                                   json={"id": mid, "container": DOCKER, "cpus": 0.1, "mem": 32, "instances": 1,
                                         "healthChecks": [{"protocol": "TCP", "portIndex": 0}]})
            assert made.status_code == 201, made.text
            params = [("event_type", t) for t in ("api_post_event", "health_status_changed_event",
                                                  "status_update_event")]
            async with http.stream("GET", "/v2/events", params=params,
                                   headers={"Authorization": f"Basic {basic}", "Accept": "text/event-stream"}) as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                lines = r.aiter_lines()
                assert await anext(lines) == ""   # the first byte: subscribed (attached is filtered out)
                await pool.execute(
                    "INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, ip, healthy) "
                    "VALUES ($1, $2, 1, 'mev-host', 1, 0.1, 32, 'RUNNING', '198.18.9.1', true)", iid, app_id)
                change = messages.EndpointsChanged(app=app_id, seq=1, endpoints=[
                    messages.Endpoint(instance=iid, host="mev-host", ip="198.18.9.1", ports={"http": 80})])
                await nc.publish(subjects.endpoints(app_id), messages.encode(change))
                up, health = await _events(lines, 2)
                assert (up["eventType"], up["taskId"], up["taskStatus"], up["appId"]) == (
                    "status_update_event", iid, "TASK_RUNNING", mid)
                assert up["ipAddresses"] == [{"ipAddress": "198.18.9.1", "protocol": "IPv4"}] and up["ports"] == [80]
                assert (health["eventType"], health["alive"], health["taskId"]) == (
                    "health_status_changed_event", True, iid)

                await pool.execute("UPDATE instances SET state = 'KILLED', desired = 'KILLED' WHERE id = $1", iid)
                gone = messages.EndpointsChanged(app=app_id, seq=2, endpoints=[])
                await nc.publish(subjects.endpoints(app_id), messages.encode(gone))
                [down] = await _events(lines, 1)
                assert (down["eventType"], down["taskId"], down["taskStatus"]) == ("status_update_event", iid,
                                                                                   "TASK_KILLED")
            async with http.stream("GET", "/v2/events", headers={"Authorization": f"token={tokens['viewer']}"}) as r:
                lines = r.aiter_lines()
                [first] = await _events(lines, 1)
                assert first["eventType"] == "event_stream_attached" and first["remoteAddress"] == "127.0.0.1"
            # A token limited to apps payments-* hears only theirs: the change of the other app
            # published first never reaches it, the payments app's does.
            theirs = created.app(f"payments--mev-{uid}")
            created.endpoint_subjects.append(subjects.endpoints(theirs))
            tid = f"{theirs}-{2:012x}"
            created.instances.append(tid)
            made = await http.post("/v2/apps", headers={"Authorization": f"Bearer {tokens['operator']}"},
                                   json={"id": ids.to_marathon(theirs), "container": DOCKER, "cpus": 0.1, "mem": 32})
            assert made.status_code == 201, made.text
            await pool.execute("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, ip) "
                               "VALUES ($1, $2, 1, 'mev-host', 1, 0.1, 32, 'RUNNING', '198.18.9.2')", tid, theirs)
            scoped = {"Authorization": f"Bearer {tokens['payments-viewer']}"}
            async with http.stream("GET", "/v2/events", params={"event_type": "status_update_event"},
                                   headers=scoped) as r:
                lines = r.aiter_lines()
                assert await anext(lines) == ""
                for target in (app_id, theirs):
                    await nc.publish(subjects.endpoints(target), messages.encode(
                        messages.EndpointsChanged(app=target, seq=3, endpoints=[])))
                [only] = await _events(lines, 1)
                assert (only["appId"], only["taskId"]) == (ids.to_marathon(theirs), tid)
    finally:
        await gw_nc.close()


async def test_the_stream_outlives_a_task_log_that_went_away(cluster_cfg: ClusterConfig, nc: nats.NATS, caplog,
                                                             uid: str) -> None:
    closed = await db.connect(cluster_cfg.db_dsn)
    await closed.close()   # every read now fails the way a lost database does
    q = db.Queries("gateway", "control", "marathon")
    stream = marathon_events._stream(nc, closed, q, lambda _: True, lambda _: True, "test", heartbeat_s=0.2)
    app_id = f"mev-gone-{uid}"
    try:
        with caplog.at_level(logging.WARNING, logger="noops.gateway"):
            assert b"event_stream_attached" in await anext(stream)
            await nc.publish(subjects.endpoints(app_id), messages.encode(
                messages.EndpointsChanged(app=app_id, seq=1, endpoints=[])))
            # The look fails, the stream stays: heartbeats follow, and the app is tried again.
            assert [await anext(stream) for _ in range(2)] == [b"\r\n", b"\r\n"]
            await eventually(lambda: sum("task log unavailable" in r.getMessage() for r in caplog.records) >= 2,
                             timeout=5, what="two failed looks")
    finally:
        await stream.aclose()
        await nc.jetstream().purge_stream(subjects.ENDPOINTS.name, subject=subjects.endpoints(app_id))
