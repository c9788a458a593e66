"""The authorization matrix, generated from the app's own OpenAPI document: every route answers
each kind of caller exactly what EXPECTED says, and a route EXPECTED does not list fails the test.

Requests name apps, hosts and tokens that do not exist and send bodies that do not validate, so
an allowed caller gets 404/422 (or 200 for a list) and nothing in the task log changes."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from libs import db
from services.gateway import tokenstore
from services.gateway.access import Role
from services.gateway.app import MARATHON

NOPE = "nope-authz"
OK = 200
# Who asks: the session's test tokens (conftest.TEST_TOKENS) and the admin.
CALLERS = ("viewer", "operator", "admin", "payments")
D, F = 403, 403  # denied by role / by app scope (the same status; kept apart to read the table)

# (method, OpenAPI path) → (body, {caller: status}).  Paths are filled with NOPE.
EXPECTED: dict[tuple[str, str], tuple[object, dict[str, int]]] = {
    ("GET", "/v1/apps"): (None, dict(viewer=OK, operator=OK, admin=OK, payments=OK)),
    ("GET", "/v1/apps/{app_id}"): (None, dict(viewer=404, operator=404, admin=404, payments=F)),
    ("GET", "/v1/apps/{app_id}/instances"): (None, dict(viewer=404, operator=404, admin=404, payments=F)),
    ("GET", "/v1/apps/{app_id}/versions"): (None, dict(viewer=404, operator=404, admin=404, payments=F)),
    ("GET", "/v1/apps/{app_id}/deployments"): (None, dict(viewer=404, operator=404, admin=404, payments=F)),
    ("POST", "/v1/apps"): ({}, dict(viewer=D, operator=422, admin=422, payments=422)),
    ("POST", "/v1/apps/bulk"): ([], dict(viewer=D, operator=422, admin=422, payments=422)),
    ("PUT", "/v1/apps/{app_id}"): ({}, dict(viewer=D, operator=422, admin=422, payments=F)),
    ("PATCH", "/v1/apps/{app_id}"): ({}, dict(viewer=D, operator=422, admin=422, payments=F)),
    ("DELETE", "/v1/apps/{app_id}"): (None, dict(viewer=D, operator=404, admin=404, payments=F)),
    ("POST", "/v1/apps/{app_id}/restart"): (None, dict(viewer=D, operator=404, admin=404, payments=F)),
    ("POST", "/v1/apps/{app_id}/rollback"): ({}, dict(viewer=D, operator=422, admin=422, payments=F)),
    ("POST", "/v1/apps/{app_id}/deployment/pause"): (None, dict(viewer=D, operator=404, admin=404, payments=F)),
    ("POST", "/v1/apps/{app_id}/deployment/resume"): (None, dict(viewer=D, operator=404, admin=404, payments=F)),
    ("POST", "/v1/apps/{app_id}/deployment/cancel"): (None, dict(viewer=D, operator=404, admin=404, payments=F)),
    ("DELETE", "/v1/apps/{app_id}/delay"): (None, dict(viewer=D, operator=404, admin=404, payments=F)),
    ("POST", "/v1/apps/{app_id}/kill"): ({}, dict(viewer=D, operator=422, admin=422, payments=F)),
    ("GET", "/v1/instances"): (None, dict(viewer=OK, operator=OK, admin=OK, payments=OK)),
    ("GET", "/v1/instances/{instance_id}"): (None, dict(viewer=404, operator=404, admin=404, payments=404)),
    ("GET", "/v1/hosts"): (None, dict(viewer=OK, operator=OK, admin=OK, payments=OK)),
    ("GET", "/v1/hosts/{host_id}/usage"): (None, dict(viewer=404, operator=404, admin=404, payments=404)),
    ("GET", "/v1/discovery/prometheus"): (None, dict(viewer=OK, operator=OK, admin=OK, payments=OK)),
    ("GET", "/v1/events"): (None, dict(viewer=OK, operator=OK, admin=OK, payments=OK)),
    ("GET", "/v1/drift"): (None, dict(viewer=OK, operator=OK, admin=OK, payments=OK)),
    ("POST", "/v1/drift"): (None, dict(viewer=D, operator=202, admin=202, payments=202)),
    ("POST", "/v1/hosts/{host_id}/drain"): (None, dict(viewer=D, operator=D, admin=404, payments=D)),
    ("DELETE", "/v1/hosts/{host_id}/drain"): (None, dict(viewer=D, operator=D, admin=404, payments=D)),
    ("POST", "/v1/hosts/{host_id}/cordon"): (None, dict(viewer=D, operator=D, admin=404, payments=D)),
    ("DELETE", "/v1/hosts/{host_id}/cordon"): (None, dict(viewer=D, operator=D, admin=404, payments=D)),
    ("GET", "/v1/dead-letters"): (None, dict(viewer=D, operator=D, admin=OK, payments=D)),
    ("GET", "/v1/tokens"): (None, dict(viewer=D, operator=D, admin=OK, payments=D)),
    ("POST", "/v1/tokens"): ({}, dict(viewer=D, operator=D, admin=422, payments=D)),
    ("DELETE", "/v1/tokens/{name}"): (None, dict(viewer=D, operator=D, admin=404, payments=D)),
    ("GET", "/v1/audit"): (None, dict(viewer=D, operator=D, admin=OK, payments=D)),
    # Marathon's /v2 (outside OpenAPI: services/gateway/app.py MARATHON); the same roles as /v1.
    ("GET", "/v2/apps"): (None, dict(viewer=OK, operator=OK, admin=OK, payments=OK)),
    ("POST", "/v2/apps"): ({}, dict(viewer=D, operator=422, admin=422, payments=422)),
    ("PUT", "/v2/apps"): ([], dict(viewer=D, operator=422, admin=422, payments=422)),
    ("GET", "/v2/apps/{marathon_id}"): (None, dict(viewer=404, operator=404, admin=404, payments=F)),
    ("PUT", "/v2/apps/{marathon_id}"): ({}, dict(viewer=D, operator=422, admin=422, payments=F)),
    ("PATCH", "/v2/apps/{marathon_id}"): ({}, dict(viewer=D, operator=404, admin=404, payments=F)),
    ("DELETE", "/v2/apps/{marathon_id}"): (None, dict(viewer=D, operator=404, admin=404, payments=F)),
    ("POST", "/v2/apps/{marathon_id}/restart"): (None, dict(viewer=D, operator=404, admin=404, payments=F)),
    ("GET", "/v2/apps/{marathon_id}/versions"): (None, dict(viewer=404, operator=404, admin=404, payments=F)),
    ("GET", "/v2/apps/{marathon_id}/versions/{version}"): (None, dict(viewer=404, operator=404, admin=404,
                                                                      payments=F)),
    ("GET", "/v2/apps/{marathon_id}/tasks"): (None, dict(viewer=404, operator=404, admin=404, payments=F)),
    ("DELETE", "/v2/apps/{marathon_id}/tasks"): (None, dict(viewer=D, operator=404, admin=404, payments=F)),
    ("DELETE", "/v2/apps/{marathon_id}/tasks/{task_id}"): (None, dict(viewer=D, operator=404, admin=404, payments=F)),
    ("GET", "/v2/tasks"): (None, dict(viewer=OK, operator=OK, admin=OK, payments=OK)),
    ("POST", "/v2/tasks/delete"): ({}, dict(viewer=D, operator=422, admin=422, payments=422)),
    ("GET", "/v2/deployments"): (None, dict(viewer=OK, operator=OK, admin=OK, payments=OK)),
    ("DELETE", "/v2/deployments/{deployment_id}"): (None, dict(viewer=D, operator=404, admin=404, payments=F)),
    ("GET", "/v2/queue"): (None, dict(viewer=OK, operator=OK, admin=OK, payments=OK)),
    ("DELETE", "/v2/queue/{marathon_id}/delay"): (None, dict(viewer=D, operator=404, admin=404, payments=F)),
    ("GET", "/v2/info"): (None, dict(viewer=OK, operator=OK, admin=OK, payments=OK)),
    ("GET", "/v2/leader"): (None, dict(viewer=OK, operator=OK, admin=OK, payments=OK)),
    ("GET", "/v2/events"): (None, dict(viewer=OK, operator=OK, admin=OK, payments=OK)),
}
# Outside OpenAPI (include_in_schema=False) and open: answered without a token, with or without one.
OPEN = {("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/"), ("GET", "/openapi.json"), ("GET", "/docs"),
        ("GET", "/ping")}


async def status_of(app: FastAPI, method: str, path: str, headers: dict[str, str], body: object) -> int:
    """The status the app answers with.  Raw ASGI, so an endless stream (/v1/events) is left as
    soon as its first bytes are out."""
    raw = b"" if body is None else json.dumps(body).encode()
    hdrs = [(k.lower().encode(), v.encode()) for k, v in headers.items()] + [(b"content-type", b"application/json")]
    sent = False
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    gone = asyncio.Event()

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    status = 0

    async def send(msg: dict) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]
        elif msg["type"] == "http.response.body" and not started.done():
            # The first body bytes, not just the status: /v1/events sends them once its NATS
            # subscription is flushed, and leaving in the middle of that flush would upset the
            # session's NATS client.
            started.set_result(status)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "query_string": b"", "headers": hdrs, "scheme": "http",
             "server": ("gateway", 80), "client": ("127.0.0.1", 1), "root_path": ""}
    task = asyncio.create_task(app(scope, receive, send))
    try:
        return await asyncio.wait_for(asyncio.shield(started), 10)
    finally:
        gone.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def fill(path: str) -> str:
    for p in ("{app_id}", "{host_id}", "{instance_id}", "{name}", "{marathon_id}"):
        path = path.replace(p, NOPE)
    return (path.replace("{task_id}", f"{NOPE}-000000000000").replace("{deployment_id}", f"{NOPE}.1")
            .replace("{version}", "2001-01-01T00:00:00.000000Z"))


async def openapi_routes(app: FastAPI) -> set[tuple[str, str]]:
    """The routes of the OpenAPI document, and the Marathon ones left out of it (not open)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as c:
        doc = (await c.get("/openapi.json")).json()   # open: no token
    hidden = {(m, r.path_format) for mod in MARATHON for r in mod.router.routes for m in r.methods}
    return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops} | (hidden - OPEN)


