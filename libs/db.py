"""PostgreSQL access: pool with start-up retry, numbered migrations, named queries from .sql files."""
from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from libs import retry
from libs.settings import CommonSettings, SettingsError

log = logging.getLogger("noops.db")

_MIGRATION_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_NAME_RE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
# Any constant works, as long as every noops process uses the same one.
_MIGRATION_LOCK = 0x6E6F6F7073


class TaskLogUnavailable(RuntimeError):
    """PostgreSQL could not be reached or refused the statement for a transient reason."""


# Errors after which the same statement may succeed later; the classification lives in libs/retry.py.
TRANSIENT = retry.DB_TRANSIENT


# Plan every execution with the tables as they are now.  noops' statements are few and carry
# whole batches, so planning is cheap next to them; a generic plan, cached after five runs, keeps
# the choices made for the sizes of then: one made while the outbox was empty deleted from a
# 100,000-row backlog by sequential scan, 75 ms a batch, most of PostgreSQL's time (bench/RESULTS.md).
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}
# Index lookups priced near sequential reads (NOOPS_DB_RANDOM_PAGE_COST; PostgreSQL's default 4 is
# for spinning disks): with 4, a report batch of ~500 ids joined instances by hash over a
# sequential scan while the table grew from nothing to 100,000 rows -- 30-200 ms a batch, 10 of
# PostgreSQL's 11 CPU seconds in bench.placer_e2e (bench/RESULTS.md).
DEFAULT_RANDOM_PAGE_COST = 1.1


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pools' reset on release: nothing beyond asyncpg's own (an open transaction rolled back,
    listeners dropped).  Its default sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release, a round trip that doubled each ``pool.fetch`` (0.25 → 0.10 ms
    for ``SELECT 1`` here, and a third of the server's CPU for it).  noops leaves no session state
    on a pooled connection: settings are startup parameters (``server_settings``), advisory locks
    are per transaction (the leader's session lock has a connection of its own), cursors live in
    transactions, and ``remove_listener`` UNLISTENs."""


def application_name(service: str) -> str:
    """What a service's connections call themselves (pg_stat_activity; the writer named in outbox
    notifications, migration 0020)."""
    return f"noops-{service}"


def service_of(application_name: str) -> str:
    """The service an application name names ("" when it is not one of ours)."""
    return application_name.removeprefix("noops-") if application_name.startswith("noops-") else ""


async def connect(dsn: str, *, retry_max_s: float = 5.0, min_size: int = 1, max_size: int = 10,
                  command_timeout_s: float | None = 30.0, policy: retry.Policy | None = None,
                  random_page_cost: float = DEFAULT_RANDOM_PAGE_COST, service: str = "") -> asyncpg.Pool:
    """Open a pool, waiting (with a clear log line, no traceback) until PostgreSQL answers.
    ``service``: whose connections these are (their application name).

    ``command_timeout_s`` bounds every statement run through the pool (asyncpg cancels it and
    raises asyncio.TimeoutError, a transient error): a stuck lock or a network partition costs a
    bounded wait, never a loop hung forever.  A missing database or refused credentials are waited
    for too: at start they are most often a setup still in progress."""
    policy = policy or retry.Policy(cap_s=retry_max_s)

    def waitable(exc: BaseException) -> bool:
        return retry.is_transient(exc) or isinstance(exc, (
            asyncpg.exceptions.InvalidCatalogNameError, asyncpg.exceptions.InvalidAuthorizationSpecificationError))

    async def attempt() -> asyncpg.Pool:
        # A coroutine: tenacity wants one (a Pool is awaitable but not a coroutine).
        return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                         command_timeout=command_timeout_s, reset=keep_session,
                                         server_settings={**SERVER_SETTINGS, "random_page_cost": f"{random_page_cost:g}",
                                                          **({"application_name": application_name(service)} if service else {})})

    return await policy.until_ok(attempt, what="PostgreSQL", log=log, transient=waitable,
                                 extra={"dsn": _redact(dsn)})


async def connect_with(common: CommonSettings, **kwargs: object) -> asyncpg.Pool:
    """``connect`` with this process's settings (DSN, statement timeout, retry policy)."""
    return await connect(dsn_of(common), command_timeout_s=common.db_command_timeout_s,
                         policy=retry.Policy.for_connect(common), random_page_cost=common.db_random_page_cost,
                         **kwargs)  # type: ignore[arg-type]


def password_of(common: CommonSettings) -> str:
    """The password from NOOPS_DB_PASSWORD_FILE ("" when none is set); unreadable → SettingsError."""
    if not common.db_password_file:
        return ""
    try:
        return Path(common.db_password_file).read_text().strip()
    except OSError as exc:
        raise SettingsError(f"NOOPS_DB_PASSWORD_FILE={common.db_password_file}: {exc.strerror}") from None


def dsn_of(common: CommonSettings) -> str:
    """NOOPS_DB_DSN with the password file's password in it (the DSN as given when there is none)."""
    password = password_of(common)
    if not password:
        return common.db_dsn
    parts = urlsplit(common.db_dsn)
    user = parts.netloc.rpartition("@")[0].partition(":")[0] if "@" in parts.netloc else ""
    hostport = parts.netloc.rpartition("@")[2]
    netloc = f"{user}:{quote(password, safe='')}@{hostport}"
    return urlunsplit(parts._replace(netloc=netloc))


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
