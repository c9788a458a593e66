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
from nats.js.api import ConsumerConfig
from nats.js.errors import BadRequestError, NotFoundError

from libs import deadletters, natsauth, retry, subjects
from libs.settings import CommonSettings, SettingsError

log = logging.getLogger("noops.bus")

# A message is delivered at most this many times unless the service says otherwise (NOOPS_MAX_DELIVER).
DEFAULT_MAX_DELIVER = 10


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
    return await connect(common.nats_url, name, policy=retry.Policy.for_connect(common), user=user, password=password)


class _Unreachable(OSError):
    """No configured NATS server accepts TCP connections (checked before nats-py tries)."""


async def connect(url: str, name: str, *, retry_max_s: float = 5.0, user: str = "", password: str = "",
                  policy: retry.Policy | None = None) -> NATS:
    """Connect, waiting with a clear log line (no traceback) until NATS answers and accepts us.

    With a user, replies come to that identity's private inbox prefix (libs/natsauth.py)."""
    policy = policy or retry.Policy(cap_s=retry_max_s)
    servers = [u.strip() for u in url.split(",") if u.strip()]
    auth: dict[str, object] = {}
    if user:
        auth = {"user": user, "password": password, "inbox_prefix": natsauth.inbox_prefix(user)}

    async def _on_error(exc: Exception) -> None:
        log.warning("nats connection trouble", extra={"error": str(exc) or type(exc).__name__})

    async def attempt() -> NATS:
        # nats-py retries a failed first connection by itself (silently, with allow_reconnect),
        # so reachability is checked here first: the operator sees why the service is waiting.
        reachable, why = await _any_reachable(servers)
        if not reachable:
            raise _Unreachable(why)
        try:
            return await nats.connect(servers=servers, name=name, connect_timeout=2, allow_reconnect=True,
                                      max_reconnect_attempts=-1, reconnect_time_wait=1,
                                      error_cb=_on_error, **auth)  # type: ignore[arg-type]
        except (OSError, nats.errors.NoServersError, NatsTimeout, asyncio.TimeoutError):
            raise
        except nats.errors.Error as exc:  # the server answered no: most often our credentials
            log.error("NATS refused the connection", extra={
                "url": url, "user": user or "(none)", "error": str(exc) or type(exc).__name__,
                "hint": "check NOOPS_NATS_USER / NOOPS_NATS_PASSWORD_FILE against the server's users"})
            raise

    # A refusal is waited out too: credentials are often being provisioned while services start.
    return await policy.until_ok(attempt, what="NATS", log=log, extra={"url": url},
                                 transient=lambda exc: isinstance(exc, (nats.errors.Error, *retry.TRANSIENT)))


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
    """Create (or bring up to date) the streams; safe to call from every service at start, and
    again whenever a publish or a fetch finds a stream missing (a NATS server that came back
    without its store)."""
    for stream in streams:
        cfg = stream.config()
        try:
            await js.add_stream(cfg)
        except BadRequestError:
            await js.update_stream(cfg)


_STREAM_NOT_FOUND = 10059
DeclareStreams = Callable[[], Awaitable[None]]


class StreamMissing(RuntimeError):
    """The consumer's stream does not exist (yet): hostd waits for the services that declare it."""


# Fields ensure_consumer keeps in step on an existing durable.  nats-server 2.9 updates these in
# place (checked against 2.9.10: max_deliver, ack_wait, max_ack_pending); the others (filter,
# deliver and ack policy) never change for a noops consumer, and changing them would need a
# delete and re-create, which loses the consumer's position: not done automatically.
_UPDATABLE = ("max_deliver", "ack_wait", "max_ack_pending")


def _differs(have: ConsumerConfig, want: ConsumerConfig) -> list[str]:
    return [f for f in _UPDATABLE if getattr(have, f) != getattr(want, f)]


async def declare_consumer(js: JetStreamContext, consumer: subjects.Consumer, *, max_deliver: int,
                           declare_streams: DeclareStreams | None = None) -> None:
    """One attempt: create the durable if missing, update it if its settings differ; a missing
    stream is declared first when this service may (``declare_streams``), else StreamMissing."""
    want = consumer.config(max_deliver=max_deliver)
    try:
        info = await js.consumer_info(consumer.stream.name, consumer.durable)
    except NotFoundError as exc:
        if exc.err_code == _STREAM_NOT_FOUND:
            if declare_streams is None:
                raise StreamMissing(consumer.stream.name) from None
            log.warning("stream missing; declaring the streams", extra={"stream": consumer.stream.name})
            await declare_streams()
        await js.add_consumer(consumer.stream.name, want)
        log.info("consumer declared", extra={"stream": consumer.stream.name, "consumer": consumer.durable})
        return
    changed = _differs(info.config, want)
    if changed:
        await js.add_consumer(consumer.stream.name, want)   # nats-server 2.9: create = update in place
        log.info("consumer updated", extra={"stream": consumer.stream.name, "consumer": consumer.durable,
                                            "fields": changed})


