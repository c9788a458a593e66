"""The crontab schedule grammar, one table run against both parsers: imagebuild's (which refuses a
bad line at build time) and noops-init's (which runs the jobs), so they cannot drift apart."""
from __future__ import annotations

import calendar
import subprocess
from pathlib import Path

import pytest

from imagebuild import cron, initbin


def at(stamp: str) -> int:
    """'2026-12-06 13:05' (UTC; a Sunday) → unix time."""
    return calendar.timegm(__import__("time").strptime(stamp, "%Y-%m-%d %H:%M"))


ROWS = [
    pytest.param("* * * * *", "2026-12-01 00:00", True, id="every-minute"),
    pytest.param("*/15 * * * *", "2026-12-01 10:45", True, id="step-hit"),
    pytest.param("*/15 * * * *", "2026-12-01 10:46", False, id="step-miss"),
    pytest.param("5/20 * * * *", "2026-12-01 10:45", True, id="start-step"),
    pytest.param("0 9-17 * * *", "2026-12-01 17:00", True, id="range-end-included"),
    pytest.param("0 9-17 * * *", "2026-12-01 18:00", False, id="range-outside"),
    pytest.param("0,30 * * * *", "2026-12-01 12:30", True, id="list"),
    pytest.param("0 0 1 * *", "2026-12-01 00:00", True, id="day-of-month"),
    pytest.param("0 0 * 11 *", "2026-12-01 00:00", False, id="month-miss"),
    pytest.param("0 0 * * 0", "2026-12-06 00:00", True, id="sunday-as-0"),
    pytest.param("0 0 * * 7", "2026-12-06 00:00", True, id="sunday-as-7"),
    pytest.param("0 0 * * 1-5", "2026-12-06 00:00", False, id="weekdays-not-sunday"),
    # Vixie cron: both day fields restricted → either one is enough.
    pytest.param("0 0 15 * 0", "2026-12-06 00:00", True, id="either-day-by-weekday"),
    pytest.param("0 0 6 * 1", "2026-12-06 00:00", True, id="either-day-by-date"),
    pytest.param("0 0 15 * 1", "2026-12-06 00:00", False, id="neither-day"),
    pytest.param("0 0 6 * *", "2026-12-06 00:00", True, id="dom-with-any-weekday"),
    pytest.param("1-59/2 * * * *", "2026-12-01 00:03", True, id="range-step"),
]

INVALID = ["60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *",
           "a * * * *", "* * * *", "1,,2 * * * *", "-1 * * * *", "*-5 * * * *"]


@pytest.fixture(scope="module")
def noops_init(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return initbin.write_init(tmp_path_factory.mktemp("init") / "noops-init")


def c_match(binary: Path, expr: str, t: int) -> str:
    return subprocess.run([str(binary), "--cron-match", expr, str(t)], capture_output=True, text=True,
                          timeout=10).stdout.strip()


@pytest.mark.parametrize(("expr", "stamp", "expected"), ROWS)
def test_schedule_matches_in_both_parsers(noops_init: Path, expr: str, stamp: str, expected: bool) -> None:
    assert cron.matches(cron.parse_schedule(expr), at(stamp)) is expected
    assert c_match(noops_init, expr, at(stamp)) == str(int(expected))


@pytest.mark.parametrize("expr", INVALID)
def test_invalid_schedule_refused_by_both(noops_init: Path, expr: str) -> None:
    with pytest.raises(cron.CronError):
        cron.parse_schedule(expr)
    assert c_match(noops_init, expr, 0) == "error"


def test_the_compiled_init_is_reproducible() -> None:
    assert initbin.compile_init() == initbin.compile_init()
