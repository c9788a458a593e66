import pytest

from libs.messages import Inventory, InventoryItem
from services.reconciler.diff import Placed, diff


def inv(host, *items):
    return Inventory(host=host, items=[InventoryItem(instance=i, app="web", container_id=c, state=s)
                                       for i, c, s in items])


@pytest.mark.parametrize("placed,inventories,want", [
    pytest.param([Placed("a", "h1", "RUNNING", "c1")], {"h1": inv("h1", ("a", "c1", "running"))},
                 {}, id="agree"),
    pytest.param([Placed("a", "h1", "RUNNING", "c1")], {"h1": inv("h1")}, {"missing": 1}, id="missing"),
    pytest.param([Placed("a", "h1", "RUNNING", "c1")], {"h1": inv("h1", ("a", "c1", "exited"))},
                 {"missing": 1}, id="exited"),
    pytest.param([], {"h1": inv("h1", ("z", "c9", "running"))}, {"unexpected": 1}, id="unexpected"),
    pytest.param([Placed("a", "h1", "RUNNING", "c1")], {"h1": inv("h1", ("a", "c2", "running"))},
                 {"container_mismatch": 1}, id="other-container"),
    pytest.param([Placed("a", "h1", "RUNNING", "c1")], {"h1": None}, {"unreachable": 1}, id="unreachable"),
    pytest.param([Placed("a", "h1", "PENDING", "")], {"h1": inv("h1")}, {}, id="pending-not-yet-there"),
    pytest.param([Placed("a", "h2", "RUNNING", "c1")], {"h1": inv("h1")}, {}, id="other-host-not-judged"),
])
def test_diff(placed, inventories, want):
    counts = {k: v for k, v in diff(placed, inventories).counts.items() if v}
    assert counts == want
