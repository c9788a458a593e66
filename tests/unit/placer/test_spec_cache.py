"""The committer's cache of parsed spec texts: one parse per distinct text, the same answers as
parsing afresh, invalid specs remembered with their reason, and a bounded size."""
from __future__ import annotations

import json

from services.placer.specs import SpecCache, container_spec, launch_key
from libs.appspec import AppSpec

WEB = json.dumps({"id": "web", "image": "noops/base:latest", "instances": 3, "resources": {"cpus": 0.5, "mem_mb": 256}})


def test_a_text_is_parsed_once_and_answers_as_a_fresh_parse() -> None:
    cache = SpecCache()
    first, again = cache.get(WEB), cache.get(WEB)
    assert first is again
    fresh = AppSpec.model_validate(json.loads(WEB))
    assert first.spec == fresh and first.error == ""
    assert first.launch_key(2) == launch_key(json.loads(WEB), 2) != first.launch_key(3)
    assert first.container() == container_spec(fresh) and first.container() is first.container()


def test_an_invalid_spec_is_remembered_with_its_reason() -> None:
    got = SpecCache().get(json.dumps({"id": "web"}))   # no image
    assert got.spec is None and "image" in got.error


def test_the_cache_starts_over_when_full() -> None:
    cache = SpecCache(limit=2)
    texts = [WEB.replace('"instances": 3', f'"instances": {n}') for n in (1, 2, 3)]
    a = cache.get(texts[0])
    cache.get(texts[1])
    cache.get(texts[2])                     # full: dropped, then this one kept
    assert cache.get(texts[0]) is not a and cache.get(texts[0]).spec == a.spec
