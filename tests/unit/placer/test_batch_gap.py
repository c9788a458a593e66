"""How soon the placer's worker starts its next batch: at once while work moves, paced by the
cost of batches that placed and stopped nothing (bookkeeping looks), never beyond a second."""
from __future__ import annotations

import pytest

from services.placer.commit import BatchResult
from services.placer.main import MIN_BATCH_GAP_S, QUIET_MAX_GAP_S, batch_gap


@pytest.mark.parametrize(("res", "cost_s", "share", "gap_s"), [
    pytest.param(BatchResult(placed=3), 0.8, 0.25, MIN_BATCH_GAP_S, id="placed: at once"),
    pytest.param(BatchResult(stopped=1), 0.8, 0.25, MIN_BATCH_GAP_S, id="stopped: at once"),
    pytest.param(BatchResult(again={"web"}), 0.8, 0.25, MIN_BATCH_GAP_S, id="rolled back: at once"),
    pytest.param(BatchResult(), 0.1, 0.25, 0.4, id="quiet: cost / share"),
    pytest.param(BatchResult(), 0.001, 0.25, MIN_BATCH_GAP_S, id="cheap quiet: the floor"),
    pytest.param(BatchResult(), 0.6, 0.25, QUIET_MAX_GAP_S, id="dear quiet: at most a second"),
    pytest.param(BatchResult(), 0.1, 1.0, 0.1, id="share 1: just its own cost"),
])
def test_batch_gap(res: BatchResult, cost_s: float, share: float, gap_s: float) -> None:
    assert batch_gap(res, cost_s, share) == pytest.approx(gap_s)
