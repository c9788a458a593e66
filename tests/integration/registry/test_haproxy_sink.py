"""The HAProxy sink against a real HAProxy: servers come and go through the Runtime API without a
reload, a new app's frontend comes with a seamless reload (no in-flight request dropped), and a
HAProxy that was down is brought up to date when it returns."""
from __future__ import annotations

import asyncio
import collections
import socket

from devtools import sinks as sink_procs
from libs.messages import Endpoint
from services.registry.sinks import haproxy_config as hc
from services.registry.sinks.haproxy import SESSION_COMMANDS, runtime, runtime_batch
from services.registry.sinks.model import AppState, LbPort
from libs import retry
from services.registry.sinks.runner import SinkRunner
from tests.integration.registry.conftest import Backend, get
from tests.support.wait import eventually


def state(app: str, port: int, backends: list[Backend]) -> AppState:
    return AppState(app, tuple(Endpoint(instance=b.name, host="h1", ip="127.0.0.1", ports={"http": b.port})
                               for b in backends), {"http": LbPort("127.0.0.1", port)})


async def answers(port: int, n: int) -> collections.Counter:
    return collections.Counter([body for status, body in [await get(port) for _ in range(n)] if status == 200])


async def servers(paths) -> dict[int, dict[str, hc.Server]]:
    return hc.parse_servers_state(await runtime(paths.admin_socket, "show servers state"))


async def test_servers_follow_the_set_without_reload(make_sink, port_range, backends, haproxy):
    sink = make_sink(spare=2)
    a, b, c = [await Backend(f"web-{i}").start() for i in "abc"]
    backends += [a, b, c]
    lo = port_range[0]
    await sink.apply_full({"web": state("web", lo, [a, b])})
    reloads = sink.reloads
    assert set(await answers(lo, 6)) == {"web-a", "web-b"}

    await sink.update({"web": state("web", lo, [b, c])})
    got = await answers(lo, 6)
    assert set(got) == {"web-b", "web-c"}, got
    assert "web-a" not in (await servers(haproxy))[lo]
    # A second app lands on a spare frontend: still no reload.
    d = await Backend("api-d").start()
    backends.append(d)
    await sink.update({"api": state("api", lo + 1, [d])})
    assert set(await answers(lo + 1, 3)) == {"api-d"}
    assert sink.reloads == reloads
    # Applying the same state again changes nothing (idempotent).
    await sink.apply_full({"web": state("web", lo, [b, c]), "api": state("api", lo + 1, [d])})
    assert sink.reloads == reloads
    assert set((await servers(haproxy))[lo]) == {"web-b", "web-c"}


async def test_new_frontend_reload_drops_no_request(make_sink, port_range, backends):
    sink = make_sink(spare=0)
    lo = port_range[0]
    slow = await Backend("slow", delay_s=1.0).start()
    fast = await Backend("fast").start()
    backends += [slow, fast]
    await sink.apply_full({"slow": state("slow", lo, [slow]), "fast": state("fast", lo + 1, [fast])})
    before = sink.reloads
    in_flight = asyncio.create_task(get(lo))
    await eventually(lambda: slow.hits == 1, timeout=5, what="slow request in flight")
    stop = asyncio.Event()

    async def hammer() -> list[tuple[int, str]]:
        out = []
        while not stop.is_set() and len(out) < 2000:   # bounded
            out.append(await get(lo + 1))
        return out
    load = asyncio.create_task(hammer())
    new = await Backend("new").start()
    backends.append(new)
    await sink.update({"new": state("new", lo + 2, [new])})       # a frontend that did not exist
    assert sink.reloads == before + 1
    assert await answers(lo + 2, 2) == {"new": 2}
    stop.set()
    results = await load
    assert await in_flight == (200, "slow")
    assert results and all(r == (200, "fast") for r in results), collections.Counter(results)


def _refuses(path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(0.5)
            s.connect(str(path))
    except OSError:
        return True
    return False


async def test_haproxy_down_then_back_converges(make_sink, port_range, backends, haproxy, tmp_path):
    sink = make_sink(spare=2)
    # Applications finished (``idle`` turns true when a step takes its work, before it is done: a
    # stop of HAProxy during the first apply's reload held that step in its 10 s reload wait).
    applied: list[object] = []
    runner = SinkRunner(sink, backoff=retry.Policy(base_s=0.05, cap_s=0.2),
                        observers=(lambda _name, work, _at: applied.append(work),))
    task = asyncio.create_task(runner.run())
    try:
        lo = port_range[0]
        a, b = await Backend("a").start(), await Backend("b").start()
        backends += [a, b]
        runner.submit_full({"web": state("web", lo, [a])})
        await eventually(lambda: applied and runner.idle and runner.failures == 0, timeout=10, what="first apply")
        sink_procs.stop_haproxy(tmp_path)    # master and workers gone
        assert _refuses(haproxy.admin_socket)
        runner.submit({"web": state("web", lo, [b])})
        await eventually(lambda: runner.failures >= 2, timeout=10, what="sink failing while HAProxy is down")
        sink_procs.start_haproxy(tmp_path)   # starts from the file on disk: it still lists server a
        await eventually(lambda: runner.idle and runner.failures == 0, timeout=15, what="sink recovered")
        assert set((await servers(haproxy))[lo]) == {"b"}
        # Traffic follows: every answer from b (a check may still be taking b up, on a loaded
        # machine, right after the restart; the test failed once at load ~20 asking at once).
        await eventually(lambda: _all_from(lo, "b", 3), timeout=10, what="every answer from b")
    finally:
        task.cancel()


async def _all_from(port: int, name: str, n: int) -> bool:
    return await answers(port, n) == {name: n}


async def test_leaving_server_gets_no_new_request_while_draining(make_sink, port_range, backends, haproxy):
    sink = make_sink(spare=1, drain_timeout_s=60)
    lo = port_range[0]
    slow = await Backend("slow", delay_s=1.5).start()
    other = await Backend("other").start()
    backends += [slow, other]
    await sink.apply_full({"web": state("web", lo, [slow])})
    in_flight = asyncio.create_task(get(lo))
    await eventually(lambda: slow.hits == 1, timeout=5, what="request in flight")
    await sink.update({"web": state("web", lo, [other])})
    assert sink.draining == 1                      # not deleted under an open connection
    assert await answers(lo, 5) == {"other": 5}    # but no new request reaches it
    assert await in_flight == (200, "slow")        # and the open one completes
    await eventually(lambda: _drained(sink), timeout=10, what="drained server deleted")
    assert set((await servers(haproxy))[lo]) == {"other"}


async def _drained(sink) -> bool:
    await sink.update({})
    return sink.draining == 0


async def test_a_batch_larger_than_the_socket_buffers_is_answered_in_full(haproxy):
    # ~900 KB of commands and as much in answers: written before reading, HAProxy stopped reading
    # the commands while its answers filled the socket, until its CLI timeout cut the session
    # after 10 s (EPIPE), and a retry of the same batch met the same fate.
    n = 6 * SESSION_COMMANDS
    commands = [("show info" if k % 10 == 0 else "show env NOOPS_" + "X" * 150) for k in range(n)]
    answers = await asyncio.wait_for(runtime_batch(haproxy.admin_socket, commands), 30)
    assert len(answers) == n
    assert "Pid:" in answers[0] and "Variable not found" in answers[1] and "Pid:" in answers[-10]
