"""The first tokens: the file `make up` (and the session fixtures) write, and the command a real
installation runs against its database."""
from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import asyncpg

from devtools.cluster import ClusterConfig
from libs import db
from services.gateway import bootstrap, tokenstore
from services.gateway.access import Role


async def test_bootstrap_writes_a_0600_file_and_reuses_it_while_valid(pool: asyncpg.Pool, tmp_path: Path,
                                                                      created, uid: str) -> None:
    name, path = f"boot-{uid}", tmp_path / "secrets" / "admin-token"
    created.tokens.append(name)
    secret, made = await bootstrap.ensure_token_file(pool, path, name=name, role=Role.admin)
    assert made and path.read_text().strip() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    q = db.Queries("access")
    assert (await tokenstore.lookup(pool, q, secret)).role is Role.admin

    again, made_again = await bootstrap.ensure_token_file(pool, path, name=name, role=Role.admin)
    assert (again, made_again) == (secret, False)

    async with pool.acquire() as conn, conn.transaction():
        await tokenstore.revoke(conn, q, name, by="test")
    fresh, made_fresh = await bootstrap.ensure_token_file(pool, path, name=name, role=Role.admin)
    assert made_fresh and fresh != secret and path.read_text().strip() == fresh
    assert await tokenstore.lookup(pool, q, secret) is None


def test_the_session_made_its_tokens_like_make_up(cluster_cfg: ClusterConfig) -> None:
    for path in (cluster_cfg.admin_token_file, cluster_cfg.prometheus_token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().startswith("noops_")


async def _cli(cluster_cfg: ClusterConfig, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.gateway.tokens", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "NOOPS_DB_DSN": cluster_cfg.db_dsn})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_cli_creates_lists_and_revokes(cluster_cfg: ClusterConfig, pool: asyncpg.Pool, created,
                                             uid: str) -> None:
    name = f"cli-{uid}"
    created.tokens.append(name)
    rc, out, err = await _cli(cluster_cfg, "create", "--name", name, "--role", "operator", "--apps", "web-*")
    assert rc == 0, err
    who = await tokenstore.lookup(pool, db.Queries("access"), out.strip())
    assert (who.name, who.role, who.apps) == (name, Role.operator, "web-*")
    rc, out, _ = await _cli(cluster_cfg, "list")
    assert rc == 0 and f'"name": "{name}"' in out and "noops_" not in out
    assert (await _cli(cluster_cfg, "create", "--name", name))[0] == 1            # a live name: refused, no traceback
    assert (await _cli(cluster_cfg, "revoke", "--name", name))[0] == 0
    rc, _, err = await _cli(cluster_cfg, "revoke", "--name", name)
    assert rc == 1 and "no live token" in err and "Traceback" not in err
    rc, _, err = await _cli(cluster_cfg, "create", "--name", "x", "--apps", "bad?")
    assert rc == 2 and "Traceback" not in err
