"""The gateway's writes to the task log.  Each is one transaction that changes desired state,
records the version and enqueues a DeployRequest in the outbox, so the request is published
if and only if the change committed, with an audit row naming the token (``by``) that made it.
The caller kicks the relay after commit."""
from __future__ import annotations

import json
import uuid

import asyncpg

from libs import db, messages, outbox, subjects
from libs.appspec import AppSpec
from services.gateway import checks
from services.gateway.tokenstore import audit
from services.gateway.errors import ApiError, not_found


def _deploy_request(app_id: str, reason: str) -> tuple[str, str, messages.Msg]:
    # A fresh msg id per change: JetStream de-duplicates only re-publishes of this very row.
    return subjects.deploy(app_id), f"deploy:{app_id}:{uuid.uuid4().hex}", messages.DeployRequest(app=app_id, reason=reason)


async def _deploy(conn: asyncpg.Connection, app_id: str, reason: str) -> None:
    await outbox.enqueue(conn, [_deploy_request(app_id, reason)])


def _spec_json(spec: AppSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), separators=(",", ":"))


async def _limits(conn: asyncpg.Connection, q: db.Queries, max_instances: int) -> checks.Limits:
    row = await conn.fetchrow(q.host_limits)
    return checks.Limits(max_instances, row["cpus"], row["mem_mb"])


async def _check(conn: asyncpg.Connection, q: db.Queries, spec: AppSpec, max_instances: int) -> None:
    problems = checks.problems(spec, await _limits(conn, q, max_instances))
    if problems:
        raise ApiError(422, "invalid app spec", problems)


async def create(pool: asyncpg.Pool, q: db.Queries, spec: AppSpec, *, max_instances: int, by: str) -> int:
    """Create ``spec.id`` (or revive it if deleted); returns the new version.  409 if it is live."""
    async with pool.acquire() as conn, conn.transaction():
        await _check(conn, q, spec, max_instances)
        row = await conn.fetchrow(q.create_app, spec.id, _spec_json(spec), spec.instances)
        if row is None:
            raise ApiError(409, f"app {spec.id!r} already exists")
        await conn.execute(q.insert_version, spec.id, row["version"], by)
        await audit(conn, q, by, "app.create", spec.id, {"version": row["version"]})
        await _deploy(conn, spec.id, "created")
        return row["version"]


async def create_many(pool: asyncpg.Pool, q: db.Queries, specs: list[AppSpec], *,
                      max_instances: int, by: str) -> list[int]:
    """Create every spec or none, in one transaction; returns the new versions in request order.
    Problems name the item's index (``"3.resources.cpus"``); 409 if any id is live."""
    first: dict[str, int] = {}
    problems = []
    for i, spec in enumerate(specs):
        if first.setdefault(spec.id, i) != i:
            problems.append({"field": f"{i}.id", "reason": f"{spec.id!r} is also item {first[spec.id]}"})
    async with pool.acquire() as conn, conn.transaction():
        limits = await _limits(conn, q, max_instances)
        problems += [{"field": f"{i}.{p['field']}", "reason": p["reason"]}
                     for i, spec in enumerate(specs) for p in checks.problems(spec, limits)]
        if problems:
            raise ApiError(422, "invalid app spec", problems)
        versions: dict[int, int] = {}
        # In id order, so two overlapping bulk requests take the row locks in one order (no deadlock).
        for i in sorted(range(len(specs)), key=lambda k: specs[k].id):
            spec = specs[i]
            row = await conn.fetchrow(q.create_app, spec.id, _spec_json(spec), spec.instances)
            if row is None:
                raise ApiError(409, f"app {spec.id!r} already exists", [{"field": f"{i}.id", "reason": "live app"}])
            await conn.execute(q.insert_version, spec.id, row["version"], by)
            await audit(conn, q, by, "app.create", spec.id, {"version": row["version"], "bulk": True})
            versions[i] = row["version"]
        await outbox.enqueue(conn, [_deploy_request(s.id, "created") for s in specs])
        return [versions[i] for i in range(len(specs))]


async def update(pool: asyncpg.Pool, q: db.Queries, spec: AppSpec, *, max_instances: int, by: str) -> int:
    """Replace the spec of a live app with a new version."""
    async with pool.acquire() as conn, conn.transaction():
        await _check(conn, q, spec, max_instances)
        row = await conn.fetchrow(q.update_app, spec.id, _spec_json(spec), spec.instances)
        if row is None:
            raise not_found("app", spec.id)
        await conn.execute(q.insert_version, spec.id, row["version"], by)
        await audit(conn, q, by, "app.update", spec.id, {"version": row["version"]})
        await _deploy(conn, spec.id, "updated")
        return row["version"]


async def scale(pool: asyncpg.Pool, q: db.Queries, app_id: str, instances: int, *, max_instances: int,
                by: str) -> int:
    problems = checks.instance_problems(instances, max_instances)
    if problems:
        raise ApiError(422, "invalid app spec", problems)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(q.scale_app, app_id, instances)
        if row is None:
            raise not_found("app", app_id)
        await conn.execute(q.insert_version, app_id, row["version"], by)
        await audit(conn, q, by, "app.scale", app_id, {"version": row["version"], "instances": instances})
        await _deploy(conn, app_id, "scaled")
        return row["version"]


async def delete(pool: asyncpg.Pool, q: db.Queries, app_id: str, *, by: str) -> None:
    """Mark deleted; the placer stops the instances when it sees the request."""
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchrow(q.delete_app, app_id) is None:
            raise not_found("app", app_id)
        await audit(conn, q, by, "app.delete", app_id)
        await _deploy(conn, app_id, "deleted")
