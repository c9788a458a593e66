"""The one retry policy (libs/retry.py) and the loop supervisor (libs/supervise.py)."""
from __future__ import annotations

import asyncio
import logging

import asyncpg
import nats.errors
import nats.js.errors
import pytest

from libs import db, retry
from libs.service import Health
from tests.support.wait import eventually

FAST = retry.Policy(base_s=0.001, cap_s=0.004)


@pytest.mark.parametrize("attempt, ceiling", [(1, 0.2), (2, 0.4), (3, 0.8), (7, 10.0), (60, 10.0), (0, 0.2)],
                         ids=["1", "2", "3", "capped", "far", "zero"])
def test_backoff_is_full_jitter_under_the_exponential_ceiling(attempt: int, ceiling: float) -> None:
    delays = [retry.DEFAULT.backoff(attempt) for _ in range(300)]
    assert all(0 <= d <= ceiling for d in delays)
    assert min(delays) < ceiling / 4 and max(delays) > ceiling * 3 / 4


@pytest.mark.parametrize("exc, transient", [
    (ConnectionRefusedError(), True), (asyncio.TimeoutError(), True),
    (asyncpg.exceptions.AdminShutdownError(), True), (asyncpg.exceptions.CrashShutdownError(), True),
    (asyncpg.exceptions.CannotConnectNowError(), True), (asyncpg.exceptions.TooManyConnectionsError(), True),
    (asyncpg.exceptions.SerializationError(), True), (asyncpg.exceptions.DeadlockDetectedError(), True),
    (asyncpg.exceptions.QueryCanceledError(), True), (asyncpg.InterfaceError("closed"), True),
    (asyncpg.exceptions.ConnectionDoesNotExistError(), True),
    (asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"), True),
    (asyncpg.exceptions.ProtocolError(), True), (asyncpg.exceptions.OutdatedSchemaCacheError("cached plan"), True),
    (nats.errors.NoRespondersError(), True), (nats.errors.ConnectionClosedError(), True),
    (nats.errors.TimeoutError(), True), (nats.js.errors.NoStreamResponseError(), True),
    (asyncpg.exceptions.UniqueViolationError(), False), (nats.errors.MaxPayloadError(), False),
    (ValueError("bad"), False), (KeyError("x"), False),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_transient_classification(exc: BaseException, transient: bool) -> None:
    assert retry.is_transient(exc) is transient


def test_db_transient_is_the_classification() -> None:
    assert db.TRANSIENT is retry.DB_TRANSIENT
    assert asyncpg.exceptions.AdminShutdownError in db.TRANSIENT


async def test_until_ok_waits_out_transient_errors_and_raises_others(caplog) -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("refused")
        return "ok"
    with caplog.at_level(logging.WARNING):
        assert await FAST.until_ok(flaky, what="the thing", log=logging.getLogger("t")) == "ok"
    waits = [r for r in caplog.records if r.getMessage() == "waiting for the thing"]
    assert len(waits) == 2 and not any(r.exc_info for r in waits)

    async def broken() -> None:
        raise ValueError("bug")
    with pytest.raises(ValueError):
        await FAST.until_ok(broken, what="x", log=logging.getLogger("t"))


async def test_a_crashed_loop_restarts_and_health_shows_it() -> None:
    health = Health()
    health.ready = True
    sup = health.supervisor(FAST)
    runs = []
    gate = asyncio.Event()

    async def crashing() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"crash {len(runs)}")
        await gate.wait()

    sup.start("worker", crashing)
    await eventually(lambda: len(runs) >= 3, timeout=5, interval=0.01, what="two restarts")
    state = health.loops.get("worker")
    assert (state.state, state.restarts, state.last_error) == ("running", 2, "RuntimeError: crash 2")
    ok, body = health.body()
    assert ok and body["loops"]["worker"]["restarts"] == 2
    await sup.cancel()


async def test_an_escalated_error_ends_the_wait_and_a_dead_loop_is_503() -> None:
    class Deposed(Exception):
        pass

    health = Health()
    health.ready = True
    sup = health.supervisor(FAST, escalate=(Deposed,))

    async def deposed() -> None:
        raise Deposed("fenced")

    async def forever() -> None:
        await asyncio.Event().wait()
    sup.start("forever", forever)
    sup.start("worker", deposed)
    with pytest.raises(Deposed):
        await asyncio.wait_for(sup.wait(), 5)

    health2 = Health()
    health2.ready = True
    sup2 = health2.supervisor(FAST)

    async def fatal() -> None:
        raise RuntimeError("no")
    sup2.start("fatal", fatal, restart=False)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(sup2.wait(), 5)
    assert health2.as_response().status_code == 503
