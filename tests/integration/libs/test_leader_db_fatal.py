"""libs/leader.py when PostgreSQL ends the lock connection's session (pg_terminate_backend: the
FATAL 57P01 a stopping server sends too) and the close has not been read yet: the connection
raises InternalClientError on every statement (tests/support/holdclose.py).  A standby polling
for the lock waits it out and still becomes leader later; the leader's check reports lost
leadership, not a crash.  (The standby crashed on it while only libs/leader.py's check knew it.)"""
from __future__ import annotations

import asyncio
import logging

import pytest

from libs import db
from libs.leader import Leadership, LostLeadership
from tests.support.holdclose import hold_close
from tests.support.wait import eventually


async def test_standby_waits_out_a_broken_lock_connection_and_leads_later(pool, cluster_cfg, caplog):
    caplog.set_level(logging.WARNING, logger="noops.leader")   # its warnings carry the error
    q = db.Queries("placer")
    async with hold_close(cluster_cfg.db_dsn) as proxy:
        leader = Leadership(proxy.dsn(cluster_cfg.db_dsn), q, "test-leader", poll_s=0.05)
        standby = Leadership(proxy.dsn(cluster_cfg.db_dsn), q, "test-standby", poll_s=0.05)
        waiting: asyncio.Task[int] | None = None
        try:
            first = await asyncio.wait_for(leader.acquire(), 10)
            waiting = asyncio.create_task(standby.acquire())
            await eventually(lambda: standby._conn is not None, timeout=10, what="the standby polling")
            await proxy.end_session(pool, standby._conn.get_server_pid())
            await eventually(lambda: waiting.done() or any("another operation" in getattr(r, "error", "")
                                                           for r in caplog.records), timeout=10,
                             what="the standby meeting its broken connection")
            assert not waiting.done(), waiting.exception()
            proxy.release()
            await leader.release()                      # the lock goes: the standby takes it
            assert await asyncio.wait_for(waiting, 10) > first
        finally:
            if waiting is not None and not waiting.done():
                waiting.cancel()
            await leader.release()
            await standby.release()


async def test_leader_check_reports_lost_leadership(pool, cluster_cfg):
    async with hold_close(cluster_cfg.db_dsn) as proxy:
        leader = Leadership(proxy.dsn(cluster_cfg.db_dsn), db.Queries("placer"), "test-leader")
        try:
            await asyncio.wait_for(leader.acquire(), 10)
            await proxy.end_session(pool, leader._conn.get_server_pid())
            with pytest.raises(LostLeadership, match="InternalClientError|another operation"):
                await asyncio.wait_for(leader.watch(interval_s=0.05), 10)
        finally:
            proxy.release()
            await leader.release()
