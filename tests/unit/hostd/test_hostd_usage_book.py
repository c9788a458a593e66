"""The usage book (services/hostd/usage.py), pure: CPU cores from the last two rounds, rounds
replacing the book, and a reply bounded to fit a NATS message."""
from __future__ import annotations

import pytest

from libs import messages
from services.hostd import initstats
from services.hostd.usage import UsageBook, advance, cpu_cores, reply


def stats(cpu_seconds: float, memory_bytes: int = 4096, ready: bool = True) -> initstats.InitStats:
    return initstats.parse(f"cpu_seconds {cpu_seconds}\nmemory_bytes {memory_bytes}\nready {int(ready)}\n")


def sample(cpu_seconds: float, at: float) -> messages.InstanceUsage:
    return messages.InstanceUsage(instance="web-1", app="web", cpu_cores=None, cpu_seconds=cpu_seconds,
                                  memory_bytes=1, ready=True, at=at)


@pytest.mark.parametrize(("before", "cpu_seconds", "at", "cores"), [
    pytest.param(None, 3.0, 10.0, None, id="first-scrape"),
    pytest.param(sample(1.0, 10.0), 3.0, 20.0, 0.2, id="two-seconds-in-ten"),
    pytest.param(sample(1.0, 10.0), 1.0, 20.0, 0.0, id="idle"),
    pytest.param(sample(1.0, 10.0), 21.0, 15.0, 4.0, id="four-cores"),
    pytest.param(sample(5.0, 10.0), 1.0, 20.0, None, id="count-went-back"),
    pytest.param(sample(1.0, 10.0), 2.0, 10.0, None, id="no-time-passed"),
    pytest.param(sample(1.0, 10.0), 2.0, 9.0, None, id="clock-went-back"),
])
def test_cpu_cores(before: messages.InstanceUsage | None, cpu_seconds: float, at: float, cores: float | None) -> None:
    got = cpu_cores(before, cpu_seconds, at)
    assert got == (None if cores is None else pytest.approx(cores))


def test_rounds_replace_the_book() -> None:
    book = UsageBook()
    book.record({"web-1": ("web", stats(1.0)), "web-2": ("web", stats(5.0, 2 << 20, ready=False))}, at=100.0)
    assert [(u.instance, u.cpu_cores, u.memory_bytes, u.ready, u.at) for u in book.latest.values()] == [
        ("web-1", None, 4096, True, 100.0), ("web-2", None, 2 << 20, False, 100.0)]
    first = book.latest
    book.record({"web-1": ("web", stats(1.5))}, at=110.0)   # web-2 did not answer this round
    assert list(book.latest) == ["web-1"]
    assert book.latest["web-1"].cpu_cores == pytest.approx(0.05)
    assert book.latest["web-1"].cpu_seconds == 1.5
    assert list(first) == ["web-1", "web-2"]   # the earlier mapping was not changed in place
    book.record({"web-1": ("web", stats(2.5)), "web-2": ("web", stats(6.0))}, at=120.0)
    assert book.latest["web-1"].cpu_cores == pytest.approx(0.1)
    assert book.latest["web-2"].cpu_cores is None   # back after a missed round: no rate yet


def test_no_round_no_usage() -> None:
    assert advance({"web-1": sample(1.0, 1.0)}, {}, at=2.0) == {}
    assert reply("h1", {}) == messages.Usage(host="h1", items=[], truncated=False)


def test_the_reply_is_bounded_and_fits_a_nats_message() -> None:
    # The largest ids and numbers there can be, one more instance than a reply holds.
    app = "a" * 63
    n = messages.USAGE_ITEMS_PER_MESSAGE + 1
    book = {f"{app}-{i:012x}": messages.InstanceUsage(
                instance=f"{app}-{i:012x}", app=app, cpu_cores=-1.2345678901234567e-300,
                cpu_seconds=-1.2345678901234567e+300, memory_bytes=-(2**63), ready=False, at=-1.2345678901234567e+300)
            for i in range(n)}
    got = reply("h" * 63, book)
    assert got.truncated and len(got.items) == messages.USAGE_ITEMS_PER_MESSAGE
    assert [u.instance for u in got.items] == sorted(book)[:-1]   # by instance id
    size = len(messages.encode(got))
    assert size < 512 * 1024, f"a full usage reply is {size} bytes"
    assert messages.decode(messages.encode(got), messages.Usage) == got
    small = reply("h1", {k: book[k] for k in sorted(book)[:3]})
    assert not small.truncated and len(small.items) == 3