async def ensure_consumer(js: JetStreamContext, consumer: subjects.Consumer, *, retry_max_s: float = 5.0,
                          max_deliver: int = DEFAULT_MAX_DELIVER, policy: retry.Policy | None = None,
                          declare_streams: DeclareStreams | None = None) -> None:
    """Create or update the durable consumer.  Its stream may not exist yet (hostd may not
    declare streams, and may start before the services that do): wait for it with a clear log line."""
    policy = policy or retry.Policy(cap_s=retry_max_s)
    await policy.until_ok(
        lambda: declare_consumer(js, consumer, max_deliver=max_deliver, declare_streams=declare_streams),
        what="stream", log=log, extra={"stream": consumer.stream.name, "consumer": consumer.durable},
        transient=lambda exc: isinstance(exc, (StreamMissing, *retry.TRANSIENT)))


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
# pull_loop's own termination of a message whose handler kept raising: already recorded.
_TERM_RECORDED = Verdict(Outcome.TERM, -1.0)


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


def num_delivered(msg: Msg) -> int:
    """How many times the server has delivered this message (1 on the first delivery)."""
    try:
        return int(msg.metadata.num_delivered)
    except Exception:   # not a JetStream message (tests' plain messages): first delivery
        return 1


def stream_seq(msg: Msg) -> int:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:
        return 0


# An idle consumer is checked (and re-declared if gone) after this long without a message: a
# server that lost its store may answer a pull for a missing consumer with silence, not an error.
IDLE_CHECK_S = 30.0
# Fetch failures in a row after which the consumer (and, where allowed, the streams) are declared again.
REDECLARE_AFTER = 3


