"""The fan-out against the real task log and a real HAProxy: LB ports are assigned once and kept,
a touched app reaches the sink, and a full resync brings a sink that missed changes up to date."""
from __future__ import annotations

import asyncio

from libs import db, messages
from libs.messages import Endpoint, EndpointsChanged
from services.registry.sinks.fanout import Fanout
from services.registry.sinks.haproxy import runtime
from services.registry.sinks import haproxy_config as hc
from libs import retry
from services.registry.sinks.runner import SinkRunner
from tests.integration.registry.conftest import Backend, get
from tests.support.wait import eventually


async def test_lb_ports_are_assigned_lowest_free_and_kept(pool, rows, uid, port_range):
    a, b = f"fa-{uid}", f"fb-{uid}"
    await rows.app(a, {"http": 8080, "admin": 9090})
    await rows.app(b, {"http": 8080})
    f = Fanout(pool, db.Queries("registry"), [], lb_bind_host="127.0.0.1", lb_port_range=port_range)
    first = await f.read([a, b])
    ports = sorted(lb.port for s in first.values() for lb in s.lb.values())
    assert ports == [port_range[0], port_range[0] + 1, port_range[0] + 2]
    again = await f.read(None)
    assert {k: again[k].lb for k in (a, b)} == {k: first[k].lb for k in (a, b)}


async def test_touched_app_reaches_haproxy_and_resync_repairs(pool, rows, uid, make_sink, port_range, backends,
                                                              haproxy):
    app = f"fh-{uid}"
    b1, b2 = await Backend("b1").start(), await Backend("b2").start()
    backends += [b1, b2]
    await rows.app(app, {"http": b1.port})
    await rows.instance(app, f"{app}-1", "127.0.0.1")
    sink = make_sink(spare=1)
    runner = SinkRunner(sink, backoff=retry.Policy(base_s=0.05, cap_s=0.2))
    fanout = Fanout(pool, db.Queries("registry"), [runner], lb_bind_host="127.0.0.1", lb_port_range=port_range,
                    resync_s=0.5)
    tasks = [asyncio.create_task(fanout.run()), asyncio.create_task(runner.run())]
    try:
        async def served() -> set[str]:
            return set(hc.parse_servers_state(await runtime(haproxy.admin_socket, "show servers state"))
                       .get(port_range[0], {}))
        await eventually(lambda: _eq(served(), {f"{app}-1"}), timeout=10, what="first instance served")
        assert await get(port_range[0]) == (200, "b1")
        await rows.set_state(f"{app}-1", "KILLED")
        fanout.touch([app])
        await eventually(lambda: _eq(served(), set()), timeout=10, what="killed instance removed")
        # A change nobody announced (no touch): the periodic full resync finds it.
        await rows.instance(app, f"{app}-2", "127.0.0.1")
        await eventually(lambda: _eq(served(), {f"{app}-2"}), timeout=10, what="resync applied")
    finally:
        for t in tasks:
            t.cancel()


async def _eq(aw, want) -> bool:
    return await aw == want


async def test_endpoints_event_triggers_a_read_only_when_it_differs(pool, rows, uid, port_range):
    class _Msg:   # the two fields the callback reads of a nats Msg
        subject = "noops.endpoints.x"

        def __init__(self, ev):
            self.data = messages.encode(ev)

    app = f"fe-{uid}"
    await rows.app(app, {"http": 8080})
    await rows.instance(app, f"{app}-1", "198.18.9.1")
    f = Fanout(pool, db.Queries("registry"), [], lb_bind_host="127.0.0.1", lb_port_range=port_range)
    await f.read([app])
    same = EndpointsChanged(app=app, seq=1, endpoints=[Endpoint(instance=f"{app}-1", host="h1", ip="198.18.9.1",
                                                                 ports={"http": 8080})])
    await f.on_endpoints(_Msg(same))
    assert not f._dirty                      # what we hold already: no read
    await f.on_endpoints(_Msg(EndpointsChanged(app=app, seq=2, endpoints=[])))
    assert f._dirty_instances == {app: {f"{app}-1"}}   # different: look again at what differs (task log)
    await f.on_endpoints(_Msg(EndpointsChanged(app=f"{app}x", seq=3, endpoints=[])))
    assert f._dirty == {f"{app}x"}                     # an app never read: read it whole


async def test_named_instances_are_read_again_and_merged_into_the_set_read_before(pool, rows, uid, port_range):
    app = f"fm-{uid}"
    await rows.app(app, {"http": 8080})
    for k in (1, 2, 3):
        await rows.instance(app, f"{app}-{k}", f"198.18.9.{k}")
    f = Fanout(pool, db.Queries("registry"), [], lb_bind_host="127.0.0.1", lb_port_range=port_range)
    first = (await f.read([app]))[app]
    assert [e.instance for e in first.endpoints] == [f"{app}-1", f"{app}-2", f"{app}-3"]
    await rows.set_state(f"{app}-1", "KILLED")
    await rows.instance(app, f"{app}-4", "198.18.9.4")
    await rows.instance(app, f"{app}-5", "198.18.9.5", state="STARTING")
    await rows.set_state(f"{app}-3", "KILLED")   # not named: the merge keeps what was read (until a read of it)
    got = (await f.read_changes((), {app: {f"{app}-1", f"{app}-4", f"{app}-5"}}))[app]
    assert [e.instance for e in got.endpoints] == [f"{app}-2", f"{app}-3", f"{app}-4"]
    assert got.lb == first.lb and got.read_at >= first.read_at
    # Named later (its report's batch), or found by the next whole read: the set converges.
    got = (await f.read_changes((), {app: {f"{app}-3"}}))[app]
    assert [e.instance for e in got.endpoints] == [f"{app}-2", f"{app}-4"]
    assert [e.instance for e in (await f.read(None))[app].endpoints] == [f"{app}-2", f"{app}-4"]


async def test_an_app_not_read_yet_or_a_new_port_name_is_read_whole(pool, rows, uid, port_range):
    app = f"fn-{uid}"
    await rows.app(app, {"http": 8080})
    await rows.instance(app, f"{app}-1", "198.18.9.1")
    await rows.instance(app, f"{app}-2", "198.18.9.2")
    f = Fanout(pool, db.Queries("registry"), [], lb_bind_host="127.0.0.1", lb_port_range=port_range)
    got = (await f.read_changes((), {app: {f"{app}-1"}}))[app]   # never read: whole, LB port assigned
    assert [e.instance for e in got.endpoints] == [f"{app}-1", f"{app}-2"] and set(got.lb) == {"http"}
    # Version 2 brings a port name of its own; its first instance serving gets it an LB port.
    spec = '{"ports": [{"name": "http", "container_port": 8080}, {"name": "admin", "container_port": 9090}]}'
    await pool.execute("INSERT INTO app_versions (app, version, spec) VALUES ($1, 2, $2::jsonb)", app, spec)
    await pool.execute("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, ip) "
                       "VALUES ($1, $2, 2, 'h1', 1, 0.1, 32, 'RUNNING', '198.18.9.3')", f"{app}-3", app)
    got = (await f.read_changes((), {app: {f"{app}-3"}}))[app]
    assert [e.instance for e in got.endpoints] == [f"{app}-1", f"{app}-2", f"{app}-3"]
    assert set(got.lb) == {"http", "admin"}
