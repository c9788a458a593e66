"""Task-log rows for fan-out tests (apps, versions, instances), removed again at teardown."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import asyncpg


@dataclass
class TaskRows:
    pool: asyncpg.Pool
    apps: list[str] = field(default_factory=list)

    async def app(self, app: str, ports: dict[str, int]) -> None:
        spec = json.dumps({"id": app, "ports": [{"name": n, "container_port": p} for n, p in ports.items()]})
        await self.pool.execute("INSERT INTO apps (id, version, spec, instances) VALUES ($1, 1, $2::jsonb, 0)", app, spec)
        await self.pool.execute("INSERT INTO app_versions (app, version, spec) VALUES ($1, 1, $2::jsonb)", app, spec)
        self.apps.append(app)

    async def instance(self, app: str, iid: str, ip: str, state: str = "RUNNING", host: str = "h1") -> None:
        await self.pool.execute(
            "INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, ip) "
            "VALUES ($1, $2, 1, $3, 1, 0.1, 32, $4, $5) "
            "ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, ip = EXCLUDED.ip", iid, app, host, state, ip)

    async def set_state(self, iid: str, state: str) -> None:
        await self.pool.execute("UPDATE instances SET state = $2 WHERE id = $1", iid, state)

    async def cleanup(self) -> None:
        if self.apps:
            await self.pool.execute("DELETE FROM instances WHERE app = ANY($1)", self.apps)
            await self.pool.execute("DELETE FROM app_versions WHERE app = ANY($1)", self.apps)
            await self.pool.execute("DELETE FROM apps WHERE id = ANY($1)", self.apps)
            await self.pool.execute("DELETE FROM lb_ports WHERE app = ANY($1)", self.apps)
