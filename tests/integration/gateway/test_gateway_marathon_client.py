"""The real PyPI ``marathon`` client (0.13, as deploy scripts use it) against the gateway over a
socket: every call returns what the client expects without raising.  The test plays the placer
(instances, a deployment) where a call needs them."""
from __future__ import annotations

import asyncio
import collections
import collections.abc
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
import pytest
from fastapi import FastAPI

# marathon 0.13 predates Python 3.10, which removed the collections aliases:
# aliased here, before the import, not in noops.
collections.Iterable = collections.abc.Iterable  # type: ignore[attr-defined]
import marathon  # noqa: E402
from marathon.models import MarathonApp, MarathonHealthCheck  # noqa: E402
from marathon.models.container import MarathonContainer, MarathonContainerPortMapping, MarathonDockerContainer  # noqa: E402

from services.gateway.marathon import ids  # noqa: E402
from tests.support.serve import serving  # noqa: E402

T = TypeVar("T")


async def call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """The client is synchronous (requests): each call runs in a thread, the gateway on this loop."""
    return await asyncio.to_thread(fn, *args, **kw)


async def _run(pool: asyncpg.Pool, created, app_id: str, start: int, n: int) -> list[str]:
    version = await pool.fetchval("SELECT version FROM apps WHERE id = $1", app_id)
    out = []
    for i in range(start, start + n):
        iid = f"{app_id}-{i:012x}"
        created.instances.append(iid)
        await pool.execute("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, ip, healthy) "
                           "VALUES ($1, $2, $3, 'mc-host', 1, 0.1, 32, 'RUNNING', $4, true)",
                           iid, app_id, version, f"198.18.8.{i + 1}")
        out.append(iid)
    return out


async def test_a_deploy_script_runs_unchanged(gateway_app: FastAPI, tokens: dict[str, str], pool: asyncpg.Pool,
                                              created, uid: str) -> None:
    mid = f"/mc-{uid}/web"
    app_id = created.app(ids.to_noops(mid))
    async with serving(gateway_app) as url:
        c = marathon.MarathonClient(url, auth_token=tokens["operator"], timeout=10)
        assert await call(c.ping) == b"pong"
        info = await call(c.get_info)
        assert info.version and info.marathon_config is not None
        assert "leader" in await call(c.get_leader)

        definition = MarathonApp(
            cpus=0.1, mem=32, instances=2, labels={"HAPROXY_GROUP": "external"},
            container=MarathonContainer(docker=MarathonDockerContainer(image="nginx:1.27", network="BRIDGE"),
                                        port_mappings=[MarathonContainerPortMapping(container_port=80, name="http")]),
            health_checks=[MarathonHealthCheck(protocol="HTTP", path="/", port_index=0, interval_seconds=5)])
        made = await call(c.create_app, mid, definition)
        assert made is not False and made.id == mid and made.instances == 2
        assert made.health_checks[0].path == "/" and made.container.docker.image == "nginx:1.27"

        waiting = [i for i in await call(c.list_queue) if i.app.id == mid]
        assert [i.count for i in waiting] == [2] and waiting[0].delay.time_left_seconds == 0
        await call(c.reset_delay, mid)
        first = await _run(pool, created, app_id, 0, 2)
        assert [i for i in await call(c.list_queue) if i.app.id == mid] == []
        got = await call(c.get_app, mid, embed_tasks=True)
        assert got.tasks_running == 2 and sorted(t.id for t in got.tasks) == first
        assert got.tasks[0].health_check_results[0].alive is True and got.tasks[0].started_at is not None
        apps = await call(c.list_apps, embed_tasks=True, app_id=f"mc-{uid}")
        assert [a.id for a in apps] == [mid] and len(apps[0].tasks) == 2
        tasks = await call(c.list_tasks, mid)
        assert sorted(t.id for t in tasks) == first and tasks[0].ip_addresses[0].ip_address.startswith("198.18.8.")

        up = await call(c.scale_app, mid, instances=3)
        assert set(up) == {"deploymentId", "version"}
        down = await call(c.scale_app, mid, delta=-1)
        assert down["deploymentId"] == f"{app_id}.3"
        killed = await call(c.kill_task, mid, first[0], scale=True)
        assert killed["deploymentId"] == f"{app_id}.4"
        assert (await call(c.get_app, mid)).instances == 1
        assert await call(c.kill_given_tasks, [first[1]])
        assert (await call(c.restart_app, mid))["deploymentId"] == f"{app_id}.5"

        # A script's usual update: read the app, change it, send the whole object back.
        current = await call(c.get_app, mid, embed_tasks=True)
        current.cmd = "nginx -g 'daemon off;'"
        current.instances = 2
        updated = await call(c.update_app, mid, current)
        assert updated["deploymentId"] == f"{app_id}.6"
        back = await call(c.get_app, mid)
        assert back.cmd == "nginx -g 'daemon off;'" and back.instances == 2 and back.labels == made.labels

        await pool.execute("INSERT INTO deployments (app, from_version, to_version) VALUES ($1, 5, 6)", app_id)
        deps = [d for d in await call(c.list_deployments) if d.affected_apps == [mid]]
        assert [d.id for d in deps] == [f"{app_id}.6"] and deps[0].current_actions[0].app == mid
        assert await call(c.delete_deployment, deps[0].id, force=True) == {}

        versions = await call(c.list_versions, mid)
        assert len(versions) == 6 and versions[-1] == made.version
        old = await call(c.get_version, mid, made.version)
        assert old.instances == 2 and old.cmd is None and old.health_checks[0].path == "/"
        rolled = await call(c.rollback_app, mid, made.version)
        assert rolled["deploymentId"] == f"{app_id}.7"
        assert (await call(c.get_app, mid)).cmd is None

        assert set(await call(c.delete_app, mid)) == {"deploymentId", "version"}
        with pytest.raises(marathon.exceptions.NotFoundError):
            await call(c.get_app, mid)
        with pytest.raises(marathon.exceptions.MarathonHttpError) as refused:
            bad = MarathonApp(cpus=0.1, mem=32, container=MarathonContainer(
                docker=MarathonDockerContainer(image="nginx:1.27", privileged=True)))
            await call(c.create_app, f"/mc-{uid}/bad", bad)
        assert refused.value.status_code == 422
        assert refused.value.error_details[0]["path"] == "/container/docker/privileged"
