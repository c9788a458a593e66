"""What hostd reports it holds (noops.inventory.<host>) and what it sweeps when the reconciler says
nothing owns it (noops.sweep.<host>): containers, volumes, leases, root-namespace macvlans.
Real NATS, Docker, netlink, dnsmasq and loop devices; the requests come as the reconciler's would."""
from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from devtools import simnet
from libs import messages, subjects
from services.hostd import containers as ct
from services.hostd.network import LINK_PREFIX
from tests.integration.hostd.hostd_harness import (  # noqa: F401  (fixtures)
    BASE_IMAGE, HostdUnderTest, docker, hostd, spec)
from tests.support.wait import eventually

SLEEP = ["sleep", "3600"]


async def inventory(h: HostdUnderTest) -> messages.Inventory:
    reply = await h.nc.request(subjects.inventory(h.host), b"", timeout=10)
    return messages.decode(reply.data, messages.Inventory)


async def sweep(h: HostdUnderTest, *items: messages.SweepItem, host: str = "") -> list[messages.SweepOutcome]:
    body = messages.encode(messages.Sweep(host=host or h.host, items=list(items)))
    reply = await h.nc.request(subjects.sweep(h.host), body, timeout=30)
    result = messages.decode(reply.data, messages.SweepResult)
    assert result.host == h.host
    return result.outcomes


def item(kind: str, instance: str = "", key: str = "") -> messages.SweepItem:
    return messages.SweepItem(kind=kind, instance=instance, key=key, reason="test")  # type: ignore[arg-type]


