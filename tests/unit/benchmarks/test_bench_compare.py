"""bench/compare.py's pure parts: its sections of bench/RESULTS.md are replaced, the rest kept;
the other benchmarks' outputs are read into their figures."""
from __future__ import annotations

import pytest

from bench import compare, compare_others


@pytest.mark.parametrize(("old", "new"), [
    pytest.param("", "<b>\nX\n<e>\n", id="empty-file"),
    pytest.param("# A\n", "# A\n\n<b>\nX\n<e>\n", id="appended"),
    pytest.param("# A\n\n<b>\nold\n<e>\n\n# B\n", "# A\n\n<b>\nX\n<e>\n\n# B\n", id="replaced-in-the-middle"),
    pytest.param("# A\n\n<b>\nold\n<e>\n", "# A\n\n<b>\nX\n<e>\n", id="replaced-at-the-end"),
])
def test_only_its_own_section_is_replaced(old: str, new: str) -> None:
    assert compare.replace_section(old, "<b>", "<e>", "<b>\nX\n<e>\n") == new


def test_a_run_without_all_keeps_the_other_benchmarks_table(tmp_path) -> None:
    out = tmp_path / "RESULTS.md"
    first = f"{compare.BEGIN}\nmain 1\n{compare.END}\n"
    others = f"{compare.ALL_BEGIN}\nothers 1\n{compare.ALL_END}\n"
    out.write_text("# head\n")
    compare.write(out, first, others)
    compare.write(out, first.replace("1", "2"), None)
    text = out.read_text()
    assert "main 2" in text and "main 1" not in text and "others 1" in text and text.startswith("# head\n")


def test_figures_read_from_outputs() -> None:
    core = ("{'strategy': 'binpack', 'placed': 10, 'unplaced': 0, 'seconds': 1.0, 'placements_per_s': 130000, "
            "'hosts_used': 51079, 'lower_bound_hosts': 51033, 'cpu_util_of_used': 0.9}\n"
            "{'strategy': 'spread', 'placed': 10, 'unplaced': 0, 'seconds': 1.0, 'placements_per_s': 6700, "
            "'hosts_used': 9, 'lower_bound_hosts': 5, 'cpu_util_of_used': 0.5}\n{'peak_rss_mb': 812}\n")
    assert compare_others.placer_core(core) == ("binpack 130,000/s, 51,079 hosts used vs lower bound 51,033; "
                                                "spread 6,700/s; peak RSS 812 MB")
    assert compare_others.reconcile_core('{\n "round_s_median": 0.41,\n "round_s_best": 0.4,\n'
                                         ' "core_peak_mib": 120.5\n}\n') == \
        "one comparison 0.41 s (best 0.4), core peak 120.5 MiB"
    fan = '{"rate": 1000, "achieved_rate": 999.0, "all_p50_ms": 3.1, "all_p99_ms": 9.9}\n'
    assert compare_others.fanout(fan) == "1000/s (achieved 999.0): all sinks p50 3.1 ms, p99 9.9 ms"
    floor = ('{"instances": 100000, "all_placed_s": 6.3, "all_recorded_s": 6.64, "cpu_s": {"nats": 3.51}, '
             '"cpu_sum": 12.87}\n')
    assert compare_others.floor_e2e(floor) == "all recorded after 6.64 s; CPU s {'nats': 3.51} (sum 12.87)"
