"""What the /v2 routes read, shaped by ``shapes``: a handful of queries per request whatever
the number of apps (no query per app), and each app version's ports shaped once, so /v2/apps
with every task stays fast (bench/marathon_apps.py)."""
from __future__ import annotations

import contextlib
import gc
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import asyncpg
import msgspec

from libs import db
from libs.appspec import AppSpec
from services.gateway.access import Principal, spec_for
from services.gateway.marathon import shapes


def _service_ports(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows:
        out[r["app"]][r["port_name"]] = r["port"]
    return out


@contextlib.contextmanager
def _no_gc():  # type: ignore[no-untyped-def]
    """Shaping 10,000 apps builds ~300,000 dicts and lists that all stay alive until the answer
    is encoded: the cyclic collector would walk the growing heap again and again (half the time
    of /v2/apps, bench/marathon_apps.py).  Paused only around synchronous code (no await: nothing
    else runs meanwhile); what it builds holds no cycles, so reference counting frees it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _tasks(task_rows: Iterable[Mapping[str, Any]], version_rows: Iterable[Mapping[str, Any]],
           sees: Callable[[str], bool], ports: Mapping[str, Mapping[str, int]]
           ) -> dict[str, list[tuple[Mapping[str, Any], dict[str, Any]]]]:
    """app -> [(live_tasks row, Marathon task)], oldest first."""
    specs = {(r["app"], r["version"]): shapes.run_spec(r, ports.get(r["app"], {})) for r in version_rows}
    out: dict[str, list[tuple[Mapping[str, Any], dict[str, Any]]]] = defaultdict(list)
    for r in task_rows:
        rs = specs.get((r["app"], r["version"]))
        if rs is not None and sees(r["app"]):
            out[r["app"]].append((r, shapes.task(r, rs)))
    for rows in out.values():
        rows.sort(key=lambda p: (p[0]["created_at"], p[0]["id"]))
    return out


async def _fetch_tasks(conn: asyncpg.Connection, q: db.Queries, app_id: str | None) -> tuple[list, list, dict]:
    ports = _service_ports(await conn.fetch(q.lb_ports, app_id))
    return await conn.fetch(q.live_tasks, app_id), await conn.fetch(q.task_versions, app_id), ports


async def apps(conn: asyncpg.Connection, q: db.Queries, who: Principal, app_id: str | None = None, *,
               embed_tasks: bool, embed_failure: bool) -> list[dict[str, Any]]:
    """Marathon apps the token sees ($app_id None: all live apps), sorted by id."""
    task_rows, version_rows, ports = await _fetch_tasks(conn, q, app_id)
    app_rows = await conn.fetch(q.marathon_apps, app_id)
    with _no_gc():
        tasks = _tasks(task_rows, version_rows, who.sees, ports)
        out = []
        for r in app_rows:
            if not who.sees(r["id"]):
                continue
            mine = tasks.get(r["id"], [])
            out.append(shapes.app(r, spec_for(who, r["id"], msgspec.json.decode(r["spec"])),
                                  service_ports=ports.get(r["id"], {}), tasks=[row for row, _ in mine],
                                  shaped=[t for _, t in mine] if embed_tasks else None, embed_failure=embed_failure))
        return out


async def tasks(conn: asyncpg.Connection, q: db.Queries, sees: Callable[[str], bool], app_id: str | None = None
                ) -> list[dict[str, Any]]:
    task_rows, version_rows, ports = await _fetch_tasks(conn, q, app_id)
    with _no_gc():
        return [t for rows in _tasks(task_rows, version_rows, sees, ports).values() for _, t in rows]


async def current(conn: asyncpg.Connection, q: db.Queries, app_id: str
                  ) -> tuple[AppSpec, dict[str, int]] | None:
    """The live app's spec (the base of a partial update) and its assigned service ports."""
    rows = await conn.fetch(q.marathon_apps, app_id)
    if not rows:
        return None
    ports = _service_ports(await conn.fetch(q.lb_ports, app_id))
    return AppSpec.model_validate_json(rows[0]["spec"]), ports.get(app_id, {})


async def result(conn: asyncpg.Connection, q: db.Queries, app_id: str, version: int) -> dict[str, Any]:
    """``{"deploymentId", "version"}`` of a write that made ``version``."""
    return shapes.deployment_result(app_id, version, await conn.fetchval(q.version_time, app_id, version))
