"""Pure helpers of hostd: host offer, memory parsing, retry delays, event keys, report ids, settings."""
from __future__ import annotations

import asyncio

import msgspec
import pytest

from libs import messages
from libs.settings import SettingsError
from services.hostd import agent, events, heartbeat, keyed_locks, reports
from services.hostd.main import load_settings
from services.hostd.runtime import RuntimeUnavailable
from tests.support.wait import eventually

MEMINFO = "MemTotal:       16318480 kB\nMemFree:         1021228 kB\nMemAvailable:    9000000 kB\n"


@pytest.mark.parametrize(("text", "mb"), [
    pytest.param(MEMINFO, 15936, id="proc-meminfo"),
    pytest.param("MemTotal: 2048 MB\n", 2048, id="mb-unit"),
    pytest.param("MemFree: 1 kB\n", 0, id="no-memtotal"),
    pytest.param("", 0, id="empty"),
])
def test_mem_total_mb(text: str, mb: int) -> None:
    assert heartbeat.mem_total_mb(text) == mb


def _settings(**env: str):
    return load_settings({"NOOPS_HOST_ID": "h1", **env})


@pytest.mark.parametrize(("env", "cpu_count", "cpus", "mem_mb"), [
    pytest.param({}, 8, 8.0, 15936, id="zero-means-whole-machine"),
    pytest.param({"NOOPS_HOST_CPUS": "2", "NOOPS_HOST_MEM_MB": "4096"}, 8, 2.0, 4096, id="settings-win"),
    pytest.param({}, None, 1.0, 15936, id="unknown-cpu-count"),
])
def test_offer(env: dict[str, str], cpu_count: int | None, cpus: float, mem_mb: int) -> None:
    o = heartbeat.offer(_settings(**env), cpu_count=cpu_count, meminfo=MEMINFO)
    assert (o.cpus, o.mem_mb) == (cpus, mem_mb)


@pytest.mark.parametrize(("text", "labels"), [
    pytest.param("", {"hostname": "h1"}, id="none"),
    pytest.param("rack=r1, zone=z1", {"rack": "r1", "zone": "z1", "hostname": "h1"}, id="two"),
    pytest.param("hostname=other", {"hostname": "h1"}, id="hostname-is-the-host-id"),
])
def test_host_labels(text: str, labels: dict[str, str]) -> None:
    assert heartbeat.host_labels(text, "h1") == labels


