"""bench/fanout_latency.py's command line: rates are positive whole numbers and may repeat, each
run named by its place (a repeated rate once inserted the same app ids: UniqueViolationError)."""
from __future__ import annotations

import argparse

import pytest

from bench import fanout_latency


@pytest.mark.parametrize(("text", "rates"), [
    pytest.param("100,1000", [100, 1000], id="two"),
    pytest.param("1000,1000", [1000, 1000], id="repeated"),
    pytest.param("5", [5], id="one"),
])
def test_rates_are_read(text: str, rates: list[int]) -> None:
    assert fanout_latency.parse_rates(text) == rates


@pytest.mark.parametrize("text", [
    pytest.param("", id="empty"), pytest.param("1000,x", id="not-a-number"), pytest.param("0,10", id="zero"),
    pytest.param("-5", id="negative"), pytest.param("1.5", id="fraction"), pytest.param("100,", id="trailing-comma"),
])
def test_bad_rates_are_refused_with_a_message(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="positive whole reports per second"):
        fanout_latency.parse_rates(text)


def test_a_repeated_rate_runs_under_names_of_its_own() -> None:
    labels = [fanout_latency.run_label(k, r) for k, r in enumerate([1000, 1000, 100])]
    assert len(set(labels)) == 3
