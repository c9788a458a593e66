"""/v1/events over a real socket, the gateway on its own NATS identity (its permissions are
NATS's): instance, deployment and host changes made by the real committer, report writes and
host-down path, replayed from NOOPS_EVENTS with resumable ids, filtered by type, app and the
token's scope; a client that stops reading does not make the gateway read ahead."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import nats
import pytest_asyncio

from devtools.cluster import ClusterConfig
from libs import bus, db, messages, outbox, subjects
from libs.settings import GatewaySettings
from services.gateway.app import create_app
from services.gateway.marathon import ids
from services.gateway.routes import events as events_route
from services.placer import liveness
from tests.integration.placer.taskrows import add_app, add_host, committer, report
from tests.support.serve import serving
from tests.support.wait import eventually, holds


@dataclass(frozen=True)
class Frame:
    id: str
    event: str
    data: dict[str, Any]


class Stream:
    """One SSE client, read frame by frame (comments skipped, with a deadline per frame)."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def first_line(self) -> str:
        return await asyncio.wait_for(anext(self.lines), 10)

    async def frame(self, timeout: float = 10) -> Frame:
        fields: dict[str, str] = {}
        while True:
            line = await asyncio.wait_for(anext(self.lines), timeout)
            if line.startswith(":"):
                continue
            if not line:
                if fields:
                    return Frame(fields.get("id", ""), fields["event"], json.loads(fields["data"]))
                continue
            key, _, value = line.partition(": ")
            fields[key] = value

    async def frames(self, n: int, timeout: float = 10) -> list[Frame]:
        return [await self.frame(timeout) for _ in range(n)]


@pytest_asyncio.fixture
async def gateway(cluster_cfg: ClusterConfig, settings: GatewaySettings, pool: asyncpg.Pool, relay: outbox.Relay,
                  uid: str) -> AsyncIterator[str]:
    gw_nc = await bus.connect(cluster_cfg.nats_url, f"gateway-events-{uid}", **cluster_cfg.nats_credentials("gateway"))
    try:
        async with serving(create_app(settings, pool, gw_nc, relay)) as url:
            yield url
    finally:
        await gw_nc.close()


