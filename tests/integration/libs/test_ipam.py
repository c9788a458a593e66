"""IPAM mode `pool` against real PostgreSQL: concurrent placers never get the same address."""
from __future__ import annotations

import asyncio
import ipaddress

import asyncpg
import pytest

from libs import ipam

FIRST, SIZE, PREFIX = "198.19.128.10", 40, 20  # a block no simulated network uses for pools here


@pytest.fixture
async def pool_range(pool: asyncpg.Pool):
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM ipam_addresses")
        await ipam.add_range(conn, FIRST, str(ipaddress.ip_address(FIRST) + SIZE - 1), PREFIX)
    try:
        yield
    finally:
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM ipam_addresses")


async def test_allocate_is_idempotent_and_release_frees(pool: asyncpg.Pool, pool_range, uid: str) -> None:
    ids = [f"a{uid}-{i}" for i in range(3)]
    async with pool.acquire() as conn, conn.transaction():
        got = await ipam.allocate(conn, ids)
        again = await ipam.allocate(conn, ids)
    assert got == again and len(set(got.values())) == 3
    assert all(v.endswith(f"/{PREFIX}") for v in got.values())
    async with pool.acquire() as conn:
        assert await ipam.free(conn) == SIZE - 3
        async with conn.transaction():
            await ipam.release(conn, ids[:1])
        assert await ipam.free(conn) == SIZE - 2


async def test_rollback_gives_nothing_away(pool: asyncpg.Pool, pool_range, uid: str) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(ipam.PoolExhausted, match="address pool exhausted: 41 addresses needed"):
            async with conn.transaction():
                await ipam.allocate(conn, [f"x{uid}-{i}" for i in range(SIZE + 1)])
        assert await ipam.free(conn) == SIZE


async def test_concurrent_allocations_never_hand_out_an_address_twice(pool: asyncpg.Pool, pool_range,
                                                                      uid: str) -> None:
    """12 placers × 5 instances = 60 asks for 40 addresses, all at once, retrying while they
    make progress: every address goes to one instance, the surplus is refused."""
    results: dict[str, str] = {}
    refused = 0

    async def placer(k: int) -> None:
        nonlocal refused
        ids = [f"c{uid}-{k}-{i}" for i in range(5)]
        for _attempt in range(5):  # bounded: SKIP LOCKED may see rows another placer rolls back
            try:
                async with pool.acquire() as conn, conn.transaction():
                    got = await ipam.allocate(conn, ids)
                    # More work inside the transaction (a round trip), as a placer's commit has:
                    # the others interleave while this one still holds its rows.
                    await conn.fetchval("SELECT count(*) FROM ipam_addresses")
                results.update(got)
                return
            except ipam.PoolExhausted:
                continue  # bounded retry: the rows another placer rolled back are free again
        refused += 1

    await asyncio.gather(*(placer(k) for k in range(12)))
    assert len(results) == len(set(results.values()))  # no address twice
    assert len(results) <= SIZE and refused >= 4
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT instance, host(address) || '/' || prefix AS cidr FROM ipam_addresses "
                                "WHERE instance IS NOT NULL")
    assert {r["instance"]: r["cidr"] for r in rows} == results