@pytest.mark.parametrize(("env", "message"), [
    pytest.param({"NOOPS_HOST_ID": "Bad_Host"}, "NOOPS_HOST_ID='Bad_Host' is not a valid host id", id="host-id"),
    pytest.param({"NOOPS_HOST_ID": "h1", "NOOPS_HOST_LABELS": "rack"}, "is not key=value", id="labels"),
    pytest.param({"NOOPS_HOST_ID": "h1", "NOOPS_HEARTBEAT_INTERVAL_S": "0"}, "must be > 0", id="interval"),
    pytest.param({"NOOPS_HOST_ID": "h1", "NOOPS_HOSTD_CONCURRENCY": "0"}, "CONCURRENCY must be >= 1", id="concurrency"),
])
def test_load_settings_refuses(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


@pytest.mark.parametrize(("delivered", "ceiling"), [
    pytest.param(1, 0.2, id="first"),
    pytest.param(2, 0.4, id="second"),
    pytest.param(4, 1.6, id="fourth"),
    pytest.param(50, 10.0, id="capped"),
    pytest.param(0, 0.2, id="unknown"),
])
def test_retry_delay_is_the_policys_jittered_backoff(delivered: int, ceiling: float) -> None:
    delays = [agent.retry_delay(delivered) for _ in range(200)]
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling / 2   # full jitter spreads over the whole range


@pytest.mark.parametrize(("event", "key"), [
    pytest.param({"Actor": {"ID": "c1", "Attributes": {"noops.instance": "web-1", "exitCode": "1"}}},
                 ("web-1", "c1"), id="die"),
    pytest.param({"id": "c1", "Actor": {"Attributes": {"noops.instance": "web-1"}}}, ("web-1", "c1"),
                 id="old-style-id"),
    pytest.param({"Actor": {"ID": "c1", "Attributes": {}}}, None, id="no-instance-label"),
    pytest.param({}, None, id="empty"),
])
def test_die_key(event: dict[str, object], key: tuple[str, str] | None) -> None:
    assert events.die_key(event) == key


def test_event_time_prefers_nanoseconds() -> None:
    assert events.event_time({"timeNano": 1_700_000_000_500_000_000}, 1.0) == 1_700_000_000.5
    assert events.event_time({}, 42.0) == 42.0


@pytest.mark.parametrize(("report", "msg_id"), [
    pytest.param(dict(state="RUNNING", container_id="abc"), "report:web-1:3:RUNNING:abc", id="running"),
    pytest.param(dict(state="KILLED"), "report:web-1:3:KILLED:", id="killed-without-container"),
    pytest.param(dict(state="RUNNING", container_id="abc", lease_expires=1700000123.7),
                 "report:web-1:3:RUNNING:abc:1700000123", id="renewed-lease-is-a-new-fact"),
])
def test_report_msg_id(report: dict[str, str], msg_id: str) -> None:
    r = messages.IpReport(instance="web-1", app="web", host="h1", epoch=3, **report)  # type: ignore[arg-type]
    assert reports.msg_id(r) == msg_id
    # The time of the report is not part of its identity: a repeat is a duplicate.
    assert reports.msg_id(msgspec.structs.replace(r, at=99.0)) == msg_id


def test_health_news_ids_differ_by_time() -> None:
    # The same verdict can come back later (healthy, unhealthy, healthy): each is a new fact.
    r = messages.IpReport(instance="web-1", app="web", host="h1", epoch=3, state="RUNNING", container_id="c1",
                          healthy=True, health="http /: status 200", at=1.5)
    later = msgspec.structs.replace(r, at=9.0)
    assert reports.msg_id(r) == "report:web-1:3:RUNNING:c1:health:true:1500"
    assert reports.msg_id(later) != reports.msg_id(r)


async def test_keyed_locks_serialise_one_key_and_forget_it_after() -> None:
    locks = keyed_locks.KeyedLocks()
    order: list[str] = []
    gate = asyncio.Event()

    async def first() -> None:
        async with locks.hold("a"):
            order.append("first-in")
            await gate.wait()
            order.append("first-out")

    async def second() -> None:
        async with locks.hold("a"):
            order.append("second")

    async def other() -> None:
        async with locks.hold("b"):
            order.append("other")

    t1 = asyncio.create_task(first())
    await eventually(lambda: order == ["first-in"], what="first holds a")
    t2, t3 = asyncio.create_task(second()), asyncio.create_task(other())
    await eventually(lambda: "other" in order, what="b taken while a is held")
    assert order == ["first-in", "other"]  # b is not blocked by a, second waits for a
    gate.set()
    await asyncio.gather(t1, t2, t3)
    assert order == ["first-in", "other", "first-out", "second"]
    assert locks._locks == {} and dict(locks._users) == {}


class ScriptedEvents:
    """A runtime whose event stream breaks once, then delivers one death and stays open."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def container_events(self, labels: dict[str, str], since: float):
        self.calls.append(since)
        if len(self.calls) == 1:
            raise RuntimeUnavailable("engine restarting")
        yield {"Actor": {"ID": "c1", "Attributes": {"noops.instance": "web-1"}}, "timeNano": 5_000_000_000}
        await asyncio.Event().wait()


class RecordingAgent:
    owner = {"noops.cluster": "c1", "noops.host": "h1"}

    def __init__(self) -> None:
        self.deaths: list[tuple[str, str]] = []

    async def on_die(self, instance: str, container_id: str) -> None:
        self.deaths.append((instance, container_id))


async def test_event_watch_reopens_a_broken_stream_from_where_it_was() -> None:
    runtime, recorder = ScriptedEvents(), RecordingAgent()
    task = asyncio.create_task(events.watch_deaths(runtime, recorder, since=1.0, retry_max_s=0.1))  # type: ignore[arg-type]
    try:
        await eventually(lambda: recorder.deaths, timeout=5, what="the death after the reconnect")
        assert recorder.deaths == [("web-1", "c1")]
        assert runtime.calls == [1.0, 1.0]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
