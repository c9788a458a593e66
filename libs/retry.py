"""One retry policy for every noops loop: exponential backoff with full jitter, and one place that
says which errors are transient.

    delay(attempt) = uniform(0, min(cap_s, base_s * 2 ** (attempt - 1)))      (attempt >= 1)

Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): after an outage every
process retries at once otherwise, and the first thing a recovering NATS or PostgreSQL sees is
the whole cluster knocking in step.  The arithmetic is tenacity's ``wait_random_exponential``, so
the per-message nak delays (``Policy.backoff``) and the connect-style waits (``until_ok``) come
from one formula.

Transient means "the same call may succeed later without anyone changing anything": the network,
a server restarting (PostgreSQL's shutdown SQLSTATEs 57P01/57P02/57P03, a connection asyncpg can
no longer use), too many connections,
serialization failures and deadlocks, a timed-out statement, NATS away or without responders.
Anything else is a bug or bad data: retrying it only hides it.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import nats.errors
import nats.js.errors
import tenacity

from libs.settings import CommonSettings

T = TypeVar("T")

# --------------------------------------------------------------------------- classification

# PostgreSQL (and the asyncpg driver) errors after which the same statement may succeed later.
DB_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,                            # asyncpg's command_timeout, our own wait_for
    asyncpg.PostgresConnectionError,                 # class 08: connection exceptions
    # Both client-side families below mean "this connection, not the statement": the same call
    # succeeds on another connection, and the pool never hands the broken one out again.  asyncpg
    # aborts a connection whose protocol refused a statement (protocol.pyx, _coreproto_error);
    # its pool terminates a closed connection on release and connects anew on the next acquire
    # (pool.py, PoolConnectionHolder.release/acquire), so noops' empty reset (db.keep_session)
    # loses nothing here (tests/integration/libs/test_db_fatal_while_idle.py).
    asyncpg.InterfaceError,                          # connection closed under us, pool closing;
    #   also its subclasses DataError / ClientConfigurationError (a bad argument, a bad DSN), which
    #   are not transient but cannot be told apart in an ``except`` tuple: the retry's warning
    #   names them, and tests meet them first.
    asyncpg.InternalClientError,                     # the protocol's state, not the statement's: an
    #   idle connection that read the server's FATAL 57P01 (PostgreSQL stopping, pg_terminate_backend)
    #   before its close raises "cannot switch to state 12; another operation (2) is in progress"
    #   on its next statement (the placer's leadership check and the registry's announcer met it
    #   in a database-outage test).  Its subclasses too: ProtocolError (a stream out of step ends
    #   the connection), OutdatedSchemaCacheError (asyncpg cleared its statement cache: the retry
    #   prepares again), TargetServerAttributeNotMatched (at connect: a standby, maybe promoted).
    asyncpg.exceptions.AdminShutdownError,           # 57P01 the server is shutting down
    asyncpg.exceptions.CrashShutdownError,           # 57P02 another backend crashed
    asyncpg.exceptions.CannotConnectNowError,        # 57P03 starting up / recovering
    asyncpg.exceptions.QueryCanceledError,           # 57014 statement_timeout, cancelled query
    asyncpg.exceptions.TooManyConnectionsError,      # 53300
    asyncpg.exceptions.SerializationError,           # 40001
    asyncpg.exceptions.DeadlockDetectedError,        # 40P01
)

# NATS errors after which the same call may succeed later: the server is away, reconnecting,
# slow, or (no responders) has no JetStream stream/consumer listening on that subject yet.
NATS_TRANSIENT: tuple[type[BaseException], ...] = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.StaleConnectionError,
    nats.errors.NoServersError,
    nats.errors.TimeoutError,                        # includes FlushTimeoutError
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.NoStreamResponseError,            # a publish no stream answered (503)
    nats.js.errors.ServiceUnavailableError,          # JetStream not (yet) available
    nats.js.errors.TooManyStalledMsgsError,
)

TRANSIENT: tuple[type[BaseException], ...] = DB_TRANSIENT + NATS_TRANSIENT


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT)


def describe(exc: BaseException) -> str:
    """What a log line says about an error: its message, or its type when it has none."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- policy

@dataclass(frozen=True)
class Policy:
    """Exponential backoff with full jitter; ``attempt`` counts from 1 (the first retry)."""
    base_s: float = 0.2
    cap_s: float = 10.0

    @classmethod
    def from_settings(cls, common: CommonSettings) -> "Policy":
        """The policy of loops that run for the life of the process (NOOPS_RETRY_BASE_S, NOOPS_RETRY_CAP_S)."""
        return cls(common.retry_base_s, common.retry_cap_s)

    @classmethod
    def for_connect(cls, common: CommonSettings) -> "Policy":
        """Waiting for NATS / PostgreSQL / Docker at start: same base, capped at NOOPS_CONNECT_RETRY_MAX_S."""
        return cls(common.retry_base_s, common.connect_retry_max_s)

    def _wait(self) -> tenacity.wait.wait_base:
        return tenacity.wait_random_exponential(multiplier=self.base_s, max=self.cap_s)

    def backoff(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (a message's num_delivered, a loop's failures)."""
        return self._wait()(_Attempt(max(int(attempt), 1)))

    async def sleep(self, attempt: int) -> float:
        delay = self.backoff(attempt)
        await asyncio.sleep(delay)
        return delay

    async def until_ok(self, fn: Callable[[], Awaitable[T]], *, what: str, log: logging.Logger,
                       transient: Callable[[BaseException], bool] = is_transient,
                       extra: dict[str, Any] | None = None) -> T:
        """Call ``fn`` until it succeeds, waiting out transient errors with one warning line each
        (no traceback: waiting for a server is not a bug).  Anything else is raised at once."""
        def _log_wait(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            log.warning(f"waiting for {what}", extra={**(extra or {}), "error": describe(exc) if exc else "",
                                                      "attempt": state.attempt_number,
                                                      "retry_in_s": round(delay, 2)})

        retrying = tenacity.AsyncRetrying(
            wait=self._wait(), retry=tenacity.retry_if_exception(transient), before_sleep=_log_wait,
            reraise=True, sleep=asyncio.sleep)
        async def call() -> T:
            # tenacity awaits only what a coroutine function returns; ``fn`` may be a lambda.
            return await fn()

        return await retrying(call)


@dataclass(frozen=True)
class _Attempt:
    """The one field of tenacity's RetryCallState its wait strategies read."""
    attempt_number: int


DEFAULT = Policy()


class Failures:
    """Consecutive failures of one loop: ``failed()`` returns the pause before the next try,
    ``ok()`` starts the backoff over.  Replaces the hand-written ``delay = min(delay * 2, cap)``."""

    def __init__(self, policy: Policy = DEFAULT) -> None:
        self.policy = policy
        self.count = 0

    def failed(self) -> float:
        self.count += 1
        return self.policy.backoff(self.count)

    def ok(self) -> None:
        self.count = 0
