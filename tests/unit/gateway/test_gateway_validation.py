"""Validation and error mapping of the gateway, without a database: invalid input is refused
before any handler touches the task log, so the app is built with no pool, NATS or relay, and
the token lookup (a database read) answers an admin for every request: access control itself
is tested against the real database in tests/integration/gateway/test_gateway_authz.py."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from libs.appspec import AppSpec
from libs.settings import CommonSettings, GatewaySettings, HttpSettings
from services.gateway import checks, errors
from services.gateway.access import Principal, Role
from services.gateway.app import create_app
from services.gateway.auth import authorize

SETTINGS = GatewaySettings(common=CommonSettings(), http=HttpSettings(), max_instances=100)
VALID = {"id": "web", "image": "nginx:1", "instances": 2, "resources": {"cpus": 0.5, "mem_mb": 64}}


def spec(**changes: object) -> dict[str, object]:
    return {**VALID, **changes}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SETTINGS, pool=None, nc=None, relay=None)  # type: ignore[arg-type]
    app.dependency_overrides[authorize] = lambda: Principal("test", Role.admin)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


@pytest.mark.parametrize(("body", "field"), [
    pytest.param({k: v for k, v in VALID.items() if k != "image"}, "image", id="missing-image"),
    pytest.param(spec(instances=-1), "instances", id="negative-instances"),
    pytest.param(spec(replicas=3), "replicas", id="unknown-field"),
    pytest.param(spec(id="Web_1"), "id", id="bad-id"),
    pytest.param(spec(id="-web"), "id", id="bad-id-leading-dash"),
    pytest.param(spec(resources={"cpus": 4096}), "resources.cpus", id="too-large-cpus"),
    pytest.param(spec(resources={"cpus": 0}), "resources.cpus", id="zero-cpus"),
    pytest.param(spec(resources={"mem_mb": 1}), "resources.mem_mb", id="too-small-mem"),
    pytest.param(spec(ports=[{"name": "http", "container_port": 70000}]), "ports.0.container_port", id="bad-port"),
    pytest.param(spec(env={"A=B": "x"}), "env", id="bad-env-name"),
    pytest.param(spec(ports=[{"name": "http", "container_port": 80, "host_port": 70000}]), "ports.0.host_port",
                 id="bad-host-port"),
    pytest.param(spec(ports=[{"name": "a", "container_port": 80, "host_port": 8080},
                             {"name": "b", "container_port": 81, "host_port": 8080}]), "ports", id="same-host-port"),
    pytest.param([VALID], "", id="not-an-object"),
    pytest.param(spec(health_checks=[{"protocol": "GRPC"}]), "health_checks.0.protocol", id="health-bad-protocol"),
    pytest.param(spec(ports=[{"name": "http", "container_port": 80}], health_checks=[{"protocol": "tcp", "port_name": "x"}]),
                 "health_checks", id="health-unknown-port"),
    pytest.param(spec(health_checks=[{"protocol": "http", "port_name": "http", "timeout_s": 0}]),
                 "health_checks.0.timeout_s", id="health-zero-timeout"),
    # The image must be a reference Docker takes (libs/imageref.py has the full table).
    pytest.param(spec(image="0:"), "image", id="image-empty-tag"),
    pytest.param(spec(image="Nginx"), "image", id="image-uppercase"),
    pytest.param(spec(image="nginx latest"), "image", id="image-space"),
    pytest.param(spec(image=7), "image", id="image-number"),
    # Strict types: a bool is not a number, a string is not a number or a bool.
    pytest.param(spec(instances=False), "instances", id="strict-bool-instances"),
    pytest.param(spec(instances="3"), "instances", id="strict-string-instances"),
    pytest.param(spec(instances=2.0), "instances", id="strict-float-instances"),
    pytest.param(spec(resources={"cpus": True}), "resources.cpus", id="strict-bool-cpus"),
    pytest.param(spec(resources={"cpus": "0.5"}), "resources.cpus", id="strict-string-cpus"),
    pytest.param(spec(upgrade_strategy={"auto_rollback": "yes"}), "upgrade_strategy.auto_rollback",
                 id="strict-string-bool"),
    pytest.param(spec(upgrade_strategy={"auto_rollback": 1}), "upgrade_strategy.auto_rollback", id="strict-int-bool"),
    pytest.param(spec(ports=[{"name": "http", "container_port": "80"}]), "ports.0.container_port",
                 id="strict-string-port"),
    pytest.param(spec(ports=[{"name": "http", "container_port": 80}],
                      health_checks=[{"protocol": "http", "port_name": "http", "status": [True, 299]}]),
                 "health_checks.0.status.0", id="strict-bool-status"),
    pytest.param(spec(env={"A": 1}), "env.A", id="strict-number-env-value"),
    pytest.param(spec(id="a" * 64), "id", id="id-too-long"),
    # The spec is stored as jsonb, which holds neither NUL nor a lone surrogate.
    pytest.param(spec(env={"A": "x\x00y"}), "env.A", id="nul-in-env-value"),
    pytest.param(spec(labels={"k\x00": "v"}), "labels.k\x00.[key]", id="nul-in-label-key"),
    pytest.param(spec(cmd=["sh", "\ud800"]), "cmd.1", id="lone-surrogate-in-cmd"),
    pytest.param(spec(volume_path="/data\udfff"), "volume_path", id="lone-surrogate-in-path"),
])
async def test_invalid_spec_is_422_naming_the_field(client: httpx.AsyncClient, body: object, field: str) -> None:
    # Encoded here: json.dumps escapes a lone surrogate as JSON allows, where httpx would refuse it.
    r = await client.post("/v1/apps", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    out = r.json()
    assert out["error"] == "invalid app spec"
    assert field in [d["field"] for d in out["details"]]
    assert all(d["reason"] for d in out["details"])


@pytest.mark.parametrize("raw", [
    pytest.param(b'{"id": "web", ', id="truncated"),
    pytest.param(b"{'id': 'web'}", id="single-quotes"),
    pytest.param(b"not json", id="garbage"),
])
async def test_malformed_json_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    r = await client.post("/v1/apps", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    out = r.json()
    assert out["error"] == "malformed JSON"
    assert out["details"][0]["field"] == "" and out["details"][0]["reason"]


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), [
    pytest.param("PATCH", "/v1/apps/web", {"instances": -1}, 422, "instances", id="scale-negative"),
    pytest.param("PATCH", "/v1/apps/web", {"instances": 2, "image": "x"}, 422, "image", id="scale-unknown-field"),
    pytest.param("PATCH", "/v1/apps/web", {}, 422, "instances", id="scale-missing"),
    pytest.param("PUT", "/v1/apps/web", {"image": ""}, 422, "image", id="put-empty-image"),
    pytest.param("GET", "/v1/apps/web/instances?state=DANCING", None, 422, "query.state", id="bad-state-filter"),
    pytest.param("GET", "/v1/dead-letters?consumer=p%00x", None, 422, "query.consumer", id="nul-in-consumer"),
    pytest.param("PUT", "/v1/apps/web", {"id": "Bad_Id", "image": "x"}, 422, "id", id="put-bad-body-id"),
    pytest.param("PATCH", "/v1/apps/web", {"instances": False}, 422, "instances", id="scale-strict-bool"),
    pytest.param("PATCH", "/v1/apps/web", {"instances": "3"}, 422, "instances", id="scale-strict-string"),
    pytest.param("POST", "/v1/apps/web/rollback", {"version": True}, 422, "version", id="rollback-strict-bool"),
    pytest.param("POST", "/v1/apps/web/deployment/cancel", {"rollback": "true"}, 422, "rollback",
                 id="cancel-strict-string"),
    pytest.param("POST", "/v1/apps/web/kill", {"instances": ["Web_1"]}, 422, "instances.0", id="kill-bad-instance-id"),
    pytest.param("POST", "/v1/apps/web/kill", {"instances": ["web-" + "a" * 80]}, 422, "instances.0",
                 id="kill-instance-id-too-long"),
    pytest.param("POST", "/v1/apps/web/kill", {"instances": ["web-1"], "scale": 0}, 422, "scale",
                 id="kill-strict-int-bool"),
])
async def test_other_invalid_requests(client: httpx.AsyncClient, method: str, path: str, body: object,
                                      status: int, field: str) -> None:
    r = await client.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert field in [d["field"] for d in r.json()["details"]]


async def test_put_to_an_impossible_id_is_404(client: httpx.AsyncClient) -> None:
    r = await client.put("/v1/apps/Not_An_Id", json={"image": "nginx:1"})
    assert (r.status_code, r.json()) == (404, {"error": "app 'Not_An_Id' not found"})


@pytest.mark.parametrize(("method", "path", "error"), [
    pytest.param("GET", "/v1/apps/Not_An_Id", "app 'Not_An_Id' not found", id="app-pattern"),
    pytest.param("GET", "/v1/apps/" + "a" * 64, f"app {'a' * 64!r} not found", id="app-too-long"),
    pytest.param("DELETE", "/v1/apps/-x", "app '-x' not found", id="app-leading-dash"),
    pytest.param("POST", "/v1/apps/x_y/restart", "app 'x_y' not found", id="app-control"),
    pytest.param("GET", "/v1/instances/" + "a" * 77, f"instance {'a' * 77!r} not found", id="instance-too-long"),
    pytest.param("POST", "/v1/hosts/Host/drain", "host 'Host' not found", id="host-pattern"),
])
async def test_an_impossible_path_id_is_404_before_the_task_log(client: httpx.AsyncClient, method: str, path: str,
                                                                 error: str) -> None:
    # No pool in this app: a 404 here was decided without a query.
    r = await client.request(method, path)
    assert (r.status_code, r.json()) == (404, {"error": error})


async def test_an_impossible_path_id_wins_over_a_bad_body(client: httpx.AsyncClient) -> None:
    r = await client.patch("/v1/apps/Bad_Id", json={"instances": False})
    assert r.status_code == 404, r.text


async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/nothing")
    assert r.status_code == 404
    assert r.json() == {"error": "not found"}


async def test_ui_is_served_without_external_urls(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "http://" not in r.text and "https://" not in r.text


async def test_metrics_count_by_route_template(client: httpx.AsyncClient) -> None:
    await client.patch("/v1/apps/some-app", json={"instances": -1})
    text = (await client.get("/metrics")).text
    assert 'route="/v1/apps/{app_id}"' in text
    assert "/v1/apps/some-app" not in text


LIMITS = checks.Limits(max_instances=10, host_cpus=2.0, host_mem_mb=4096)


@pytest.mark.parametrize(("changes", "limits", "fields"), [
    pytest.param({}, LIMITS, [], id="fits"),
    pytest.param({"resources": {"cpus": 2.5}}, LIMITS, ["resources.cpus"], id="too-many-cpus"),
    pytest.param({"resources": {"mem_mb": 8192}}, LIMITS, ["resources.mem_mb"], id="too-much-mem"),
    pytest.param({"resources": {"cpus": 3, "mem_mb": 8192}}, LIMITS, ["resources.cpus", "resources.mem_mb"],
                 id="both-too-large"),
    pytest.param({"instances": 11}, LIMITS, ["instances"], id="too-many-instances"),
    pytest.param({"resources": {"cpus": 64, "mem_mb": 8192}}, checks.Limits(max_instances=10), [],
                 id="no-hosts-no-resource-check"),
])
def test_limits(changes: dict[str, object], limits: checks.Limits, fields: list[str]) -> None:
    problems = checks.problems(AppSpec.model_validate(spec(**changes)), limits)
    assert [p["field"] for p in problems] == fields


@pytest.mark.parametrize(("loc", "field"), [
    pytest.param(("body", "resources", "cpus"), "resources.cpus", id="nested"),
    pytest.param(("body", "ports", 0, "name"), "ports.0.name", id="list-index"),
    pytest.param(("body",), "", id="whole-body"),
    pytest.param(("query", "state"), "query.state", id="query-keeps-prefix"),
])
def test_field_of(loc: tuple[str | int, ...], field: str) -> None:
    assert errors.field_of(loc) == field


def test_error_bodies_are_plain_json() -> None:
    status, content = errors.validation_body([{"type": "json_invalid", "loc": ("body", 3), "msg": "JSON decode error",
                                               "ctx": {"error": "Expecting value"}}])
    assert status == 400
    assert json.loads(json.dumps(content)) == {
        "error": "malformed JSON", "details": [{"field": "", "reason": "Expecting value at position 3"}]}
