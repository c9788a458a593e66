"""What the /v2 routes read: the same task-log queries as /v1 (apps_view, lb_ports) plus the
few of libs/queries/marathon.sql, shaped by ``shapes``.  A handful of queries per request
whatever the number of apps (no query per app), so /v2/apps with every task stays fast."""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from libs import db
from libs.appspec import AppSpec
from services.gateway.access import Principal, spec_for
from services.gateway.marathon import shapes


def _service_ports(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows:
        out[r["app"]][r["port_name"]] = r["port"]
    return out


def _by_app(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["app"]].append(r)
    return out


async def apps(conn: asyncpg.Connection, q: db.Queries, who: Principal, app_id: str | None = None, *,
               embed_tasks: bool, embed_failure: bool) -> list[dict[str, Any]]:
    """Marathon apps the token sees ($app_id None: all live apps), sorted by id."""
    rows = await conn.fetch(q.apps_view, app_id)
    ports = _service_ports(await conn.fetch(q.lb_ports, app_id))
    tasks = _by_app(await conn.fetch(q.live_tasks, app_id))
    times = {r["app"]: r["created_at"] for r in await conn.fetch(q.version_times, app_id)}
    return [shapes.app(r, spec_for(who, r["id"], json.loads(r["spec"])), version_at=times.get(r["id"]),
                       service_ports=ports.get(r["id"], {}), tasks=tasks.get(r["id"], []),
                       embed_tasks=embed_tasks, embed_failure=embed_failure)
            for r in rows if who.sees(r["id"])]


async def tasks(conn: asyncpg.Connection, q: db.Queries, who: Principal, app_id: str | None = None
                ) -> list[dict[str, Any]]:
    ports = _service_ports(await conn.fetch(q.lb_ports, app_id))
    return [shapes.task(r, service_ports=ports.get(r["app"], {}))
            for r in await conn.fetch(q.live_tasks, app_id) if who.sees(r["app"])]


async def current(conn: asyncpg.Connection, q: db.Queries, app_id: str
                  ) -> tuple[AppSpec, dict[str, int]] | None:
    """The live app's spec (the base of a partial update) and its assigned service ports."""
    rows = await conn.fetch(q.apps_view, app_id)
    if not rows:
        return None
    ports = _service_ports(await conn.fetch(q.lb_ports, app_id))
    return AppSpec.model_validate_json(rows[0]["spec"]), ports.get(app_id, {})


async def result(conn: asyncpg.Connection, q: db.Queries, app_id: str, version: int) -> dict[str, Any]:
    """``{"deploymentId", "version"}`` of a write that made ``version``."""
    return shapes.deployment_result(app_id, version, await conn.fetchval(q.version_time, app_id, version))
