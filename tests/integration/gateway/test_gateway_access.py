"""Access control against the real task log: app scopes in every view, the three header forms,
redaction of env values, the audit trail, admin-approved capabilities and the token API."""
from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import asyncpg
import httpx
import nats
import pytest_asyncio

from libs import messages, outbox, subjects
from libs.settings import GatewaySettings
from services.gateway.access import REDACTED
from services.gateway.app import create_app
from tests.support.serve import serving

SECRET_ENV = {"DB_PASSWORD": "hunter2", "MODE": "prod"}


def spec(app_id: str, **more: object) -> dict:
    return {"id": app_id, "image": "nginx:1", "instances": 1, **more}


async def _running(pool: asyncpg.Pool, created, iid: str, app: str, host: str) -> None:
    created.instances.append(iid)
    await pool.execute("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, ip) "
                       "VALUES ($1, $2, 1, $3, 1, 0.5, 100, 'RUNNING', '198.18.0.9')", iid, app, host)


@pytest_asyncio.fixture
async def two_apps(client: httpx.AsyncClient, pool: asyncpg.Pool, created, uid: str) -> tuple[str, str, str]:
    """``payments-api-<uid>`` and ``web-<uid>``, one running instance each on host ``scope-<uid>``."""
    pay, web, host = created.app(f"payments-api-{uid}"), created.app(f"web-{uid}"), f"scope-{uid}"
    created.hosts.append(host)
    await pool.execute("INSERT INTO hosts (id, cpus, mem_mb, last_seen) VALUES ($1, 4, 8192, now())", host)
    ports = [{"name": "http", "container_port": 80}]
    for app in (pay, web):
        r = await client.post("/v1/apps", json=spec(app, ports=ports, env=SECRET_ENV))
        assert r.status_code == 201, r.text
        await _running(pool, created, f"{app}-0", app, host)
    return pay, web, host


async def test_scoped_token_neither_sees_nor_changes_other_apps(client_as, two_apps) -> None:
    pay, web, host = two_apps
    c = client_as("payments")
    listed = {a["id"] for a in (await c.get("/v1/apps")).json()}
    assert pay in listed and web not in listed
    for method, path, body in [("GET", f"/v1/apps/{web}", None), ("GET", f"/v1/apps/{web}/instances", None),
                               ("GET", f"/v1/apps/{web}/versions", None), ("GET", f"/v1/apps/{web}/deployments", None),
                               ("GET", f"/v1/instances/{web}-0", None), ("PATCH", f"/v1/apps/{web}", {"instances": 2}),
                               ("PUT", f"/v1/apps/{web}", {"image": "nginx:2"}), ("DELETE", f"/v1/apps/{web}", None),
                               ("POST", f"/v1/apps/{web}/restart", None), ("POST", "/v1/apps", spec(f"{web}-2")),
                               ("POST", f"/v1/apps/{web}/kill", {"instances": [f"{web}-0"]})]:
        r = await c.request(method, path, json=body)
        assert r.status_code == 403, f"{method} {path}: {r.status_code} {r.text}"
    # ... and can all of it on its own app
    assert (await c.get(f"/v1/apps/{pay}")).status_code == 200
    assert (await c.get(f"/v1/instances/{pay}-0")).status_code == 200
    assert (await c.patch(f"/v1/apps/{pay}", json={"instances": 2})).status_code == 200
    targets = {t["labels"]["app"] for t in (await c.get("/v1/discovery/prometheus")).json()}
    assert pay in targets and web not in targets
    everything = {t["labels"]["app"] for t in (await client_as("admin").get("/v1/discovery/prometheus")).json()}
    assert {pay, web} <= everything
    hosts = {h["id"]: h for h in (await c.get("/v1/hosts")).json()}
    assert (hosts[host]["instances"], hosts[host]["reserved"]) == (1, {"cpus": 0.5, "mem_mb": 100})
    full = {h["id"]: h for h in (await client_as("admin").get("/v1/hosts")).json()}
    assert full[host]["reserved"] == {"cpus": 1.0, "mem_mb": 200}


