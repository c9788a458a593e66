"""Transactional outbox: write a message in the same transaction as the state it announces;
a relay publishes it to JetStream with its msg id (so a re-publish after a crash is dropped by
the server's de-duplication) and then deletes it.  Crash anywhere: nothing lost, nothing doubled."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import lru_cache

import asyncpg
import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError, NotFoundError
from prometheus_client import Counter

from libs import db, deadletters, messages, natsauth, retry, subjects
from libs.jspublish import AckedPublisher

log = logging.getLogger("noops.outbox")

PUBLISHED = Counter("noops_outbox_published_total", "Outbox messages published to JetStream")
REFUSED = Counter("noops_outbox_refused_total", "Outbox publishes refused for a non-transient reason")
CLAIMS = Counter("noops_outbox_claims_total", "Outbox claims of each kind (a claim transaction counts for every kind it "
                 "claims; '*': a relay of every kind)",
                 ["kind"])
SET_ASIDE = Counter("noops_outbox_set_aside_total", "Outbox rows set aside after NOOPS_OUTBOX_MAX_ATTEMPTS refusals")
# Room the headers (Nats-Msg-Id) and the protocol line take next to the payload, under max_payload.
_HEADROOM = 512

# Statements: libs/queries/outbox.sql.  Loaded once, on first use (not at import).
@lru_cache(maxsize=1)
def _q() -> db.Queries:
    return db.Queries("outbox")


# Writers NOTIFY this channel in their transaction (delivered at commit, once per transaction);
# every relay LISTENs, so a row written by one service is published at once by the relay that
# owns its subject, which may run in another service.  The payload names the kinds written and
# the writer, ``instance,endpoints@noops-registry`` (SQL function noops_outbox_notify, migration
# 0020), so only one relay claims: of the kinds' relays, the writer's own when it publishes the
# kind, otherwise the kind's first owner (natsauth.relay_owners).  Every commit used to wake every
# relay of every service for a claim transaction per kind it owns (8 per commit), and then every
# relay of a kind (deploy has three).  An empty payload (older writers) wakes every kind of every
# relay; no writer, every relay of the kinds named.
CHANNEL = "noops_outbox"


def woken_kinds(payload: str) -> frozenset[str] | None:
    """The kinds a notification's payload names; None: all of them."""
    kinds = frozenset(k for k in payload.partition("@")[0].split(",") if k)
    return kinds or None


def writer_of(payload: str) -> str:
    """The service a notification's payload names as the writer; "" when none."""
    return db.service_of(payload.partition("@")[2])


def columns(items: Iterable[tuple[str, str, messages.Msg]]) -> tuple[list[str], list[str], list[bytes]]:
    """(subjects, msg ids, payloads) of (subject, msg_id, message) items, for a statement that
    inserts outbox rows with other writes (it must NOTIFY ``CHANNEL`` too, as enqueue does)."""
    subs, ids, payloads = [], [], []
    for subject, msg_id, msg in items:
        subs.append(subject)
        ids.append(msg_id)
        payloads.append(messages.encode(msg))
    return subs, ids, payloads


async def enqueue(conn: asyncpg.Connection, items: Iterable[tuple[str, str, messages.Msg]]) -> int:
    """Add (subject, msg_id, message) rows, in the caller's transaction."""
    subs, ids, payloads = columns(items)
    if subs:
        await conn.execute(_q().insert, subs, ids, payloads, CHANNEL)
    return len(subs)


def claim_kinds(subject_patterns: Sequence[str]) -> list[str] | None:
    """The outbox kinds a relay owning these NATS subject patterns claims: ``noops.deploy.*`` ->
    ``deploy``; ``>`` (everything) -> None.  Any other shape is a programming error."""
    if ">" in subject_patterns:
        return None
    kinds = []
    for pattern in subject_patterns:
        tokens = pattern.split(".")
        if len(tokens) != 3 or tokens[0] != subjects.ROOT or tokens[2] not in ("*", ">") or "*" in tokens[1]:
            raise ValueError(f"an outbox relay owns {subjects.ROOT}.<kind>.* subjects or >, not {pattern!r}")
        if tokens[1] not in kinds:
            kinds.append(tokens[1])
    return kinds


