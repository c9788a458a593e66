"""The sinks' read-back in pages: the registry pages one snapshot, the reconciler merges the pages
back into the views it was read as, whatever the page size."""
from __future__ import annotations

import pytest

from libs.messages import SinkView
from services.reconciler.views import merge
from services.registry.sinkwatch import flatten, page

VIEWS = [
    SinkView(sink="haproxy", ok=True, groups={"20001": [f"web-{k:012x} 198.18.0.{k}:8080" for k in range(1, 40)],
                                              "20002": [], "20003": ["db-000000000001 198.18.1.1:5432"]}),
    SinkView(sink="ipvs", ok=False, error="netlink: no such file"),
    SinkView(sink="nft", ok=True, groups={"web": [f"198.18.0.{k}" for k in range(1, 40)], "old": []}),
    SinkView(sink="empty", ok=True),
]


def walk(views, max_bytes):
    entries, offset, out, pages = flatten(views), 0, {}, 0
    while True:
        got, offset = page(views, entries, offset, max_bytes)
        merge(out, got)
        pages += 1
        if not offset:
            return out, pages


@pytest.mark.parametrize("max_bytes", [1, 50, 300, 1000, 10**6], ids=lambda b: f"{b}B")
def test_pages_merge_back_into_the_views(max_bytes):
    got, pages = walk(VIEWS, max_bytes)
    assert {v.sink: v for v in VIEWS} == got
    assert pages == 1 if max_bytes == 10**6 else pages > 1


def test_every_page_fits_and_advances():
    entries = flatten(VIEWS)
    offset, seen = 0, 0
    while True:
        got, nxt = page(VIEWS, entries, offset, 200)
        text = sum(len(g) + len(m) + 8 for v in got for g, ms in v.groups.items() for m in (ms or [""]))
        assert text <= 200 or nxt == offset + 1
        seen += 1
        if not nxt:
            break
        assert nxt > offset
        offset = nxt
    assert seen > 5