async def test_bulk_with_one_app_out_of_scope_is_refused_whole(client_as, created, uid: str) -> None:
    pay, web = created.app(f"payments-b-{uid}"), created.app(f"web-b-{uid}")
    r = await client_as("payments").post("/v1/apps/bulk", json=[spec(pay), spec(web)])
    assert r.status_code == 403
    assert [d["field"] for d in r.json()["details"]] == ["1.id"]
    assert (await client_as("admin").get(f"/v1/apps/{pay}")).status_code == 404  # none was created


@pytest_asyncio.fixture
async def served(settings: GatewaySettings, pool: asyncpg.Pool, nc: nats.NATS) -> AsyncIterator[str]:
    """The gateway over a real socket, for the SSE stream."""
    async with serving(create_app(settings, pool, nc, outbox.Relay(pool, nc.jetstream()))) as url:
        yield url


async def test_scoped_token_gets_only_its_apps_events(served: str, tokens, nc: nats.NATS, created, uid) -> None:
    pay, web = created.app(f"payments-ev-{uid}"), created.app(f"web-ev-{uid}")
    created.endpoint_subjects += [subjects.endpoints(pay), subjects.endpoints(web)]
    async with httpx.AsyncClient(base_url=served, timeout=10,
                                 headers={"Authorization": f"Bearer {tokens['payments-viewer']}"}) as http:
        async with http.stream("GET", "/v1/events") as r:
            assert r.status_code == 200
            lines = r.aiter_lines()
            assert await anext(lines) == ": subscribed"
            for app in (web, pay):  # web first: had it passed, it would be the first event
                await nc.publish(subjects.endpoints(app),
                                 messages.encode(messages.EndpointsChanged(app=app, seq=1, endpoints=[])))
            data = None
            while data is None:
                line = await anext(lines)
                if line.startswith("data: "):
                    data = json.loads(line.removeprefix("data: "))
    assert data["app"] == pay


def _basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"anyone:{token}".encode()).decode()


async def test_the_three_header_forms(client_as, tokens) -> None:
    t = tokens["viewer"]
    for header in (f"Bearer {t}", f"token={t}", _basic(t)):
        r = await client_as(None, headers={"Authorization": header}).get("/v1/apps")
        assert r.status_code == 200, header.split()[0]
    for header in ("Bearer noops_nope", "token=noops_nope", _basic("noops_nope"), f"Digest {t}"):
        r = await client_as(None, headers={"Authorization": header}).get("/v1/apps")
        assert r.status_code == 401 and "www-authenticate" in r.headers, header.split()[0]


async def test_env_values_are_redacted_for_who_may_not_change_the_app(client_as, two_apps) -> None:
    pay, web, _ = two_apps

    async def env_seen(caller: str, app: str) -> list[dict]:
        c = client_as(caller)
        one = (await c.get(f"/v1/apps/{app}")).json()["spec"]["env"]
        listed = next(a for a in (await c.get("/v1/apps")).json() if a["id"] == app)["spec"]["env"]
        history = [v["spec"]["env"] for v in (await c.get(f"/v1/apps/{app}/versions")).json()]
        return [one, listed, *history]

    redacted = {k: REDACTED for k in SECRET_ENV}
    assert all(e == redacted for e in await env_seen("viewer", web))
    assert all(e == redacted for e in await env_seen("payments-viewer", pay))
    assert all(e == SECRET_ENV for e in await env_seen("operator", web))
    assert all(e == SECRET_ENV for e in await env_seen("payments", pay))


