"""A throwaway task log for benchmarks that fill PostgreSQL directly: its own database, migrated,
dropped at the end; and the real gateway app over it with an admin token."""
from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

import asyncpg
from fastapi import FastAPI

from devtools import infra
from libs import db
from libs.settings import CommonSettings, GatewaySettings, HttpSettings
from services.gateway import tokenstore
from services.gateway.access import Role
from services.gateway.app import create_app


@contextlib.asynccontextmanager
async def throwaway(tag: str) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """(database name, pool) of a fresh, migrated database ``noops_bench_<tag>_<random>``."""
    name = f"noops_bench_{tag}_{uuid.uuid4().hex[:6]}"
    infra.ensure_postgres()
    infra.ensure_database(name, fresh=True)
    try:
        pool = await db.connect(infra.pg_dsn(name))
        try:
            await db.migrate(pool)
            yield name, pool
        finally:
            await pool.close()
    finally:
        infra.drop_database(name)


async def gateway(name: str, pool: asyncpg.Pool) -> tuple[FastAPI, str]:
    """The gateway app over database ``name`` (no NATS, no outbox relay: read routes only) and a
    new admin token's secret."""
    q = db.Queries("gateway", "control", "deadletters", "access", "drift", "marathon")
    async with pool.acquire() as conn, conn.transaction():
        token = (await tokenstore.create(conn, q, name="bench", role=Role.admin, apps=None, expires_at=None,
                                         created_by="bench"))["token"]
    common = dataclasses.replace(CommonSettings(), db_dsn=infra.pg_dsn(name))
    return create_app(GatewaySettings(common=common, http=HttpSettings()), pool, None, None), token  # type: ignore[arg-type]
