"""Retention's pure parts: the policy from settings, when it is off, and which apps a count-rule
batch leaves unfinished."""
from __future__ import annotations

import dataclasses

import pytest

from libs.settings import CommonSettings, HttpSettings, ReconcilerSettings
from services.reconciler.retention import RetentionPolicy, remaining_apps


def test_policy_from_settings() -> None:
    s = dataclasses.replace(ReconcilerSettings(common=CommonSettings(), http=HttpSettings()),
                            retain_ended_per_app=7, retain_ended_s=60.0, retention_batch=100, retention_max_batches=3)
    assert RetentionPolicy.from_settings(s) == RetentionPolicy(keep_per_app=7, max_age_s=60.0, batch=100,
                                                               max_batches=3)
    defaults = RetentionPolicy.from_settings(ReconcilerSettings(common=CommonSettings(), http=HttpSettings()))
    assert defaults == RetentionPolicy() and defaults.active


@pytest.mark.parametrize("policy, active", [
    (RetentionPolicy(), True),
    (RetentionPolicy(keep_per_app=0), True),
    (RetentionPolicy(max_age_s=0), True),
    (RetentionPolicy(keep_per_app=0, max_age_s=0), False),
    (RetentionPolicy(max_batches=0), False),
    (RetentionPolicy(batch=0), False),
], ids=["defaults", "age-only", "count-only", "no-rule", "no-batches", "empty-batch"])
def test_when_retention_is_off(policy: RetentionPolicy, active: bool) -> None:
    assert policy.active is active


@pytest.mark.parametrize("picked, last_app, left", [
    (3, 2, []),                     # less than a batch: every app's surplus fit
    (4, 0, []),                     # nothing came from any app
    (4, 1, ["a", "b", "c"]),        # a full batch from the first app: it may have more
    (4, 2, ["b", "c"]),             # a done, b may have more
    (4, 3, ["c"]),
], ids=["partial-batch", "none", "first-app-full", "second-app", "last-app"])
def test_remaining_apps(picked: int, last_app: int, left: list[str]) -> None:
    assert remaining_apps(["a", "b", "c"], picked, last_app, batch=4) == left
