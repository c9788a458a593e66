"""Dead letters: the messages noops gave up on, made visible to an operator.

    pull_loop terminates a message (handler kept raising, or its handler said TERM)
        --> Recorder.record: counter noops_dead_letters_total{consumer,reason}, an error log line
            (subject, consumer, reason, data excerpt), a dead_letters row where the service has
            the task log
    the server gives up (max_deliver reached) or a consumer without the task log (hostd) terminates
        --> $JS.EVENT.ADVISORY.CONSUMER.{MAX_DELIVERIES,MSG_TERMINATED}.<stream>.<consumer>
        --> AdvisoryRecorder (in the registry): the stored message read back by sequence when still
            there, a dead_letters row
    the outbox relay sets a row aside (libs/outbox.py) --> Recorder.record too

The counter counts each dead letter once: where it was terminated, or (max_deliver, nobody
terminated it) by the advisory recorder.  Listed by the gateway's GET /v1/dead-letters.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import asyncpg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter

from libs import retry, subjects

if TYPE_CHECKING:
    from libs.db import Queries

log = logging.getLogger("noops.deadletters")

DEAD_LETTERS = Counter("noops_dead_letters_total", "Messages given up on (terminated, or delivered max_deliver "
                       "times, or outbox rows set aside)", ["consumer", "reason"])

EXCERPT_BYTES = 512


def excerpt(data: bytes | None) -> str:
    """The first bytes of a payload, readable in a log line and a table cell."""
    if not data:
        return ""
    text = data[:EXCERPT_BYTES].decode("utf-8", "replace")
    return text + ("…" if len(data) > EXCERPT_BYTES else "")


@dataclass(frozen=True)
class DeadLetter:
    stream: str
    consumer: str
    stream_seq: int
    subject: str
    reason: str
    error: str = ""
    deliveries: int = 0
    excerpt: str = ""


def of_msg(msg: Msg, consumer: subjects.Consumer, *, reason: str, error: str, deliveries: int) -> DeadLetter:
    try:
        seq = int(msg.metadata.sequence.stream)
    except Exception:
        seq = 0
    return DeadLetter(consumer.stream.name, consumer.durable, seq, msg.subject, reason, error, deliveries,
                      excerpt(msg.data))


@lru_cache(maxsize=1)
def queries() -> "Queries":
    from libs.db import Queries   # db imports retry only; imported here to keep bus -> deadletters light
    return Queries("deadletters")


class Recorder:
    """Counts, logs and (with a pool) stores dead letters.  ``source`` names the recording service."""

    def __init__(self, pool: asyncpg.Pool | None = None, *, source: str = "") -> None:
        self.pool, self.source = pool, source

    async def record(self, dl: DeadLetter, *, count: bool = True) -> bool:
        """True when the row was stored (new, or replacing an advisory's)."""
        if count:
            DEAD_LETTERS.labels(dl.consumer, dl.reason).inc()
        log.error("dead letter", extra={"stream": dl.stream, "consumer": dl.consumer, "stream_seq": dl.stream_seq,
                                        "subject": dl.subject, "reason": dl.reason, "error": dl.error,
                                        "deliveries": dl.deliveries, "data": dl.excerpt})
        return await self.store(dl)

    async def store(self, dl: DeadLetter, *, source: str | None = None) -> bool:
        if self.pool is None:
            return False
        try:
            row = await self.pool.fetchrow(queries().record_dead_letter, dl.stream, dl.consumer, dl.stream_seq,
                                           dl.subject, dl.reason, dl.error, dl.deliveries, dl.excerpt,
                                           source or self.source or "unknown")
        except retry.DB_TRANSIENT as exc:   # the log line and the counter stand; the advisory may still be recorded
            log.warning("dead letter not stored", extra={"consumer": dl.consumer, "stream_seq": dl.stream_seq,
                                                         "error": retry.describe(exc)})
            return False
        return row is not None


_ADVISORY_REASONS = {"MAX_DELIVERIES": "max_deliveries", "MSG_TERMINATED": "terminated"}


class AdvisoryRecorder:
    """Records the server's advisories about messages given up on, for every consumer, including
    those of services that cannot write the task log (hostd).  Run by a service with the task log
    and the permissions of libs/natsauth.py (the registry)."""

    def __init__(self, nc: NATS, js: JetStreamContext, recorder: Recorder) -> None:
        self.nc, self.js, self.recorder = nc, js, recorder
        self._subs: list = []

    async def start(self) -> None:
        for subject in subjects.DEAD_LETTER_ADVISORIES:
            self._subs.append(await self.nc.subscribe(subject, cb=self.on_advisory))

    async def stop(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:   # closing connection: nothing more arrives anyway
                pass
        self._subs.clear()

    async def on_advisory(self, msg: Msg) -> None:
        kind = msg.subject.split(".")[4] if msg.subject.count(".") >= 4 else ""
        reason = _ADVISORY_REASONS.get(kind)
        try:
            adv = json.loads(msg.data)
            stream, consumer, seq = str(adv["stream"]), str(adv["consumer"]), int(adv["stream_seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored malformed advisory", extra={"subject": msg.subject})
            return
        if reason is None:
            return
        subject, data = "", b""
        try:   # a terminated work-queue message is gone already; one that ran out of deliveries is not
            stored = await self.js.get_msg(stream, seq)
            subject, data = stored.subject or "", stored.data or b""
        except Exception as exc:
            log.debug("advisory's message no longer stored", extra={"stream": stream, "stream_seq": seq,
                                                                  "error": retry.describe(exc)})
        dl = DeadLetter(stream, consumer, seq, subject, reason, str(adv.get("reason", "")),
                        int(adv.get("deliveries", 0) or 0), excerpt(data))
        stored_new = await self.recorder.store(dl, source="advisory")
        # Counted here only when nobody terminated it (the server gave up): a termination was
        # counted by the service that terminated the message.
        if reason == "max_deliveries":
            DEAD_LETTERS.labels(consumer, reason).inc()
            log.error("dead letter", extra={"stream": stream, "consumer": consumer, "stream_seq": seq,
                                            "subject": subject, "reason": reason, "deliveries": dl.deliveries,
                                            "data": dl.excerpt, "stored": stored_new})
