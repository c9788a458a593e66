"""Strict types in the app spec: what comes over HTTP is typed exactly, and what the placer reads
back from the task log (``AppSpec.model_validate(json.loads(row["spec"]))``) still validates."""
from __future__ import annotations

import json

import pydantic
import pytest

from libs.appspec import AppSpec

FULL = {"id": "web", "image": "ghcr.io/org/web:1.2", "instances": 3, "cmd": ["serve", "--port", "8080"],
        "resources": {"cpus": 1, "mem_mb": 128, "disk_mb": 10, "egress_mbit": 5},
        "ports": [{"name": "http", "container_port": 8080, "host_port": 0}],
        "env": {"A": "1"}, "labels": {"team": "x"}, "constraints": [["hostname", "UNIQUE"]],
        "health_checks": [{"protocol": "HTTP", "port_name": "http", "path": "/health", "status": [200, 204],
                           "grace_period_s": 5, "interval_s": 1, "timeout_s": 1, "max_consecutive_failures": 2}],
        "upgrade_strategy": {"minimum_health_capacity": 0.5, "maximum_over_capacity": 0, "auto_rollback": False},
        "security": {"cap_add": ["NET_BIND_SERVICE"], "user": "1000:1000", "read_only_rootfs": True}}


@pytest.mark.parametrize("raw", [
    pytest.param(FULL, id="as-posted"),
    pytest.param(json.loads(json.dumps(AppSpec.model_validate(FULL).model_dump(mode="json"))), id="as-stored"),
    pytest.param({"id": "old", "image": "noops/base:latest", "resources": {"cpus": 2}}, id="int-where-float"),
])
def test_specs_as_posted_and_as_stored_validate(raw: dict) -> None:
    spec = AppSpec.model_validate(raw)
    assert AppSpec.model_validate(json.loads(json.dumps(spec.model_dump(mode="json")))) == spec
    assert AppSpec.model_validate(spec.model_dump()) == spec   # Python values (a tuple status) too


def test_stored_status_is_a_tuple_again() -> None:
    stored = json.loads(json.dumps(AppSpec.model_validate(FULL).model_dump(mode="json")))
    assert AppSpec.model_validate(stored).health_checks[0].status == (200, 204)


@pytest.mark.parametrize(("change", "loc"), [
    pytest.param({"instances": True}, ("instances",), id="bool-as-int"),
    pytest.param({"instances": "3"}, ("instances",), id="string-as-int"),
    pytest.param({"instances": 3.0}, ("instances",), id="float-as-int"),
    pytest.param({"backoff_seconds": "1"}, ("backoff_seconds",), id="string-as-float"),
    pytest.param({"backoff_seconds": False}, ("backoff_seconds",), id="bool-as-float"),
    pytest.param({"placement": 1}, ("placement",), id="int-as-literal"),
    pytest.param({"cmd": [1]}, ("cmd", 0), id="int-as-string"),
    pytest.param({"security": {"read_only_rootfs": 0}}, ("security", "read_only_rootfs"), id="int-as-bool"),
])
def test_loose_types_are_refused(change: dict, loc: tuple) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        AppSpec.model_validate({**FULL, **change})
    assert [e["loc"] for e in info.value.errors()] == [loc]