async def test_audit_rows_and_history_name_the_token(client_as, pool: asyncpg.Pool, created, uid: str) -> None:
    app, host = created.app(f"audit-{uid}"), f"audit-h-{uid}"
    created.hosts.append(host)
    await pool.execute("INSERT INTO hosts (id, cpus, mem_mb, last_seen) VALUES ($1, 4, 8192, now())", host)
    op, admin = client_as("operator"), client_as("admin")
    assert (await op.post("/v1/apps", json=spec(app))).status_code == 201
    assert (await op.patch(f"/v1/apps/{app}", json={"instances": 3})).status_code == 200
    assert (await op.post(f"/v1/apps/{app}/restart")).status_code == 202
    assert (await admin.post(f"/v1/hosts/{host}/drain")).status_code == 200
    await pool.execute("INSERT INTO deployments (app, from_version, to_version, state) "
                       "VALUES ($1, 2, 3, 'running')", app)  # as the placer opens one for version 3
    assert (await op.post(f"/v1/apps/{app}/deployment/cancel", json={"rollback": False})).status_code == 200
    assert (await op.delete(f"/v1/apps/{app}")).status_code == 202

    rows = (await admin.get("/v1/audit", params={"target": app})).json()
    assert [(r["token"], r["action"]) for r in reversed(rows)] == [
        ("test-operator", "app.create"), ("test-operator", "app.scale"), ("test-operator", "app.restart"),
        ("test-operator", "deployment.cancel"), ("test-operator", "app.delete")]
    drained = (await admin.get("/v1/audit", params={"target": host})).json()
    assert [(r["token"], r["action"], r["detail"]["value"]) for r in drained] == [("admin", "host.drain", True)]
    assert (await admin.get("/v1/audit", params={"token": "test-operator", "action": "app.scale",
                                                 "target": app})).json()[0]["detail"]["instances"] == 3
    versions = (await admin.get(f"/v1/apps/{app}/versions")).json()
    assert [(v["version"], v["created_by"]) for v in versions] == [(3, "test-operator"), (2, "test-operator"),
                                                                    (1, "test-operator")]
    deps = (await admin.get(f"/v1/apps/{app}/deployments")).json()
    assert [(d["to_version"], d["created_by"]) for d in deps] == [(3, "test-operator")]


async def test_added_capabilities_need_an_admin(client_as, created, uid: str) -> None:
    app = created.app(f"caps-{uid}")
    body = spec(app, security={"cap_add": ["NET_BIND_SERVICE"]})
    r = await client_as("operator").post("/v1/apps", json=body)
    assert r.status_code == 403
    assert [d["field"] for d in r.json()["details"]] == ["security.cap_add"]
    bulk = await client_as("operator").post("/v1/apps/bulk", json=[spec(f"{app}-x"), body])
    assert (bulk.status_code, [d["field"] for d in bulk.json()["details"]]) == (403, ["1.security.cap_add"])
    assert (await client_as("admin").post("/v1/apps", json=body)).status_code == 201
    put = await client_as("operator").put(f"/v1/apps/{app}", json={"image": "nginx:2", "security": body["security"]})
    assert put.status_code == 403
    assert (await client_as("operator").put(f"/v1/apps/{app}", json={"image": "nginx:2"})).status_code == 200


async def test_token_lifecycle(client_as, created, uid: str) -> None:
    admin, name = client_as("admin"), f"ci-{uid}"
    created.tokens.append(name)
    made = await admin.post("/v1/tokens", json={"name": name, "role": "viewer", "apps": "payments-*",
                                                "expires_in_s": 3600})
    assert made.status_code == 201, made.text
    secret = made.json()["token"]
    assert secret.startswith("noops_") and made.json()["created_by"] == "admin"
    assert (await admin.post("/v1/tokens", json={"name": name, "role": "viewer"})).status_code == 409
    listed = next(t for t in (await admin.get("/v1/tokens")).json() if t["name"] == name)
    assert listed["active"] and listed["apps"] == "payments-*" and "token" not in listed and "hash" not in listed
    assert secret not in json.dumps((await admin.get("/v1/tokens")).json())
    mine = client_as(None, headers={"Authorization": f"Bearer {secret}"})
    assert (await mine.get("/v1/apps")).status_code == 200
    assert (await admin.delete(f"/v1/tokens/{name}")).status_code == 200
    assert (await mine.get("/v1/apps")).status_code == 401          # at once: no cache
    assert (await admin.delete(f"/v1/tokens/{name}")).status_code == 404
    audit = (await admin.get("/v1/audit", params={"target": name})).json()
    assert [(r["token"], r["action"]) for r in audit] == [("admin", "token.revoke"), ("admin", "token.create")]
    for bad in ({"name": "x", "role": "root"}, {"name": "Bad Name", "role": "viewer"},
                {"name": "x", "role": "viewer", "apps": "pay?"},
                {"name": "x", "role": "viewer", "expires_in_s": 5, "expires_at": "2030-01-01T00:00:00Z"},
                {"name": "x", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z"}):
        assert (await admin.post("/v1/tokens", json=bad)).status_code == 422, bad
