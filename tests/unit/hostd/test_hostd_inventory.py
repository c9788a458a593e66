"""hostd's inventory reply from what the engine lists and what the host holds besides (pure)."""
from __future__ import annotations

import pytest

from services.hostd import containers as ct
from services.hostd.inventory import Held, inventory_of


def container(instance: str, state: str, epoch: str | None = "2") -> ct.ContainerInfo:
    labels = {ct.LABEL_INSTANCE: instance, ct.LABEL_APP: "web", **({ct.LABEL_EPOCH: epoch} if epoch else {})}
    return ct.ContainerInfo(id=f"id-{instance}", name=instance, labels=labels, state=state)


@pytest.mark.parametrize(("found", "expected"), [
    pytest.param(container("web-1", "running"), ("web-1", "running", "198.18.0.5", 2), id="running-gets-hostd-ip"),
    pytest.param(container("web-1", "exited"), ("web-1", "exited", "", 2), id="exited-has-no-ip"),
    pytest.param(container("web-1", "running", epoch=None), ("web-1", "running", "198.18.0.5", 0),
                 id="no-epoch-label-is-0"),
    pytest.param(container("web-1", "running", epoch="x"), ("web-1", "running", "198.18.0.5", 0),
                 id="bad-epoch-label-is-0"),
])
def test_items(found: ct.ContainerInfo, expected: tuple[str, str, str, int]) -> None:
    inv = inventory_of("h1", [found], Held(ips={"web-1": "198.18.0.5"}))
    [it] = inv.items
    assert (it.instance, it.state, it.ip, it.epoch) == expected
    assert (it.container_id, it.app) == ("id-web-1", "web")


def test_held_lists_sorted() -> None:
    inv = inventory_of("h1", [], Held(volumes={"b", "a"}, leases=["z", "y"], interfaces=("nm2", "nm1")))
    assert (inv.host, inv.items, inv.volumes, inv.leases, inv.interfaces) == (
        "h1", [], ["a", "b"], ["y", "z"], ["nm1", "nm2"])
