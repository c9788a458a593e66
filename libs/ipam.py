"""IPAM mode `pool`: container addresses from a range kept in PostgreSQL.

The placer calls ``allocate`` inside the transaction that commits its plan, so an address is
reserved exactly when the placement that carries it (``Placement.address``) is written, and
``release`` when the instance ends.  Both work in the caller's transaction and never commit.
No address is handed out twice: the row is the address, an instance holds at most one row
(unique index), and free rows are claimed with FOR UPDATE SKIP LOCKED.
"""
from __future__ import annotations

import ipaddress

import asyncpg

from libs.db import Queries

_Q: Queries | None = None


class PoolExhausted(Exception):
    """Fewer free addresses than instances asked; the text is shown to users."""


def _q() -> Queries:
    global _Q  # parsed once, lazily: nothing is read at import time
    if _Q is None:
        _Q = Queries("ipam")
    return _Q


async def add_range(conn: asyncpg.Connection, first: str, last: str, prefix: int) -> int:
    """Make ``first``..``last`` (inclusive) allocatable with netmask ``/prefix``; idempotent."""
    a, b = ipaddress.ip_address(first), ipaddress.ip_address(last)
    if b < a:
        raise ValueError(f"empty range {first}..{last}")
    await conn.execute(_q().add_range, str(a), int(b) - int(a) + 1, prefix)
    return int(b) - int(a) + 1


async def allocate(conn: asyncpg.Connection, instance_ids: list[str]) -> dict[str, str]:
    """instance → address in CIDR form.  An instance that holds one already keeps it.
    Raises PoolExhausted (the caller's transaction should roll back: nothing partial)."""
    ids = sorted(set(instance_ids))
    got = {r["instance"]: r["cidr"] for r in await conn.fetch(_q().held, ids)}
    want = [i for i in ids if i not in got]
    if want:
        taken = {r["instance"]: r["cidr"] for r in await conn.fetch(_q().take, want)}
        if len(taken) < len(want):
            free = await conn.fetchval(_q().free_count)
            raise PoolExhausted(f"address pool exhausted: {len(want)} addresses needed, "
                                f"{len(taken) + int(free or 0)} free")
        got.update(taken)
    return got


async def release(conn: asyncpg.Connection, instance_ids: list[str]) -> None:
    await conn.execute(_q().release, list(instance_ids))


async def free(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(_q().free_count))
