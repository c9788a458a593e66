"""libs.service.paced_gap: how far apart a paced loop's rounds start."""
import pytest

from libs.service import paced_gap


@pytest.mark.parametrize("min_gap,cost,share,max_gap,want", [
    pytest.param(0.05, 0.001, 0.125, 1.0, 0.05, id="cheap-round-min-gap"),
    pytest.param(0.05, 0.04, 0.125, 1.0, 0.32, id="costly-round-spaced-by-its-cost"),
    pytest.param(0.05, 0.5, 0.125, 1.0, 1.0, id="capped-at-max-gap"),
    pytest.param(0.05, 0.5, 0.0, 1.0, 0.05, id="no-share-min-gap-only"),
    pytest.param(2.0, 0.5, 0.125, 1.0, 2.0, id="min-gap-above-cap-wins"),
])
def test_paced_gap(min_gap, cost, share, max_gap, want):
    assert paced_gap(min_gap, cost, share, max_gap) == pytest.approx(want)
