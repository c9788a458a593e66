"""The first tokens of a cluster, kept in files: ``make up`` (devtools/cluster.py) and the test
fixtures call ``ensure_token_file`` for the admin token (and a viewer token for Prometheus'
service discovery).  A file whose token is still valid is reused; otherwise a new token takes
the name (the old one revoked) and the file is rewritten, mode 0600, atomically."""
from __future__ import annotations

import os
from pathlib import Path

import asyncpg

from libs import db
from services.gateway import tokenstore
from services.gateway.access import Role, token_hash


def write_secret(path: Path, secret: str) -> None:
    """Readable by its owner only, from the first byte on (no window with a wider mode)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    os.replace(tmp, path)


def read_secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


async def ensure_token_file(pool: asyncpg.Pool, path: Path, *, name: str, role: Role,
                            apps: str | None = None) -> tuple[str, bool]:
    """(secret, created): the token in ``path`` if the database still knows it under ``name``,
    else a fresh one written there.  Migrates first: this may run before any service started."""
    await db.migrate(pool)
    q = db.Queries("access")
    secret = read_secret(path)
    if secret is not None and await pool.fetchval(q.token_name_active, name, token_hash(secret)) is not None:
        return secret, False
    async with pool.acquire() as conn, conn.transaction():
        await tokenstore.revoke(conn, q, name, by="bootstrap")
        made = await tokenstore.create(conn, q, name=name, role=role, apps=apps, expires_at=None,
                                       created_by="bootstrap")
    write_secret(path, made["token"])
    return made["token"], True


async def ensure_cluster_tokens(dsn: str, directory: Path) -> dict[str, Path]:
    """The admin token (``admin-token``) and Prometheus' viewer token (``prometheus-token``)."""
    pool = await db.connect(dsn, min_size=1, max_size=2)
    try:
        out = {}
        for file, name, role in (("admin-token", "admin", Role.admin), ("prometheus-token", "prometheus", Role.viewer)):
            await ensure_token_file(pool, directory / file, name=name, role=role)
            out[name] = directory / file
        return out
    finally:
        await pool.close()
