"""Health checks in the app spec: defaults, accepted spellings, and refusals naming the field."""
from __future__ import annotations

from typing import Any

import pydantic
import pytest

from libs import messages
from libs.appspec import AppSpec
from services.placer.specs import container_spec

PORTS = [{"name": "http", "container_port": 8080}, {"name": "admin", "container_port": 9000}]


def app(*checks: dict[str, Any]) -> dict[str, Any]:
    return {"id": "web", "image": "noops/base:latest", "ports": PORTS, "health_checks": list(checks)}


def test_defaults_are_marathons() -> None:
    [c] = AppSpec.model_validate(app({"protocol": "HTTP", "port_name": "http"})).health_checks
    assert (c.path, c.status, c.grace_period_s, c.interval_s, c.timeout_s, c.max_consecutive_failures) == \
        ("/", (200, 399), 300.0, 60.0, 20.0, 3)


@pytest.mark.parametrize("check", [
    pytest.param({"protocol": "http", "port_name": "http", "path": "/health"}, id="http-lowercase"),
    pytest.param({"protocol": "Tcp", "port_name": "admin"}, id="tcp-mixed-case"),
    pytest.param({"protocol": "COMMAND", "command": ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]},
                 id="command"),
    pytest.param({"protocol": "HTTP", "port_name": "http", "status": [200, 200], "max_consecutive_failures": 0,
                  "grace_period_s": 0, "interval_s": 0.5, "timeout_s": 0.5}, id="http-all-fields"),
])
def test_valid_checks(check: dict[str, Any]) -> None:
    AppSpec.model_validate(app(check))


@pytest.mark.parametrize(("check", "field", "words"), [
    pytest.param({"protocol": "UDP", "port_name": "http"}, "health_checks.0.protocol", "HTTP", id="bad-protocol"),
    pytest.param({"port_name": "http"}, "health_checks.0.protocol", "required", id="no-protocol"),
    pytest.param({"protocol": "HTTP"}, "health_checks.0", "port_name is required", id="http-without-port"),
    pytest.param({"protocol": "TCP", "port_name": "db"}, "health_checks", "health_checks.0.port_name 'db'",
                 id="unknown-port-name"),
    pytest.param({"protocol": "COMMAND"}, "health_checks.0", "command is required", id="command-without-argv"),
    pytest.param({"protocol": "COMMAND", "command": ["true"], "port_name": "http"}, "health_checks.0",
                 "port_name applies", id="command-with-port"),
    pytest.param({"protocol": "HTTP", "port_name": "http", "command": ["true"]}, "health_checks.0",
                 "command applies", id="http-with-command"),
    pytest.param({"protocol": "HTTP", "port_name": "http", "path": "health"}, "health_checks.0.path", "pattern",
                 id="relative-path"),
    pytest.param({"protocol": "HTTP", "port_name": "http", "status": [400, 200]}, "health_checks.0.status",
                 "lowest", id="status-range-reversed"),
    pytest.param({"protocol": "HTTP", "port_name": "http", "status": [200, 700]}, "health_checks.0.status",
                 "599", id="status-out-of-range"),
    pytest.param({"protocol": "TCP", "port_name": "http", "interval_s": 0}, "health_checks.0.interval_s",
                 "greater", id="zero-interval"),
    pytest.param({"protocol": "TCP", "port_name": "http", "timeout_s": 0}, "health_checks.0.timeout_s",
                 "greater", id="zero-timeout"),
    pytest.param({"protocol": "TCP", "port_name": "http", "grace_period_s": -1}, "health_checks.0.grace_period_s",
                 "greater", id="negative-grace"),
    pytest.param({"protocol": "TCP", "port_name": "http", "max_consecutive_failures": -1},
                 "health_checks.0.max_consecutive_failures", "greater", id="negative-limit"),
    pytest.param({"protocol": "TCP", "port_name": "http", "delay": 1}, "health_checks.0.delay", "not permitted",
                 id="unknown-field"),
])
def test_invalid_checks_name_the_field(check: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(pydantic.ValidationError) as err:
        AppSpec.model_validate(app(check))
    found = {".".join(str(p) for p in e["loc"]): e["msg"] for e in err.value.errors()}
    assert field in found, found
    assert words in found[field]


def test_placement_carries_checks_with_resolved_ports() -> None:
    spec = AppSpec.model_validate(app({"protocol": "http", "port_name": "admin", "path": "/ok", "status": [200, 204]},
                                      {"protocol": "command", "command": ["true"], "interval_s": 5}))
    http, cmd = container_spec(spec).health_checks
    assert (http.protocol, http.name, http.port, http.path, http.status_min, http.status_max) == \
        ("HTTP", "http /ok", 9000, "/ok", 200, 204)
    assert (cmd.protocol, cmd.name, cmd.command, cmd.interval_s, cmd.port) == ("COMMAND", "command true", ["true"], 5.0, 0)


def test_security_travels_to_the_container_spec() -> None:
    spec = AppSpec.model_validate({"id": "web", "image": "noops/base:latest",
                                   "security": {"cap_add": ["cap_net_raw"], "user": "1000:1000",
                                                "read_only_rootfs": True}})
    assert container_spec(spec).security == messages.SecuritySpec(cap_add=["NET_RAW"], user="1000:1000",
                                                                  read_only_rootfs=True)
    assert container_spec(AppSpec.model_validate({"id": "web", "image": "i"})).security == messages.SecuritySpec()