class Relay:
    """Publishes outbox rows.  Several relays (one per writing service) may run: SKIP LOCKED
    gives each row to one of them at a time.  ``kick()`` after a commit for low latency; a
    slow poll covers rows left by a crashed process.

    ``subjects`` are the subject patterns this relay owns (``natsauth.relay_subjects``): it claims
    only those rows, so a row never reaches a service NATS would refuse it from, and each subject
    whose order matters (placements, endpoint announcements) has exactly one owner, which
    publishes its rows in id order: two relays never race each other on one subject."""

    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext, *, subjects: Sequence[str] = (">",),
                 batch: int = 500, poll_s: float = 1.0, policy: retry.Policy = retry.DEFAULT,
                 max_attempts: int = 10, declare_streams: Callable[[], Awaitable[None]] | None = None,
                 dead_letters: deadletters.Recorder | None = None, service: str = "") -> None:
        """``max_attempts``: refusals (non-transient) before a row is set aside (NOOPS_OUTBOX_MAX_ATTEMPTS).
        ``declare_streams``: called when a publish finds no stream (a NATS server that came back
        without its store); every relay runs in a service allowed to declare them.
        ``service``: whose relay this is (natsauth), so it answers only the notifications it owes
        a publish (see CHANNEL); "" answers every notification of its kinds."""
        self.pool, self.js, self.batch, self.poll_s = pool, js, batch, poll_s
        self.policy, self.max_attempts, self.declare_streams = policy, max_attempts, declare_streams
        self.dead_letters = dead_letters or deadletters.Recorder(pool, source="outbox")
        kinds = claim_kinds(subjects)
        self._kind_order: list[str] = kinds or []
        self._kinds: frozenset[str] | None = None if kinds is None else frozenset(kinds)
        self.service = service
        self._owners = {k: natsauth.relay_owners(k) for k in kinds or ()}
        self._more = False   # the last drain left rows behind (a claim came back full)
        # The kinds the next drain claims (None: all): those named by notifications since the
        # last drain, and those whose claim came back full.  The first drain, a poll and a retry
        # after a failure claim every kind.
        self._due: set[str] | None = None
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._listening = False   # LISTENing on a live connection (kick() then leaves it to the notification)
        # Acks checked, not parsed into nats-py's PubAck (libs/jspublish.py): the relay of the
        # registry publishes a change event for every report.  Made at the first publish.
        self._publisher: AckedPublisher | None = None

    def kick(self) -> None:
        """The caller just committed rows: drain now, every kind -- unless this relay listens, as
        it does but when LISTEN failed or its connection was lost: then the commit's notification
        wakes it for just the kinds written, a moment later.  Both used to come, one drain each,
        and the kick's claimed every kind (the registry's announcer: five claims a round, three
        of them empty)."""
        if self._listening:
            return
        self._due = None
        self._wake.set()

    def _deaf(self, _conn: object = None) -> None:
        """The listening connection is gone (PostgreSQL restarted, the backend was terminated):
        listen again at once, then claim every kind (notifications were missed meanwhile)."""
        self._listening = False
        self._due = None
        self._wake.set()

    async def _listen(self) -> None:
        """LISTEN on a connection of the relay's own.  On failure it only polls, and tries again
        at each turn of its loop (at least every ``poll_s``)."""
        await self._unlisten()
        try:
            conn = await self.pool.acquire()
        except (asyncpg.PostgresError, *retry.DB_TRANSIENT) as exc:
            log.warning("outbox relay listens to no notifications; polling only",
                        extra={"error": retry.describe(exc), "poll_s": self.poll_s})
            return
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
            conn.add_termination_listener(self._deaf)
        except (asyncpg.PostgresError, *retry.DB_TRANSIENT) as exc:
            log.warning("outbox relay listens to no notifications; polling only",
                        extra={"error": retry.describe(exc), "poll_s": self.poll_s})
            await self._release(conn)
            return
        self._listener, self._listening = conn, True
        self._due = None   # rows written before the LISTEN took hold

    async def _unlisten(self) -> None:
        conn, self._listener, self._listening = self._listener, None, False
        if conn is not None:
            with contextlib.suppress(Exception):   # a lost connection: nothing to unlisten (the pool took it back)
                conn.remove_termination_listener(self._deaf)
                await conn.remove_listener(CHANNEL, self._on_notify)
            await self._release(conn)

    async def _release(self, conn: asyncpg.Connection) -> None:
        with contextlib.suppress(Exception):   # the pool closes a broken connection itself
            await self.pool.release(conn)

    async def run(self) -> None:
        try:
            await self._listen()
            await self._loop()
        finally:
            await self._unlisten()

    def _answers(self, kind: str, writer: str) -> bool:
        """Whether this relay claims at once the rows of ``kind`` that ``writer`` announced (the
        others of the kind leave them; every relay's poll still covers every row)."""
        if not self.service or not writer:
            return True
        owners = self._owners.get(kind, ())
        if writer in owners:
            return writer == self.service
        return not owners or owners[0] == self.service

    def _on_notify(self, _conn: object, _pid: object, _channel: object, payload: str) -> None:
        kinds = woken_kinds(payload)
        if kinds is None or self._kinds is None:
            self._due = None
        else:
            writer = writer_of(payload)
            mine = {k for k in kinds & self._kinds if self._answers(k, writer)}
            if not mine:
                return   # another relay's rows: stay asleep
            if self._due is not None:
                self._due |= mine
        self._wake.set()

    async def _loop(self) -> None:
        failures = retry.Failures(self.policy)
        while True:
            if not self._listening:
                await self._listen()
            due, self._due = self._due, set()
            try:
                await self.drain_once(due)
                failures.ok()
            except Exception as exc:
                self._due = None   # the retry claims every kind
                if not retry.is_transient(exc):
                    raise   # a bug: the supervisor logs it with its traceback and restarts the relay
                delay = failures.failed()
                log.warning("outbox relay failed; retrying", extra={"error": retry.describe(exc),
                                                                    "retry_in_s": round(delay, 2)})
                if self.declare_streams is not None and _stream_missing(exc):
                    await self._redeclare()
                await asyncio.sleep(delay)
                continue
            if not self._more:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                except asyncio.TimeoutError:
                    self._due = None   # the slow poll: rows of a crashed writer, a lost notification
                self._wake.clear()

    async def _redeclare(self) -> None:
        assert self.declare_streams is not None
        try:
            await self.declare_streams()
            log.warning("a publish found no stream; streams declared again")
        except Exception as exc:
            log.warning("declaring the streams failed", extra={"error": retry.describe(exc)})

    async def drain_once(self, kinds: Iterable[str] | None = None) -> int:
        """Publish what is waiting, up to one batch per owned kind (of ``kinds`` only, when given),
        claimed in one statement; returns how many rows were published (rows set aside are not
        counted)."""
        self._more = False
        if self._kinds is None:
            due: list[str] = []
            n, claimed = await self._drain(_q().claim_all, (), ("*",))
        else:
            wanted = None if kinds is None else set(kinds)
            due = [k for k in self._kind_order if wanted is None or k in wanted]
            if not due:
                return 0
            n, claimed = await self._drain(_q().claim_kinds, (due,), due)
        if not due:   # claim_all: at most one batch in all
            self._more = sum(claimed.values()) >= self.batch
        for kind, count in claimed.items():
            if due and count >= self.batch:   # at most one batch of each kind
                self._more = True
                if self._due is not None:
                    self._due.add(kind)   # that kind again next
        return n

    async def _drain(self, claim: str, args: tuple, labels: Sequence[str]) -> tuple[int, Tally[str]]:
        """One claim transaction: (rows published, rows claimed by kind)."""
        max_payload = getattr(self.js._nc, "max_payload", 0) or 0
        if self._publisher is None:
            self._publisher = AckedPublisher(self.js._nc)
        publisher = self._publisher
        for label in labels:
            CLAIMS.labels(label).inc()
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(claim, self.batch, *args)
            if not rows:
                return 0, Tally()
            # Published in id order on one connection, so order within a subject (a start then a
            # stop for one host) is kept; acks are awaited together (pipelined, not one round trip
            # each).  A transient failure (NATS away, no stream) leaves every row for the next try
            # (the server drops the copies); a refusal is counted against that row only.
            futures: list[asyncio.Future | None] = []
            refused: dict[int, str] = {}
            for r in rows:
                payload = bytes(r["payload"])
                if max_payload and len(payload) + len(r["subject"]) + _HEADROOM > max_payload:
                    # Checked here: nats-py raises MaxPayloadError only after taking a slot of
                    # its publish window, which it then never gives back.
                    refused[r["id"]] = f"payload of {len(payload)} bytes exceeds the server's max_payload ({max_payload})"
                    futures.append(None)
                    continue
                try:
                    futures.append(await publisher.publish(r["subject"], payload, msg_id=r["msg_id"]))
                except (nats.errors.MaxPayloadError, nats.errors.BadSubjectError, nats.errors.BadHeaderError) as exc:
                    refused[r["id"]] = retry.describe(exc)
                    futures.append(None)
            pending = [f for f in futures if f is not None]
            try:
                results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout=10.0)
            finally:
                publisher.forget(pending)   # those never answered (timeout, cancel): not kept
            outcome = iter(results)
            done: list[int] = []
            transient: BaseException | None = None
            for r, f in zip(rows, futures):
                if f is None:
                    continue
                res = next(outcome)
                if isinstance(res, BaseException):
                    if retry.is_transient(res) or _stream_missing(res):
                        # Keep this row and every later one for the retry; what was acked before goes.
                        transient = res
                        break
                    refused[r["id"]] = retry.describe(res)
                else:
                    done.append(r["id"])
            await conn.execute(_q().delete, done)
            for r in rows:
                if r["id"] in refused:
                    await self._refused(conn, r, refused[r["id"]])
        PUBLISHED.inc(len(done))
        if transient is not None:
            raise transient   # after the commit: the loop backs off (and declares streams if missing)
        return len(done), Tally(r["kind"] for r in rows)

    async def _refused(self, conn: asyncpg.Connection, row: asyncpg.Record, reason: str) -> None:
        REFUSED.inc()
        attempts = row["attempts"] + 1
        if attempts < self.max_attempts:
            log.warning("outbox row refused; will retry", extra={
                "id": row["id"], "subject": row["subject"], "attempts": attempts,
                "max_attempts": self.max_attempts, "error": reason})
            await conn.execute(_q().count_failure, row["id"], reason)
            return
        await conn.execute(_q().set_aside, row["id"], reason)
        SET_ASIDE.inc()
        await self.dead_letters.record(deadletters.DeadLetter(
            "", "outbox", row["id"], row["subject"], "publish_refused", reason, attempts,
            deadletters.excerpt(bytes(row["payload"]))))


def _stream_missing(exc: BaseException) -> bool:
    """A publish no stream answered, or the server saying the stream is gone."""
    return isinstance(exc, (NoStreamResponseError, nats.errors.NoRespondersError)) or (
        isinstance(exc, NotFoundError) and getattr(exc, "err_code", 0) == 10059)
