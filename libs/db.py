"""PostgreSQL access: pool with start-up retry, numbered migrations, named queries from .sql files."""
from __future__ import annotations

import asyncio
import logging
import re
from importlib import resources

import asyncpg

log = logging.getLogger("noops.db")

_MIGRATION_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_NAME_RE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
# Any constant works, as long as every noops process uses the same one.
_MIGRATION_LOCK = 0x6E6F6F7073


class TaskLogUnavailable(RuntimeError):
    """PostgreSQL could not be reached or refused the statement for a transient reason."""


TRANSIENT = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
             asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError,
             asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.TooManyConnectionsError)


# Plan every execution with the tables as they are now.  noops' statements are few and carry
# whole batches, so planning is cheap next to them; a generic plan, cached after five runs, keeps
# the choices made for the sizes of then: one made while the outbox was empty deleted from a
# 100,000-row backlog by sequential scan, 75 ms a batch, most of PostgreSQL's time (bench/RESULTS.md).
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


async def connect(dsn: str, *, retry_max_s: float = 5.0, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool, waiting (with a clear log line, no traceback) until PostgreSQL answers."""
    delay = 0.2
    while True:
        try:
            return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                             server_settings=SERVER_SETTINGS)
        except (*TRANSIENT, asyncpg.exceptions.InvalidCatalogNameError,
                asyncpg.exceptions.InvalidAuthorizationSpecificationError) as exc:
            log.warning("waiting for PostgreSQL", extra={"dsn": _redact(dsn), "error": str(exc) or type(exc).__name__,
                                                         "retry_in_s": round(delay, 2)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry_max_s)


def _redact(dsn: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", dsn)


def migration_files() -> list[tuple[int, str, str]]:
    out = []
    for entry in resources.files("libs").joinpath("migrations").iterdir():
        m = _MIGRATION_RE.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text()))
    return sorted(out)


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply the migrations not applied yet, in order, each in its own transaction.

    Several services start at once; an advisory lock makes them take turns, and the
    schema_migrations table makes a second run a no-op.
    """
    applied_now = []
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                               "version integer PRIMARY KEY, name text NOT NULL, "
                               "applied_at timestamptz NOT NULL DEFAULT now())")
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, sql in migration_files():
                if version in done:
                    continue
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
                applied_now.append(name)
    if applied_now:
        log.info("applied migrations", extra={"migrations": applied_now})
    return applied_now


class Queries:
    """Named queries from ``libs/queries/<file>.sql``; each starts with a ``-- name: foo`` line."""

    def __init__(self, *files: str) -> None:
        self._sql: dict[str, str] = {}
        for f in files:
            text = resources.files("libs").joinpath("queries", f"{f}.sql").read_text()
            parts = _NAME_RE.split(text)
            for name, body in zip(parts[1::2], parts[2::2]):
                if name in self._sql:
                    raise ValueError(f"query {name} defined twice")
                self._sql[name] = body.strip().rstrip(";")

    def __getattr__(self, name: str) -> str:
        try:
            return self._sql[name]
        except KeyError:
            raise AttributeError(f"no query named {name}") from None
