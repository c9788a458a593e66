"""hostd against the real Docker engine and NATS: placements in, IpReports out."""
from __future__ import annotations

import ipaddress
import os

import httpx
from prometheus_client import REGISTRY

from libs import messages, subjects
from tests.integration.hostd.hostd_harness import (  # noqa: F401  (fixtures)
    HostdUnderTest, docker, hostd, spec)
from tests.support.wait import eventually

BRIDGE = ipaddress.ip_network("198.18.0.0/15")  # the container ranges (see devtools/simnet.py)


def _harmless_deaths() -> float:
    """Die events hostd recognised as no failure (its own stops), from /metrics' registry."""
    return sum(REGISTRY.get_sample_value("noops_hostd_die_events_total", {"kind": kind}) or 0.0
               for kind in ("gone", "on_purpose"))


async def _http_ok(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as client:
            r = await client.get(url)
        return r.status_code == 200 and "noops" in r.text
    except httpx.HTTPError:
        return False


async def test_start_reports_starting_then_running_and_serves_http(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1", container=spec(cpus=0.5, mem_mb=64, labels={"team": "a"}, env={"GREETING": "hi"}))

    running = await hostd.report("web-1", "RUNNING")
    assert hostd.states("web-1")[:2] == ["STARTING", "RUNNING"]
    assert running.container_id and running.host == hostd.host and running.epoch == 1 and running.app == "web"
    assert ipaddress.ip_address(running.ip) in BRIDGE

    [container] = await hostd.containers("web-1")
    info = await container.show()
    assert info["Name"] == f"/noops-{hostd.cfg.cluster}-web-1"
    assert info["Config"]["Labels"] == {
        "org.noops.base": "1",  # from the image
        "team": "a", "noops.cluster": hostd.cfg.cluster, "noops.host": hostd.host, "noops.instance": "web-1",
        "noops.app": "web", "noops.version": "1", "noops.epoch": "1"}
    assert "GREETING=hi" in info["Config"]["Env"]
    assert info["HostConfig"]["NanoCpus"] == 500_000_000
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "no"

    assert await eventually(lambda: _http_ok(f"http://{running.ip}:8080/"), timeout=15, what="httpd answering")


async def test_stop_reports_killed_and_removes_the_container(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1")
    running = await hostd.report("web-1", "RUNNING")
    die_before = _harmless_deaths()

    await hostd.place("web-1", action="stop", epoch=2)
    killed = await hostd.report("web-1", "KILLED")
    assert killed.container_id == running.container_id and killed.epoch == 2
    assert await hostd.containers("web-1") == []
    # The stop's own 'die' event is seen and recognised as no failure.
    await eventually(lambda: _harmless_deaths() > die_before, what="the die event of the stopped container")
    assert "FAILED" not in hostd.states("web-1")


async def test_stop_without_container_is_idempotent(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("ghost-1", action="stop", epoch=3)
    killed = await hostd.report("ghost-1", "KILLED")
    assert killed.container_id == "" and killed.epoch == 3


async def test_missing_image_reports_failed_with_reason(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("nope-1", container=spec(image="noops/nope:latest"))
    failed = await hostd.report("nope-1", "FAILED")
    assert failed.reason == f"image noops/nope:latest not found on host {hostd.host}"
    assert await hostd.containers("nope-1") == []


async def test_container_exiting_at_once_reports_exit_code(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("false-1", container=spec(cmd=["false"]))
    failed = await hostd.report("false-1", "FAILED")
    assert failed.reason == "exited with code 1"
    assert failed.container_id


async def test_container_killed_outside_hostd_reports_failed(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1")
    running = await hostd.report("web-1", "RUNNING")
    [container] = await hostd.containers("web-1")
    await container.kill()  # SIGKILL: 128 + 9
    failed = await hostd.report("web-1", "FAILED")
    assert failed.reason == "exited with code 137"
    assert failed.container_id == running.container_id and failed.epoch == 1


async def test_start_twice_adopts_instead_of_duplicating(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1")
    first = await hostd.report("web-1", "RUNNING")
    seen = len(hostd.reports)
    await hostd.place("web-1", epoch=2)
    again = await hostd.report("web-1", "RUNNING", after=seen)
    assert again.container_id == first.container_id and again.epoch == 2
    assert len(await hostd.containers("web-1")) == 1


async def test_start_after_a_failed_start_is_ignored(hostd: HostdUnderTest) -> None:
    """FAILED ends the instance: the placer replaces it under a new id, so a start for the same id
    (redelivered, or a copy) is old news and must not bring a second container to life."""
    await hostd.start()
    await hostd.place("flaky-1", container=spec(cmd=["false"]))
    await hostd.report("flaky-1", "FAILED")
    [exited] = await hostd.containers("flaky-1")
    ignored = _ignored("ended")
    await hostd.place("flaky-1", epoch=2)
    await eventually(lambda: _ignored("ended") > ignored, what="the start counted as ignored")
    assert [c.id for c in await hostd.containers("flaky-1")] == [exited.id]
    # (FAILED may come twice: from the start and from the die event, the same fact, one message id.)
    assert set(hostd.states("flaky-1")) == {"STARTING", "FAILED"} and hostd.states("flaky-1").count("STARTING") == 1


def _ignored(outcome: str) -> float:
    return REGISTRY.get_sample_value("noops_hostd_placements_total", {"action": "start", "outcome": outcome}) or 0.0


async def _start_then_stop(hostd: HostdUnderTest, instance: str) -> None:
    """Start and stop ``instance`` with the same epoch, as the placer does."""
    await hostd.place(instance)
    await hostd.report(instance, "RUNNING")
    await hostd.place(instance, action="stop")
    await hostd.report(instance, "KILLED")
    assert await hostd.containers(instance) == []


async def _stale_start_creates_nothing(hostd: HostdUnderTest, instance: str) -> None:
    """Publish the start again (same id, same epoch): counted as ignored, no container ever again."""
    ignored, seen = _ignored("ended"), len(hostd.reports)
    await hostd.place(instance)
    await eventually(lambda: _ignored("ended") > ignored, what="the stale start counted as ignored")
    await hostd.never(lambda: hostd.containers(instance), for_s=3.0, what=f"a container for {instance}")
    assert [r.state for r in hostd.reports[seen:] if r.instance == instance] == []


async def test_start_after_its_stop_is_ignored(hostd: HostdUnderTest) -> None:
    """A start redelivered (nak, ack timeout) or reordered after its stop: the stop wins."""
    await hostd.start()
    await _start_then_stop(hostd, "web-1")
    await _stale_start_creates_nothing(hostd, "web-1")


async def test_start_after_its_stop_is_ignored_across_a_restart(hostd: HostdUnderTest) -> None:
    """The tombstone is on disk: a restarted hostd, with no memory of epochs, still ignores the start."""
    await hostd.start()
    await _start_then_stop(hostd, "web-1")
    await hostd.stop()
    assert (hostd.state_dir / "tombstones" / "web-1.json").exists()
    await hostd.start()
    await _stale_start_creates_nothing(hostd, "web-1")


async def test_stale_placement_is_ignored(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1", epoch=5)
    await hostd.report("web-1", "RUNNING")
    await hostd.place("web-1", action="stop", epoch=4)   # older than what was acted on
    await hostd.place("web-1", action="stop", epoch=6)   # the marker: handled after the stale one
    await hostd.report("web-1", "KILLED")
    assert [r.epoch for r in hostd.reports if r.state == "KILLED"] == [6]


async def test_one_message_carries_several_placements(hostd: HostdUnderTest) -> None:
    """The placer sends a host its placements of one commit in one message: all are carried out,
    and the message is acked once (nothing left pending or redelivered)."""
    await hostd.start()
    items = [messages.Placement(instance=f"web-{k}", app="web", version=1, host=hostd.host, epoch=1,
                                action="start", spec=spec()) for k in (1, 2, 3)]
    js = hostd.nc.jetstream()
    await js.publish(subjects.place(hostd.host), messages.encode(messages.Placements(host=hostd.host, items=items)))
    for k in (1, 2, 3):
        await hostd.report(f"web-{k}", "RUNNING")
    consumer = subjects.hostd_consumer(hostd.host)

    async def settled() -> bool:
        info = await js.consumer_info(consumer.stream.name, consumer.durable)
        return info.num_ack_pending == 0 and info.num_pending == 0 and info.num_redelivered == 0
    await eventually(settled, what="the message acked once")


async def test_malformed_placement_is_terminated_and_does_not_block(hostd: HostdUnderTest, caplog) -> None:
    await hostd.start()
    js = hostd.nc.jetstream()
    await js.publish(subjects.place(hostd.host), b'{"not": "a placement"}')
    await hostd.place("web-1")
    await hostd.report("web-1", "RUNNING")
    assert any(r.getMessage() == "malformed placement dropped" for r in caplog.records)
    consumer = subjects.hostd_consumer(hostd.host)

    async def settled() -> bool:
        info = await js.consumer_info(consumer.stream.name, consumer.durable)
        return info.num_ack_pending == 0 and info.num_pending == 0 and info.num_redelivered == 0
    await eventually(settled, what="both placements settled, none redelivered")


async def test_restarted_hostd_adopts_and_re_reports(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1")
    first = await hostd.report("web-1", "RUNNING")
    await hostd.stop()
    [survivor] = await hostd.containers("web-1")
    assert (await survivor.show())["State"]["Running"], "containers outlive hostd"

    seen = len(hostd.reports)
    await hostd.start()
    again = await hostd.report("web-1", "RUNNING", after=seen)   # the adoption announcement
    assert (again.container_id, again.ip, again.epoch) == (first.container_id, first.ip, 1)

    seen = len(hostd.reports)
    await hostd.place("web-1", epoch=2)                             # a redelivered / repeated start
    assert (await hostd.report("web-1", "RUNNING", after=seen)).container_id == first.container_id
    assert len(await hostd.containers("web-1")) == 1


async def test_inventory_lists_this_hosts_containers(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1")
    await hostd.place("false-1", container=spec(cmd=["false"]))
    running = await hostd.report("web-1", "RUNNING")
    failed = await hostd.report("false-1", "FAILED")

    reply = await hostd.nc.request(subjects.inventory(hostd.host), b"", timeout=5)
    inventory = messages.decode(reply.data, messages.Inventory)
    assert inventory.host == hostd.host
    items = {i.instance: i for i in inventory.items}
    assert items.keys() == {"web-1", "false-1"}
    assert items["web-1"] == messages.InventoryItem(instance="web-1", app="web", container_id=running.container_id,
                                                    state="running", ip=running.ip, epoch=1)
    assert (items["false-1"].container_id, items["false-1"].state) == (failed.container_id, "exited")


async def test_heartbeat_carries_offer_labels_and_instance_count(hostd: HostdUnderTest) -> None:
    await hostd.start(NOOPS_HOST_CPUS="2", NOOPS_HOST_MEM_MB="4096", NOOPS_HOST_LABELS="rack=r1,zone=z1")
    await hostd.place("web-1")
    await hostd.report("web-1", "RUNNING")
    beat = await eventually(lambda: next((b for b in reversed(hostd.heartbeats) if b.instances == 1), None),
                            what="a heartbeat counting the instance")
    assert (beat.host, beat.cpus, beat.mem_mb) == (hostd.host, 2.0, 4096)
    assert beat.labels == {"rack": "r1", "zone": "z1", "hostname": hostd.host}
    assert beat.load1 >= 0 and beat.at > 0


async def test_heartbeat_offers_the_whole_machine_by_default(hostd: HostdUnderTest) -> None:
    await hostd.start()
    beat = await eventually(lambda: hostd.heartbeats[-1] if hostd.heartbeats else None, what="a heartbeat")
    assert beat.cpus == float(os.cpu_count() or 1)
    assert beat.mem_mb > 0 and beat.instances == 0


async def test_waits_for_docker_with_a_clear_log_line(hostd: HostdUnderTest, caplog) -> None:
    await hostd.start(wait_ready=False, NOOPS_DOCKER_URL="unix:///nonexistent/docker.sock")
    await eventually(lambda: any(r.getMessage() == "waiting for Docker" for r in caplog.records),
                     what="the 'waiting for Docker' log line")
    assert not await hostd.ready()
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("noops.hostd"))
    await hostd.stop()
