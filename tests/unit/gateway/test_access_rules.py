"""The pure rules of access control: header forms, app-id globs, role order, redaction, the
capability check, and the route table's shape."""
from __future__ import annotations

import base64

import pytest

from libs.appspec import AppSpec
from services.gateway import access, policy
from services.gateway.access import REDACTED, Principal, Role


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(("header", "token"), [
    pytest.param("Bearer noops_abc", "noops_abc", id="bearer"),
    pytest.param("bearer   noops_abc  ", "noops_abc", id="bearer-any-case-spaces"),
    pytest.param("token=noops_abc", "noops_abc", id="dcos"),
    pytest.param("Token=noops_abc", "noops_abc", id="dcos-case"),
    pytest.param(basic("alice", "noops_abc"), "noops_abc", id="basic-any-user"),
    pytest.param(basic("", "noops_abc"), "noops_abc", id="basic-empty-user"),
    pytest.param(basic("alice", "a:b"), "a:b", id="basic-colon-in-password"),
    pytest.param(basic("noops_abc", ""), None, id="basic-token-as-user-only"),
    pytest.param("Basic !!!notbase64", None, id="basic-garbage"),
    pytest.param("Basic " + base64.b64encode(b"no-colon").decode(), None, id="basic-no-colon"),
    pytest.param("Bearer", None, id="bearer-empty"),
    pytest.param("token=", None, id="dcos-empty"),
    pytest.param("Digest abc", None, id="other-scheme"),
    pytest.param("", None, id="empty"),
    pytest.param(None, None, id="absent"),
])
def test_parse_authorization(header: str | None, token: str | None) -> None:
    assert access.parse_authorization(header) == token


@pytest.mark.parametrize(("pattern", "app_id", "ok"), [
    pytest.param(None, "anything", True, id="no-scope"),
    pytest.param("payments-*", "payments-api", True, id="prefix"),
    pytest.param("payments-*", "payments-", True, id="prefix-empty-rest"),
    pytest.param("payments-*", "payments", False, id="prefix-without-dash"),
    pytest.param("payments-*", "web", False, id="other"),
    pytest.param("payments-*", "xpayments-api", False, id="anchored-start"),
    pytest.param("*-api", "payments-api", True, id="suffix"),
    pytest.param("*-api", "payments-api-2", False, id="anchored-end"),
    pytest.param("web", "web", True, id="exact"),
    pytest.param("web", "web2", False, id="exact-only"),
    pytest.param("a*b*c", "a-x-b-y-c", True, id="several-stars"),
    pytest.param("*", "web", True, id="star"),
    pytest.param("", "web", False, id="empty-pattern-matches-nothing"),
])
def test_pattern_matches(pattern: str | None, app_id: str, ok: bool) -> None:
    assert access.matches(pattern, app_id) is ok


@pytest.mark.parametrize(("pattern", "ok"), [
    ("payments-*", True), ("*", True), ("web", True), ("Payments-*", False), ("pay?", False),
    ("pay[a]", False), ("", False), ("a" * 129, False), ("pay.*", False),
], ids=lambda v: str(v)[:20])
def test_pattern_problem(pattern: str, ok: bool) -> None:
    assert (access.pattern_problem(pattern) is None) is ok


@pytest.mark.parametrize(("role", "need", "ok"), [
    (Role.viewer, Role.viewer, True), (Role.viewer, Role.operator, False), (Role.viewer, Role.admin, False),
    (Role.operator, Role.viewer, True), (Role.operator, Role.operator, True), (Role.operator, Role.admin, False),
    (Role.admin, Role.viewer, True), (Role.admin, Role.operator, True), (Role.admin, Role.admin, True),
], ids=lambda v: v.name if isinstance(v, Role) else str(v))
def test_role_order(role: Role, need: Role, ok: bool) -> None:
    assert Principal("t", role).has(need) is ok


@pytest.mark.parametrize(("who", "app_id", "changes"), [
    pytest.param(Principal("v", Role.viewer), "web", False, id="viewer"),
    pytest.param(Principal("o", Role.operator), "web", True, id="operator"),
    pytest.param(Principal("a", Role.admin), "web", True, id="admin"),
    pytest.param(Principal("p", Role.operator, "payments-*"), "payments-api", True, id="scoped-in"),
    pytest.param(Principal("p", Role.operator, "payments-*"), "web", False, id="scoped-out"),
])
def test_env_values_only_for_who_may_change(who: Principal, app_id: str, changes: bool) -> None:
    spec = {"id": app_id, "image": "nginx:1", "env": {"DB_PASSWORD": "hunter2", "MODE": "prod"}}
    out = access.spec_for(who, app_id, spec)
    assert out["env"] == (spec["env"] if changes else {"DB_PASSWORD": REDACTED, "MODE": REDACTED})
    assert spec["env"]["DB_PASSWORD"] == "hunter2"  # the input is never changed


@pytest.mark.parametrize("spec", [{"id": "a"}, {"id": "a", "env": {}}], ids=["no-env", "empty-env"])
def test_redaction_without_env(spec: dict) -> None:
    assert access.redact_spec(spec) == spec


@pytest.mark.parametrize(("role", "caps", "fields"), [
    pytest.param(Role.operator, ["NET_RAW"], ["security.cap_add"], id="operator-refused"),
    pytest.param(Role.operator, [], [], id="operator-no-caps"),
    pytest.param(Role.admin, ["NET_RAW"], [], id="admin-approved"),
])
def test_cap_add_needs_admin(role: Role, caps: list[str], fields: list[str]) -> None:
    spec = AppSpec.model_validate({"id": "web", "image": "nginx:1", "security": {"cap_add": caps}})
    assert [p["field"] for p in access.cap_add_problems(Principal("t", role), [("", spec)])] == fields


def test_token_hash_is_sha256_hex() -> None:
    h = access.token_hash("noops_x")
    assert len(h) == 64 and h != access.token_hash("noops_y")


@pytest.mark.parametrize(("method", "path", "need"), [
    ("GET", "/healthz", None), ("HEAD", "/", None), ("GET", "/v1/apps", Role.viewer),
    ("POST", "/v1/apps", Role.operator), ("POST", "/v1/hosts/{host_id}/drain", Role.admin),
    ("GET", "/v1/nowhere", policy.MISSING),
], ids=lambda v: str(v))
def test_policy_rule(method: str, path: str, need: object) -> None:
    assert policy.rule(method, path) is need