async def test_every_route_in_openapi_is_in_the_table(gateway_app: FastAPI) -> None:
    routes = await openapi_routes(gateway_app)
    assert routes - set(EXPECTED) == set(), "routes with no expected answers: add them to EXPECTED"
    assert set(EXPECTED) - routes == set(), "EXPECTED lists routes the API does not have"


@pytest.mark.parametrize("caller", CALLERS)
async def test_each_role_gets_the_answers_of_the_table(gateway_app: FastAPI, tokens: dict[str, str],
                                                       caller: str) -> None:
    headers = {"Authorization": f"Bearer {tokens[caller]}"}
    got, want = {}, {}
    for (method, path) in sorted(await openapi_routes(gateway_app)):
        body, answers = EXPECTED[(method, path)]
        got[(method, path)] = await status_of(gateway_app, method, fill(path), headers, body)
        want[(method, path)] = answers[caller]
    assert got == want


@pytest.fixture
async def bad_tokens(pool: asyncpg.Pool, created, uid: str) -> dict[str, str | None]:
    q = db.Queries("access")
    out: dict[str, str | None] = {"none": None, "unknown": "noops_" + "x" * 43}
    async with pool.acquire() as conn, conn.transaction():
        for kind in ("expired", "revoked"):
            name = f"authz-{kind}-{uid}"
            created.tokens.append(name)
            expires = datetime.now(timezone.utc) - timedelta(seconds=1) if kind == "expired" else None
            made = await tokenstore.create(conn, q, name=name, role=Role.admin, apps=None, expires_at=expires,
                                           created_by="test")
            out[kind] = made["token"]
        await tokenstore.revoke(conn, q, f"authz-revoked-{uid}", by="test")
    return out