async def pull_loop(js: JetStreamContext, consumer: subjects.Consumer, handler: BatchHandler, *,
                    batch: int = 256, stop: asyncio.Event | None = None, concurrency: int = 1,
                    policy: retry.Policy = retry.DEFAULT, max_deliver: int = DEFAULT_MAX_DELIVER,
                    dead_letters: deadletters.Recorder | None = None,
                    declare_streams: DeclareStreams | None = None) -> None:
    """Fetch batches from a durable pull consumer and hand them to ``handler``.

    The handler returns one verdict per message, after its writes committed; acks follow.
    While the handler raises a transient error (task log or NATS away) the batch is held and
    tried again in place with the policy's backoff, so an outage costs no delivery count.
    When the handler raises otherwise on a batch, its messages are handled again one by one, so one poison
    message does not nak its neighbours; a message whose handler still raises is nak'ed with the
    policy's backoff for its delivery count, and terminated (and recorded as a dead letter) on its
    ``max_deliver``-th delivery.  A TERM verdict is recorded as a dead letter too.
    ``concurrency`` > 1 lets the next batches be fetched and handled while one is still in
    hand (hostd: a slow container stop must not hold up other instances); the handler then
    keeps its own per-key order.

    The consumer is declared at start and again when fetches fail with an error (consumer or
    stream gone: a NATS server that came back without its store), keep failing, or stay silent
    for IDLE_CHECK_S; with ``declare_streams`` the streams too (services allowed to declare them;
    hostd waits for them instead).
    """
    dead_letters = dead_letters or deadletters.Recorder()
    await ensure_consumer(js, consumer, max_deliver=max_deliver, policy=policy, declare_streams=declare_streams)
    sub = Puller(js, consumer)
    await sub.start()
    slots = asyncio.Semaphore(concurrency)
    inflight: set[asyncio.Task[None]] = set()
    fetch_failures = retry.Failures(policy)
    loop = asyncio.get_running_loop()
    last_seen = loop.time()

    async def failed(msg: Msg, exc: Exception) -> Verdict:
        n = num_delivered(msg)
        transient = retry.is_transient(exc)
        if n >= max_deliver:
            await dead_letters.record(deadletters.of_msg(msg, consumer, reason="handler_error",
                                                         error=retry.describe(exc), deliveries=n))
            return _TERM_RECORDED
        delay = policy.backoff(n)
        log.warning("message failed; will be redelivered", exc_info=None if transient else exc, extra={
            "consumer": consumer.durable, "subject": msg.subject, "deliveries": n, "max_deliver": max_deliver,
            "error": retry.describe(exc), "retry_in_s": round(delay, 2)})
        return nak(delay)

    async def hold(msgs: list[Msg]) -> list[Verdict] | Exception:
        """The handler's verdicts, trying again in place while it fails transiently: the task log
        or NATS is away, every message would fail alike, and a redelivery would count towards
        max_deliver -- a database outage of a minute must not turn good messages into dead
        letters.  The server is told they are in progress, so it does not hand them out again."""
        attempt = 0
        while True:
            try:
                return list(await handler(msgs))
            except Exception as exc:
                if not retry.is_transient(exc):
                    return exc
                attempt += 1
                delay = policy.backoff(attempt)
                log.warning("batch failed for now; holding it and trying again", extra={
                    "consumer": consumer.durable, "messages": len(msgs), "error": retry.describe(exc),
                    "attempt": attempt, "retry_in_s": round(delay, 2)})
                for m in msgs:
                    with contextlib.suppress(Exception):   # NATS away: it redelivers after ack_wait
                        await m.in_progress()
                await asyncio.sleep(delay)
                if stop is not None and stop.is_set():
                    return [nak(delay)] * len(msgs)

    async def judge(msgs: list[Msg]) -> list[Verdict]:
        got = await hold(msgs)
        if not isinstance(got, Exception):
            return got
        exc = got
        if len(msgs) == 1:
            return [await failed(msgs[0], exc)]
        log.warning("batch failed; handling its messages one by one", exc_info=exc, extra={
            "consumer": consumer.durable, "messages": len(msgs), "error": retry.describe(exc)})
        out: list[Verdict] = []
        for m in msgs:
            try:
                out += await handler([m])
            except Exception as exc:
                out.append(await failed(m, exc))
        return out

    async def keep_alive(msgs: list[Msg]) -> None:
        """Tell the server the batch is still being worked on, every third of the ack wait: the
        ack wait can stay short (a consumer that died mid-batch gets its messages back soon)
        while a slow batch (containers started under load) is never handed out twice."""
        while True:
            await asyncio.sleep(consumer.ack_wait_s / 3)
            for m in msgs:
                with contextlib.suppress(Exception):   # NATS away: nothing to tell, it redelivers later
                    await m.in_progress()

    async def process(msgs: list[Msg]) -> None:
        beat = asyncio.create_task(keep_alive(msgs))
        try:
            verdicts = await judge(msgs)
            beat.cancel()
            # One after the other: an ack is a buffered publish that seldom waits, and a task per
            # message (gather) cost more than the acks themselves at thousands a second.
            unsettled, error = 0, ""
            for m, v in zip(msgs, verdicts):
                try:
                    if v.outcome is Outcome.TERM and v is not _TERM_RECORDED:
                        await dead_letters.record(deadletters.of_msg(
                            m, consumer, reason="rejected", error="terminated by its handler (see its log line)",
                            deliveries=num_delivered(m)))
                    await settle(m, v)
                except Exception as exc:  # connection trouble: the server redelivers after ack_wait
                    unsettled, error = unsettled + 1, str(exc) or type(exc).__name__
            if unsettled:
                log.warning("messages not settled; the server delivers them again", extra={
                    "consumer": consumer.durable, "messages": unsettled, "error": error})
        finally:
            beat.cancel()
            slots.release()

    async def redeclare(why: str) -> None:
        try:
            await declare_consumer(js, consumer, max_deliver=max_deliver, declare_streams=declare_streams)
        except StreamMissing:
            log.warning("waiting for stream", extra={"stream": consumer.stream.name, "consumer": consumer.durable})
        except Exception as exc:
            log.warning("declaring the consumer again failed", extra={
                "consumer": consumer.durable, "why": why, "error": retry.describe(exc)})

    try:
        while stop is None or not stop.is_set():
            await slots.acquire()
            try:
                msgs = await sub.fetch(batch, timeout=1.0)
            except NatsTimeout:
                slots.release()
                fetch_failures.ok()
                if loop.time() - last_seen > IDLE_CHECK_S:
                    last_seen = loop.time()
                    await redeclare("idle")
                continue
            except Exception as exc:  # connection trouble: the client reconnects by itself
                slots.release()
                delay = fetch_failures.failed()
                log.warning("fetch failed", extra={"consumer": consumer.durable, "error": retry.describe(exc),
                                                   "retry_in_s": round(delay, 2)})
                if isinstance(exc, PullError) or fetch_failures.count >= REDECLARE_AFTER:
                    await redeclare(retry.describe(exc))
                await asyncio.sleep(delay)
                continue
            fetch_failures.ok()
            last_seen = loop.time()
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
