"""Transactional outbox: write a message in the same transaction as the state it announces;
a relay publishes it to JetStream with its msg id (so a re-publish after a crash is dropped by
the server's de-duplication) and then deletes it.  Crash anywhere: nothing lost, nothing doubled."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence

import asyncpg
from nats.js import JetStreamContext
from prometheus_client import Counter

from libs import messages, subjects

log = logging.getLogger("noops.outbox")

PUBLISHED = Counter("noops_outbox_published_total", "Outbox messages published to JetStream")

# The NOTIFY (below) rides in the same statement: one round trip per enqueue.
_INSERT = ("WITH added AS (INSERT INTO outbox (subject, msg_id, payload) "
           "SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])) "
           "SELECT pg_notify($4, '')")
# A relay claims the rows of each subject kind it owns (the subject's second token, a generated
# column with an index on (kind, id): migration 0009), or every row.
_CLAIM_KIND = ("SELECT id, subject, msg_id, payload FROM outbox WHERE kind = $2 "
               "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED")
_CLAIM_ALL = "SELECT id, subject, msg_id, payload FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
_DELETE = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"


# Writers NOTIFY this channel in their transaction (delivered at commit, once per transaction);
# every relay LISTENs, so a row written by one service is published at once by the relay that
# owns its subject, which may run in another service.
CHANNEL = "noops_outbox"


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
        await conn.execute(_INSERT, subs, ids, payloads, CHANNEL)
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
                 batch: int = 500, poll_s: float = 1.0) -> None:
        self.pool, self.js, self.batch, self.poll_s = pool, js, batch, poll_s
        kinds = claim_kinds(subjects)
        self._claims: list[tuple[str, tuple]] = ([(_CLAIM_ALL, ())] if kinds is None
                                                 else [(_CLAIM_KIND, (k,)) for k in kinds])
        self._more = False   # the last drain left rows behind (a claim came back full)
        self._wake = asyncio.Event()

    def kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        listener: asyncpg.Connection | None = None
        try:
            try:
                listener = await self.pool.acquire()
                await listener.add_listener(CHANNEL, self._on_notify)
            except (asyncpg.PostgresError, OSError) as exc:  # the poll still covers every row
                log.warning("outbox relay listens to no notifications; polling only",
                            extra={"error": str(exc) or type(exc).__name__, "poll_s": self.poll_s})
            await self._loop()
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.remove_listener(CHANNEL, self._on_notify)
                await self.pool.release(listener)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        failures = 0
        while True:
            try:
                await self.drain_once()
                failures = 0
            except Exception as exc:
                failures += 1
                delay = min(0.1 * 2 ** failures, 5.0)
                log.warning("outbox relay failed; retrying", extra={"error": str(exc) or type(exc).__name__,
                                                                    "retry_in_s": delay})
                await asyncio.sleep(delay)
                continue
            if not self._more:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()

    async def drain_once(self) -> int:
        """Publish what is waiting, up to one batch per owned kind; returns how many rows."""
        total, self._more = 0, False
        for claim, args in self._claims:
            n = await self._drain(claim, args)
            total += n
            self._more |= n >= self.batch
        return total

    async def _drain(self, claim: str, args: tuple) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(claim, self.batch, *args)
            if not rows:
                return 0
            # Published in id order on one connection, so order within a subject (a start then a
            # stop for one host) is kept; acks are awaited together (pipelined, not one round trip
            # each).  Any failure leaves every row for the next try; the server drops the copies.
            futures = [await self.js.publish_async(r["subject"], bytes(r["payload"]),
                                                   headers={"Nats-Msg-Id": r["msg_id"]}) for r in rows]
            await asyncio.wait_for(asyncio.gather(*futures), timeout=10.0)
            await conn.execute(_DELETE, [r["id"] for r in rows])
        PUBLISHED.inc(len(rows))
        return len(rows)