@pytest.mark.parametrize("kind", ["none", "unknown", "expired", "revoked"])
async def test_without_a_valid_token_every_route_but_the_open_ones_is_401(
        gateway_app: FastAPI, bad_tokens: dict[str, str | None], kind: str) -> None:
    secret = bad_tokens[kind]
    headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
    routes = await openapi_routes(gateway_app)
    got = {r: await status_of(gateway_app, r[0], fill(r[1]), headers, EXPECTED[r][0]) for r in sorted(routes)}
    assert got == {r: 401 for r in routes}
    for method, path in sorted(OPEN):
        assert await status_of(gateway_app, method, path, headers, None) == 200, path


async def test_401_and_403_bodies(client_as) -> None:
    anon = await client_as(None).get("/v1/apps")
    assert anon.status_code == 401
    assert anon.headers["www-authenticate"].startswith("Bearer realm=")
    assert anon.json()["error"] == "authentication required"
    assert anon.json()["details"][0]["field"] == "Authorization"
    denied = await client_as("viewer").post("/v1/apps", json={"id": "x", "image": "nginx:1"})
    assert denied.status_code == 403
    assert denied.json() == {"error": "forbidden", "details": [
        {"field": "Authorization", "reason": "needs the operator role; token 'test-viewer' has viewer"}]}