def swept(kind: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("noops_hostd_sweeps_total", {"kind": kind, "outcome": outcome}) or 0.0


def die_events(kind: str) -> float:
    return REGISTRY.get_sample_value("noops_hostd_die_events_total", {"kind": kind}) or 0.0


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def volume_image(h: HostdUnderTest, instance: str):  # type: ignore[no-untyped-def]
    return h.cfg.volume_dir / f"{h.cfg.cluster}-{h.host}" / f"{instance}.img"


def dhcp_macs(h: HostdUnderTest) -> set[str]:
    return {lease["mac"] for lease in simnet.leases(h.cfg.net)}


@pytest.fixture
def links() -> Iterator[list[str]]:
    """Names of links a test makes in the root namespace; deleted afterwards whatever happened."""
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def stray_macvlan(h: HostdUnderTest, links: list[str]) -> str:
    """A macvlan on the host's parent left in the root namespace, as a crash mid-attach leaves one."""
    name = LINK_PREFIX + uuid.uuid4().hex[:10]
    subprocess.run(["ip", "link", "add", name, "link", h.nic, "type", "macvlan"], check=True)
    links.append(name)
    return name


async def test_inventory_reports_epochs_volumes_leases_and_stray_interfaces(hostd: HostdUnderTest, links) -> None:
    await hostd.start()
    await hostd.place("db-1", epoch=3, container=spec(cmd=SLEEP, disk_mb=8))
    r = await hostd.report("db-1", "RUNNING")
    stray = stray_macvlan(hostd, links)
    inv = await inventory(hostd)
    [it] = inv.items
    assert (it.instance, it.container_id, it.state, it.epoch, it.ip) == ("db-1", r.container_id, "running", 3, r.ip)
    assert inv.volumes == ["db-1"] and inv.leases == ["db-1"]
    assert inv.interfaces == [stray]  # the container's own macvlan is its eth0, not in the root namespace


async def test_stray_interface_is_deleted_and_only_ours(hostd: HostdUnderTest, links) -> None:
    await hostd.start()
    stray = stray_macvlan(hostd, links)
    dummy = LINK_PREFIX + uuid.uuid4().hex[:10]   # our name, but not a macvlan on our parent
    subprocess.run(["ip", "link", "add", dummy, "type", "veth", "peer", "name", "vp" + dummy[2:]], check=True)
    links.append(dummy)
    before = swept("interface", "removed")
    out = await sweep(hostd, item("interface", key=stray), item("interface", key=dummy),
                      item("interface", key="lo"))
    assert [o.outcome for o in out] == ["removed", "refused", "refused"], out
    assert "not a noops macvlan" in out[1].detail and "not a noops interface name" in out[2].detail
    assert not link_exists(stray) and link_exists(dummy) and link_exists("lo")
    assert (await inventory(hostd)).interfaces == []
    [again] = await sweep(hostd, item("interface", key=stray))
    assert again.outcome == "absent"
    assert swept("interface", "removed") == before + 1


async def test_container_started_by_hand_is_swept_and_its_instance_ended(
        hostd: HostdUnderTest, docker) -> None:  # noqa: F811
    await hostd.start()
    labels = {**ct.owner_labels(hostd.cfg.cluster, hostd.host), ct.LABEL_INSTANCE: "orphan-1",
              ct.LABEL_APP: "web", ct.LABEL_EPOCH: "4"}
    c = await docker.containers.run({"Image": BASE_IMAGE, "Cmd": SLEEP, "Labels": labels,
                                     "HostConfig": {"NetworkMode": "none"}}, name=f"hand-{hostd.host}")
    inv = await eventually(lambda: inventory(hostd), what="inventory")
    assert [(i.instance, i.container_id, i.epoch) for i in inv.items] == [("orphan-1", c.id, 4)]
    before = swept("container", "removed")
    [out] = await sweep(hostd, item("container", "orphan-1", c.id))
    assert out.outcome == "removed", out
    assert await hostd.containers("orphan-1") == []
    assert swept("container", "removed") == before + 1
    again = await sweep(hostd, item("container", "orphan-1", c.id), item("container", "", c.id))
    assert [o.outcome for o in again] == ["absent", "absent"]
    # Tombstoned: a start for it arriving late is ignored, not a new container.
    assert json.loads((hostd.state_dir / "tombstones" / "orphan-1.json").read_text())["epoch"] == 4
    ended = REGISTRY.get_sample_value("noops_hostd_placements_total", {"action": "start", "outcome": "ended"}) or 0
    await hostd.place("orphan-1", epoch=4)
    await eventually(lambda: (REGISTRY.get_sample_value("noops_hostd_placements_total",
                                                        {"action": "start", "outcome": "ended"}) or 0) > ended,
                     timeout=10, what="the late start ignored")
    assert await hostd.containers("orphan-1") == [] and "orphan-1" not in [r.instance for r in hostd.reports]


async def test_a_placed_instance_survives_sweeps_that_do_not_name_its_container(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1", container=spec(disk_mb=8))
    r = await hostd.report("web-1", "RUNNING")
    out = await sweep(hostd,
                      item("container", "web-1", "0" * 64),                    # an older container's id
                      item("container", "web-1", ct.container_name(hostd.cfg.cluster, "web-1")),  # a name
                      item("container", "web-1", r.container_id[:12]),         # a prefix is not the id
                      item("container", "web-9", r.container_id),              # another instance's
                      item("volume", "web-1"), item("lease", "web-1"))
    assert [o.outcome for o in out] == ["absent", "absent", "absent", "refused", "refused", "refused"], out
    assert r.container_id[:12] in out[0].detail and "container" in out[4].detail
    [c] = await hostd.containers("web-1")
    assert c.id == r.container_id and (await c.show())["State"]["Running"]
    assert volume_image(hostd, "web-1").exists() and r.mac in dhcp_macs(hostd)
    assert set(hostd.states("web-1")) == {"STARTING", "RUNNING"}


async def test_container_removed_behind_hostds_back_leaves_a_volume_and_lease_that_sweeps_release(
        hostd: HostdUnderTest, docker) -> None:  # noqa: F811
    """A restarted hostd cleans these up at adoption (test_hostd_hostlike.py); a running one leaves
    them when the container is removed before hostd looks at its 'die' event: the container is
    gone, so hostd cannot tell this removal from its own (a stop) and does nothing."""
    await hostd.start()
    await hostd.place("db-1", container=spec(cmd=SLEEP, disk_mb=8))
    r = await hostd.report("db-1", "RUNNING")
    gone = die_events("gone")
    # Blocking on purpose: hostd shares this event loop, so it reads the 'die' event only after
    # the removal finished -- a busy hostd, deterministically.
    subprocess.run(["docker", "rm", "-f", r.container_id], check=True, capture_output=True)
    await eventually(lambda: die_events("gone") > gone, timeout=10, what="the die event handled")
    inv = await inventory(hostd)
    assert (inv.items, inv.volumes, inv.leases) == ([], ["db-1"], ["db-1"])
    assert r.mac in dhcp_macs(hostd) and (hostd.state_dir / "leases" / "db-1.json").exists()

    out = await sweep(hostd, item("volume", "db-1"), item("lease", "db-1"))
    assert [o.outcome for o in out] == ["removed", "removed"], out
    assert out[1].detail == f"released {r.ip}"
    assert not volume_image(hostd, "db-1").exists()
    assert not (hostd.state_dir / "leases" / "db-1.json").exists()
    await eventually(lambda: r.mac not in dhcp_macs(hostd), timeout=5, what="the lease released at the server")
    inv = await inventory(hostd)
    assert (inv.volumes, inv.leases) == ([], [])
    again = await sweep(hostd, item("volume", "db-1"), item("lease", "db-1"))
    assert [o.outcome for o in again] == ["absent", "absent"]


async def test_swept_container_keeps_a_kept_volume(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("db-1", container=spec(cmd=SLEEP, disk_mb=8, keep_volume=True))
    r = await hostd.report("db-1", "RUNNING")
    [out] = await sweep(hostd, item("container", key=r.container_id))  # the instance read from its labels
    assert (out.outcome, out.detail) == ("removed", "volume kept (keep_volume)")
    assert await hostd.containers("db-1") == [] and volume_image(hostd, "db-1").exists()
    await eventually(lambda: r.mac not in dhcp_macs(hostd), timeout=5, what="the lease released")
    assert set(hostd.states("db-1")) == {"STARTING", "RUNNING"}  # no report: the task log is already right
    [out] = await sweep(hostd, item("volume", "db-1"))
    assert out.outcome == "removed" and not volume_image(hostd, "db-1").exists()


async def test_malformed_or_misrouted_sweep_gets_an_empty_answer(hostd: HostdUnderTest) -> None:
    await hostd.start()
    for body in (b"{not json", messages.encode(messages.Sweep(host="elsewhere", items=[item("volume", "x")]))):
        reply = await hostd.nc.request(subjects.sweep(hostd.host), body, timeout=10)
        assert messages.decode(reply.data, messages.SweepResult).outcomes == []
    [out] = await sweep(hostd, item("volume", "../../etc"))  # hostd still answers; the id is refused
    assert out.outcome == "refused"