def _client(url: str, token: str, last_event_id: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    return httpx.AsyncClient(base_url=url, timeout=10, headers=headers)


async def _deployed(pool, created, uid: str, app_id: str, n: int) -> list[str]:
    host = f"ev{uid}"
    if host not in created.hosts:
        created.hosts.append(host)
        await add_host(pool, host)
    created.app(app_id)
    await add_app(pool, app_id, n, host)
    await (await committer(pool)).reconcile([app_id])
    return sorted(r["id"] for r in await pool.fetch("SELECT id FROM instances WHERE app = $1", app_id))


async def test_a_deployments_instance_events_arrive_in_order(gateway, pool, tokens, created, uid) -> None:
    app_id = f"evo-{uid}"
    async with _client(gateway, tokens["viewer"]) as http, \
            http.stream("GET", "/v1/events", params={"app": app_id, "type": "instance,deployment"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        s = Stream(r)
        assert await s.first_line() == ": subscribed"
        ids = await _deployed(pool, created, uid, app_id, 3)
        await report(pool, ids, "STARTING")
        await report(pool, ids, "RUNNING", healthy=True)
        got = await s.frames(10)
    deployment = [f.data for f in got if f.event == "deployment"]
    assert [(d["app"], d["version"], d["state"]) for d in deployment] == [(app_id, 1, "running")]
    instance = [f.data for f in got if f.event == "instance"]
    assert [d["state"] for d in instance] == ["PENDING"] * 3 + ["STARTING"] * 3 + ["RUNNING"] * 3
    assert {d["instance"] for d in instance} == set(ids)
    running = instance[-1]
    assert running["health"] == "healthy" and running["ip"].startswith("198.18.8.") and running["app"] == app_id
    assert running["at"].endswith("Z") and "T" in running["at"]
    assert len({f.id for f in got}) == 10   # every frame its own id


async def test_a_host_marked_down_reaches_the_stream_within_two_seconds(gateway, pool, tokens, created, uid) -> None:
    host = f"evd{uid}"
    created.hosts.append(host)
    async with _client(gateway, tokens["viewer"]) as http, \
            http.stream("GET", "/v1/events", params={"type": "host"}) as r:
        s = Stream(r)
        assert await s.first_line() == ": subscribed"
        await add_host(pool, host)
        up = await s.frame()
        assert (up.event, up.data["host"], up.data["state"]) == ("host", host, "UP")
        began = time.monotonic()
        await liveness.mark_down(pool, db.Queries("placer"), [host], fence_token=(await committer(pool)).token)
        down = await s.frame()
        took = time.monotonic() - began
    assert (down.data["host"], down.data["state"], down.data["draining"], down.data["cordoned"]) == (
        host, "DOWN", False, False)
    assert took < 2.0, f"host DOWN took {took:.2f}s to reach the stream"


async def test_resume_replays_exactly_what_followed_the_id(gateway, pool, tokens, created, uid) -> None:
    app_id = f"evr-{uid}"
    params = {"app": app_id, "type": "instance"}
    async with _client(gateway, tokens["viewer"]) as http, http.stream("GET", "/v1/events", params=params) as r:
        s = Stream(r)
        assert await s.first_line() == ": subscribed"
        ids = await _deployed(pool, created, uid, app_id, 3)
        await report(pool, ids, "STARTING")
        first = await s.frames(6)
    # Frame 2 is in the middle of the batch message holding the three PENDING changes.
    for how in ("header", "query"):
        last_id = first[1].id
        async with _client(gateway, tokens["viewer"], last_id if how == "header" else None) as http, \
                http.stream("GET", "/v1/events", params=params | ({"since": last_id} if how == "query" else {})) as r:
            s = Stream(r)
            assert await s.first_line() == ": subscribed"
            again = await s.frames(len(first) - 2)
            await report(pool, ids[:1], "RUNNING")     # and then live
            live = await s.frame()
        assert again == first[2:], how                    # none lost, none doubled, same ids
        assert (live.data["instance"], live.data["state"]) == (ids[0], "RUNNING")
        first = [*first, live]


async def test_an_id_no_longer_kept_gets_a_reset_then_live_events(gateway, pool, nc, tokens, created, uid) -> None:
    app_id = f"evt-{uid}"
    params = {"app": app_id, "type": "instance"}
    async with _client(gateway, tokens["viewer"]) as http, http.stream("GET", "/v1/events", params=params) as r:
        s = Stream(r)
        assert await s.first_line() == ": subscribed"
        ids = await _deployed(pool, created, uid, app_id, 1)
        (old,) = await s.frames(1)
        await report(pool, ids, "STARTING")
        await s.frames(1)   # in the stream after ``old``: the purge below drops it
    js = nc.jetstream()
    await js.purge_stream(subjects.EVENTS.name, seq=(await js.stream_info(subjects.EVENTS.name)).state.last_seq + 1)
    async with _client(gateway, tokens["viewer"], old.id) as http, http.stream("GET", "/v1/events", params=params) as r:
        s = Stream(r)
        assert await s.first_line() == ": subscribed"
        reset = await s.frame()
        await report(pool, ids, "RUNNING")
        live = await s.frame()
    assert reset.event == "reset" and "too old" in reset.data["reason"] and reset.id != old.id
    assert (live.event, live.data["state"]) == ("instance", "RUNNING")


async def test_type_and_app_filters(gateway, pool, tokens, created, uid) -> None:
    one, other, host = f"eva-{uid}", f"evb-{uid}", f"evf{uid}"
    async with _client(gateway, tokens["viewer"]) as http, \
            http.stream("GET", "/v1/events", params=[("app", one), ("type", "instance")]) as r1, \
            http.stream("GET", "/v1/events", params={"type": "host"}) as r2:
        s1, s2 = Stream(r1), Stream(r2)
        assert await s1.first_line() == await s2.first_line() == ": subscribed"
        await _deployed(pool, created, uid, other, 1)
        await _deployed(pool, created, uid, one, 1)
        created.hosts.append(host)
        await add_host(pool, host)
        (mine,) = await s1.frames(1)
        hosts = [await s2.frame()]
        while hosts[-1].data["host"] != host:
            hosts.append(await s2.frame())
    assert (mine.event, mine.data["app"]) == ("instance", one)
    assert {f.event for f in hosts} == {"host"}
    bad = await _client(gateway, tokens["viewer"]).get("/v1/events", params={"type": "instance,nope"})
    assert bad.status_code == 422 and "nope" in bad.text


async def test_a_scoped_token_never_sees_another_apps_events(gateway, pool, tokens, created, uid) -> None:
    pay, web = f"payments-evs-{uid}", f"web-evs-{uid}"
    async with _client(gateway, tokens["payments-viewer"]) as http, \
            http.stream("GET", "/v1/events", params={"type": "instance,deployment"}) as r:
        s = Stream(r)
        assert await s.first_line() == ": subscribed"
        await _deployed(pool, created, uid, web, 2)   # first: had it passed, it would come first
        await _deployed(pool, created, uid, pay, 1)
        got = await s.frames(2)
    assert {f.data["app"] for f in got} == {pay}


async def _gateway_consumer(js, start: int):
    infos = [c for c in await js.consumers_info(subjects.EVENTS.name) if c.config.opt_start_seq == start]
    return infos[0] if len(infos) == 1 else None


async def test_a_client_that_stops_reading_is_not_buffered(gateway, pool, nc, tokens, created, uid) -> None:
    """The gateway pulls a bounded number of batches ahead of the client: what it has not sent
    waits in the stream (num_pending), not in the gateway's memory."""
    app_id = created.app(f"evslow-{uid}")
    js = nc.jetstream()
    start = (await js.stream_info(subjects.EVENTS.name)).state.last_seq + 1
    item = messages.InstanceEvent(app=app_id, instance=f"{app_id}-000000000000", host="h1", state="RUNNING",
                                  health=None, ip="198.18.8.1", epoch=1, version=1, desired="RUNNING",
                                  reason="x" * 400, at=time.time())
    payload = messages.encode(messages.InstanceEvents(app=app_id, items=[item] * 64))
    n = 1500   # ~40 MB of frames: more than the kernel's socket buffers hold
    async with _client(gateway, tokens["viewer"]) as http, \
            http.stream("GET", "/v1/events", params={"app": app_id, "type": "instance"}) as r:
        s = Stream(r)
        assert await s.first_line() == ": subscribed"
        acks = [await js.publish_async(subjects.instance_events(app_id), payload) for _ in range(n)]
        await asyncio.gather(*acks)

        seen: list[int] = []

        async def stalled():
            c = await _gateway_consumer(js, start)
            if c is None:
                return None
            seen.append(c.delivered.stream_seq)
            return c if c.num_pending > n // 2 and seen[-3:] == [seen[-1]] * 3 else None

        # Once the client's socket is full the gateway stops pulling: the rest waits in the stream.
        c = await eventually(stalled, timeout=20, interval=0.3, what="the gateway to stop pulling for the silent client")
        bound = c.delivered.stream_seq + events_route.FETCH_BATCH * (events_route.QUEUED + 2)

        async def not_read_ahead() -> bool:
            now = await _gateway_consumer(js, start)
            return now is not None and now.delivered.stream_seq <= bound

        await holds(not_read_ahead, seconds=1.0, what="the gateway not reading ahead of its client")
        assert (await s.frame()).data["app"] == app_id   # and the client can read on


async def test_marathon_events_hear_the_same_stream(gateway, pool, tokens, created, uid) -> None:
    """/v2/events looks at an app again for each of its instance events: a task placed, then
    running, then failed past its health checks is reported as Marathon reports it, with no
    endpoint change in between."""
    app_id = f"evm-{uid}"
    mid = ids.to_marathon(app_id)
    params = [("event_type", t) for t in ("status_update_event", "unhealthy_instance_kill_event")]
    async with _client(gateway, tokens["viewer"]) as http, http.stream("GET", "/v2/events", params=params) as r:
        lines = r.aiter_lines()
        assert await asyncio.wait_for(anext(lines), 10) == ""   # attached (filtered out): subscribed

        async def data() -> dict[str, Any]:
            while not (line := await asyncio.wait_for(anext(lines), 10)).startswith("data: "):
                pass
            return json.loads(line.removeprefix("data: "))

        (iid,) = await _deployed(pool, created, uid, app_id, 1)
        staged = await data()
        await report(pool, [iid], "RUNNING")
        running = await data()
        await report(pool, [iid], "FAILED", reason="health check tcp http failed 3 times: refused")
        failed, killed = await data(), await data()
    assert [(e["taskId"], e["taskStatus"], e["appId"]) for e in (staged, running, failed)] == [
        (iid, "TASK_STAGING", mid), (iid, "TASK_RUNNING", mid), (iid, "TASK_FAILED", mid)]
    assert killed["eventType"] == "unhealthy_instance_kill_event" and killed["taskId"] == iid
