"""Deployment and host controls: each one transaction that changes desired state and queues a
deploy request (outbox) for the apps concerned, with an audit row naming the token (``by``);
the placer does the rest."""
from __future__ import annotations

import uuid

import asyncpg

from libs import db, messages, outbox, subjects
from services.gateway.errors import ApiError, not_found
from services.gateway.tokenstore import audit


async def _deploy(conn: asyncpg.Connection, apps: list[str], reason: str) -> None:
    await outbox.enqueue(conn, [(subjects.deploy(a), f"deploy:{a}:{uuid.uuid4().hex}",
                                 messages.DeployRequest(app=a, reason=reason)) for a in apps])


async def _new_version(conn: asyncpg.Connection, q: db.Queries, row: asyncpg.Record | None, app_id: str,
                       reason: str, by: str) -> int:
    if row is None:
        raise not_found("app", app_id)
    await conn.execute(q.insert_version, app_id, row["version"], by)
    await _deploy(conn, [app_id], reason)
    return row["version"]


async def restart(pool: asyncpg.Pool, q: db.Queries, app_id: str, *, by: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        version = await _new_version(conn, q, await conn.fetchrow(q.restart_app, app_id), app_id, "restart", by)
        await audit(conn, q, by, "app.restart", app_id, {"version": version})
        return version


async def rollback(pool: asyncpg.Pool, q: db.Queries, app_id: str, version: int, *, by: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(q.version_exists, app_id, version) is None:
            if await conn.fetchval(q.app_created_at, app_id) is None:
                raise not_found("app", app_id)
            raise ApiError(422, "invalid request", [{"field": "version", "reason": f"app {app_id!r} has no version {version}"}])
        new = await _new_version(conn, q, await conn.fetchrow(q.rollback_to, app_id, version), app_id,
                                 f"rollback to {version}", by)
        await audit(conn, q, by, "app.rollback", app_id, {"version": new, "spec_of_version": version})
        return new


async def deployment_state(pool: asyncpg.Pool, q: db.Queries, app_id: str, action: str, *,
                           rollback: bool = False, by: str) -> dict:
    """pause / resume / cancel the app's open deployment."""
    async with pool.acquire() as conn, conn.transaction():
        # The app's row lock is the placer's too: a pause cannot interleave with its decision.
        await conn.fetchval(q.desired_count, app_id)
        dep = await conn.fetchrow(q.open_deployment, app_id)
        if dep is None:
            if await conn.fetchval(q.app_created_at, app_id) is None:
                raise not_found("app", app_id)
            raise ApiError(409, f"app {app_id!r} has no deployment in progress")
        if action == "pause":
            await conn.execute(q.set_deployment_state, dep["id"], "paused", "paused by operator")
        elif action == "resume":
            await conn.execute(q.set_deployment_state, dep["id"], "running", "")
        else:
            why = "cancelled by operator" + (f"; rolling back to version {dep['from_version']}" if rollback else "")
            await conn.execute(q.set_deployment_state, dep["id"], "cancelled", why)
            if rollback:
                if dep["from_version"] is None:
                    raise ApiError(409, f"app {app_id!r} has no earlier good version to roll back to")
                await _new_version(conn, q, await conn.fetchrow(q.rollback_to, app_id, dep["from_version"]),
                                   app_id, "cancel with rollback", by)
        await audit(conn, q, by, f"deployment.{action}", app_id, {"deployment": dep["id"], "rollback": rollback})
        await _deploy(conn, [app_id], action)
        return {"id": dep["id"], "app": app_id, "action": action, "rollback": rollback}


async def reset_delay(pool: asyncpg.Pool, q: db.Queries, app_id: str, *, by: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchrow(q.reset_delay, app_id) is None:
            raise not_found("app", app_id)
        await audit(conn, q, by, "app.reset_delay", app_id)
        await _deploy(conn, [app_id], "delay reset")


async def kill_instances(pool: asyncpg.Pool, q: db.Queries, app_id: str, ids: list[str], *, scale: bool,
                         by: str) -> list[str]:
    """Stop these instances; with ``scale`` the desired count drops by as many (no replacement)."""
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(q.app_created_at, app_id) is None:
            raise not_found("app", app_id)
        marked = [r["id"] for r in await conn.fetch(q.request_kill, app_id, ids)]
        unknown = sorted(set(ids) - set(marked))
        if unknown:
            raise ApiError(422, "invalid request", [{"field": "instances", "reason":
                                                     f"not live instances of {app_id!r}: {', '.join(unknown)}"}])
        if scale:
            current = await conn.fetchval(q.desired_count, app_id)
            row = await conn.fetchrow(q.scale_app, app_id, max(0, current - len(marked)))
            await conn.execute(q.insert_version, app_id, row["version"], by)
        await audit(conn, q, by, "app.kill", app_id, {"instances": marked, "scale": scale})
        await _deploy(conn, [app_id], "kill")
        return marked


async def host_flag(pool: asyncpg.Pool, q: db.Queries, host: str, flag: str, value: bool, *, by: str) -> dict:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(q.set_host_flag, host, flag, value)
        if row is None:
            raise not_found("host", host)
        apps = [r["app"] for r in await conn.fetch(q.apps_on_host, host)]
        await audit(conn, q, by, f"host.{'drain' if flag == 'draining' else 'cordon'}", host,
                    {"value": value, "apps_affected": len(apps)})
        await _deploy(conn, apps, f"host {host} {flag}={value}")
        return {"id": host, "draining": row["draining"], "cordoned": row["cordoned"], "apps_affected": len(apps)}
