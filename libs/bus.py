"""NATS and JetStream plumbing shared by the services: connect with retry, declare streams,
run a durable pull consumer with the ack discipline of STYLE.md."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import urlparse

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from libs import natsauth, subjects
from libs.settings import CommonSettings, SettingsError

log = logging.getLogger("noops.bus")


def credentials(common: CommonSettings) -> tuple[str, str]:
    """(user, password) from the settings; a password file that can't be read is a configuration error."""
    if not common.nats_user:
        return "", ""
    if not common.nats_password_file:
        raise SettingsError("NOOPS_NATS_USER is set but NOOPS_NATS_PASSWORD_FILE is not")
    try:
        password = Path(common.nats_password_file).read_text().strip()
    except OSError as exc:
        raise SettingsError(f"NOOPS_NATS_PASSWORD_FILE={common.nats_password_file}: {exc.strerror}") from None
    return common.nats_user, password


async def connect_as(common: CommonSettings, name: str) -> NATS:
    """Connect with this process's identity (NOOPS_NATS_USER) and settings."""
    user, password = credentials(common)
    return await connect(common.nats_url, name, retry_max_s=common.connect_retry_max_s, user=user, password=password)


async def connect(url: str, name: str, *, retry_max_s: float = 5.0, user: str = "", password: str = "") -> NATS:
    """Connect, waiting with a clear log line (no traceback) until NATS answers and accepts us.

    With a user, replies come to that identity's private inbox prefix (libs/natsauth.py)."""
    delay = 0.2
    servers = [u.strip() for u in url.split(",") if u.strip()]
    auth: dict[str, object] = {}
    if user:
        auth = {"user": user, "password": password, "inbox_prefix": natsauth.inbox_prefix(user)}

    async def _on_error(exc: Exception) -> None:
        log.warning("nats connection trouble", extra={"error": str(exc) or type(exc).__name__})

    while True:
        # nats-py retries a failed first connection by itself (silently, with allow_reconnect),
        # so reachability is checked here first: the operator sees why the service is waiting.
        reachable, why = await _any_reachable(servers)
        if not reachable:
            log.warning("waiting for NATS", extra={"url": url, "error": why, "retry_in_s": round(delay, 2)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry_max_s)
            continue
        try:
            return await nats.connect(servers=servers, name=name, connect_timeout=2, allow_reconnect=True,
                                      max_reconnect_attempts=-1, reconnect_time_wait=1,
                                      error_cb=_on_error, **auth)  # type: ignore[arg-type]
        except (OSError, nats.errors.NoServersError, NatsTimeout, asyncio.TimeoutError) as exc:
            log.warning("waiting for NATS", extra={"url": url, "error": str(exc) or type(exc).__name__,
                                                   "retry_in_s": round(delay, 2)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry_max_s)
        except nats.errors.Error as exc:  # the server answered no: most often our credentials
            log.error("NATS refused the connection", extra={
                "url": url, "user": user or "(none)", "error": str(exc) or type(exc).__name__,
                "hint": "check NOOPS_NATS_USER / NOOPS_NATS_PASSWORD_FILE against the server's users",
                "retry_in_s": round(delay, 2)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry_max_s)


async def _any_reachable(servers: list[str]) -> tuple[bool, str]:
    why = "no server configured"
    for server in servers:
        u = urlparse(server if "://" in server else f"nats://{server}")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(u.hostname or "127.0.0.1", u.port or 4222), 2)
        except (OSError, asyncio.TimeoutError) as exc:
            why = f"{u.hostname}:{u.port or 4222}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__}"
            continue
        writer.close()
        return True, ""
    return False, why


async def ensure_streams(js: JetStreamContext, streams: Sequence[subjects.Stream] = subjects.STREAMS) -> None:
    """Create (or bring up to date) the streams; safe to call from every service at start."""
    for stream in streams:
        cfg = stream.config()
        try:
            await js.add_stream(cfg)
        except BadRequestError:
            await js.update_stream(cfg)


_STREAM_NOT_FOUND = 10059


async def ensure_consumer(js: JetStreamContext, consumer: subjects.Consumer, *, retry_max_s: float = 5.0) -> None:
    """Create the durable consumer if it is missing.  Its stream may not exist yet (hostd may not
    declare streams, and may start before the services that do): wait for it with a clear log line."""
    delay = 0.2
    while True:
        try:
            try:
                await js.consumer_info(consumer.stream.name, consumer.durable)
            except NotFoundError as exc:
                if exc.err_code == _STREAM_NOT_FOUND:
                    raise
                await js.add_consumer(consumer.stream.name, consumer.config())
            return
        except NotFoundError as exc:
            if exc.err_code != _STREAM_NOT_FOUND:
                raise
            log.warning("waiting for stream", extra={"stream": consumer.stream.name, "consumer": consumer.durable,
                                                     "retry_in_s": round(delay, 2)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry_max_s)


class Outcome(Enum):
    ACK = "ack"     # done (or nothing to do): remove from the stream
    NAK = "nak"     # transient failure: deliver again after a delay
    TERM = "term"   # poison: never deliver again (the handler logged why)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    delay_s: float = 0.0


ACK = Verdict(Outcome.ACK)
TERM = Verdict(Outcome.TERM)


def nak(delay_s: float) -> Verdict:
    return Verdict(Outcome.NAK, delay_s)


BatchHandler = Callable[[list[Msg]], Awaitable[list[Verdict]]]


async def settle(msg: Msg, verdict: Verdict) -> None:
    if verdict.outcome is Outcome.ACK:
        await msg.ack()
    elif verdict.outcome is Outcome.TERM:
        await msg.term()
    else:
        await msg.nak(delay=verdict.delay_s)


class PullError(RuntimeError):
    """The server ended a pull request with an error status (409: consumer deleted, too many
    waiting requests...): the caller backs off before asking again."""


class Puller:
    """Batches from a durable pull consumer, with one pull request for many messages and no task
    per message.  nats-py's ``fetch`` waits for each message of a batch with a task of its own
    (``next_msg``) and keeps a batch open until it fills or its timeout passes; at thousands of
    messages a second the first cost more CPU than handling them, the second added up to a second
    of latency at low rates.

    The protocol is JetStream's: a request on ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``
    (``batch``, ``expires``) with our inbox as reply subject; the server sends up to ``batch``
    messages there as they become available, and ends the request early with a status message
    (404 nothing left, 408 expired, 409 refused).  ``fetch`` returns as soon as anything has
    arrived; what the open request delivers meanwhile waits in ``_buf`` for the next call.
    """

    def __init__(self, js: JetStreamContext, consumer: subjects.Consumer) -> None:
        # nats-py keeps the connection and the API prefix (JetStream domain) on the context.
        self._nc: NATS = js._nc
        self._next = f"{js._prefix}.CONSUMER.MSG.NEXT.{consumer.stream.name}.{consumer.durable}"
        self._buf: list[Msg] = []
        self._owed = 0                 # messages the open request may still deliver
        self._open_until = 0.0         # local expiry of the open request (monotonic)
        self._waiter: asyncio.Future[None] | None = None
        self._error = ""
        self._inbox = ""
        self._sub = None

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_msg)

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self._buf.append(msg)
            self._owed -= 1
            if self._owed <= 0:
                self._open_until = 0.0
        elif status == "100":       # idle heartbeat / flow control: not asked for, nothing to do
            return
        else:
            self._open_until = 0.0  # the request is over
            if status not in ("404", "408"):
                self._error = f"{status} {msg.headers.get('Description', '')}".strip()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages, returning as soon as there is one; NatsTimeout after
        ``timeout`` without any; PullError when the server refuses the request."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._buf:
            if self._error:
                error, self._error = self._error, ""
                raise PullError(f"pull request refused: {error}")
            now = loop.time()
            if now >= deadline:
                raise NatsTimeout
            if now >= self._open_until:
                expires = max(deadline - now, 0.05)
                self._owed = batch
                # The server's 408 should come before our own expiry: a little slack here.
                self._open_until = now + expires + 0.1
                await self._nc.publish(self._next, f'{{"batch":{batch},"expires":{int(expires * 1e9)}}}'.encode(),
                                       reply=self._inbox)
            self._waiter = loop.create_future()
            timer = loop.call_later(max(min(deadline, self._open_until) - loop.time(), 0.0),
                                    lambda w=self._waiter: w.done() or w.set_result(None))
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None
        out, self._buf = self._buf[:batch], self._buf[batch:]
        return out


async def pull_loop(js: JetStreamContext, consumer: subjects.Consumer, handler: BatchHandler, *,
                    batch: int = 256, stop: asyncio.Event | None = None, concurrency: int = 1) -> None:
    """Fetch batches from a durable pull consumer and hand them to ``handler``.

    The handler returns one verdict per message, after its writes committed; acks follow.
    A handler exception counts as transient for the whole batch (nak with backoff).
    ``concurrency`` > 1 lets the next batches be fetched and handled while one is still in
    hand (hostd: a slow container stop must not hold up other instances); the handler then
    keeps its own per-key order.
    """
    await ensure_consumer(js, consumer)
    sub = Puller(js, consumer)
    await sub.start()
    slots = asyncio.Semaphore(concurrency)
    inflight: set[asyncio.Task[None]] = set()
    failures = 0

    async def process(msgs: list[Msg]) -> None:
        nonlocal failures
        try:
            try:
                verdicts = await handler(msgs)
                failures = 0
            except Exception:
                failures += 1
                delay = min(0.2 * 2 ** failures, 10.0)
                log.exception("batch failed; will be redelivered", extra={
                    "consumer": consumer.durable, "messages": len(msgs), "retry_in_s": delay})
                verdicts = [nak(delay)] * len(msgs)
            # One after the other: an ack is a buffered publish that seldom waits, and a task per
            # message (gather) cost more than the acks themselves at thousands a second.
            unsettled, error = 0, ""
            for m, v in zip(msgs, verdicts):
                try:
                    await settle(m, v)
                except Exception as exc:  # connection trouble: the server redelivers after ack_wait
                    unsettled, error = unsettled + 1, str(exc) or type(exc).__name__
            if unsettled:
                log.warning("messages not settled; the server delivers them again", extra={
                    "consumer": consumer.durable, "messages": unsettled, "error": error})
        finally:
            slots.release()

    try:
        while stop is None or not stop.is_set():
            await slots.acquire()
            try:
                msgs = await sub.fetch(batch, timeout=1.0)
            except NatsTimeout:
                slots.release()
                continue
            except Exception as exc:  # connection trouble: the client reconnects by itself
                slots.release()
                log.warning("fetch failed", extra={"consumer": consumer.durable,
                                                   "error": str(exc) or type(exc).__name__})
                await asyncio.sleep(min(0.2 * 2 ** failures, 5.0))
                failures += 1
                continue
            if concurrency == 1:
                await process(msgs)
            else:
                task = asyncio.create_task(process(msgs))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
        if inflight:
            await asyncio.gather(*inflight, return_exceptions=True)
    finally:
        for task in inflight:
            task.cancel()
        with contextlib.suppress(Exception):   # closing connection: the server drops the inbox anyway
            await sub.close()
