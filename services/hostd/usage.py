"""CPU and memory per instance, for the cluster map: the latest of noops-init's stats (each round
of initstats.scrape_loop), answered on noops.usage.<host> to the gateway (GET /v1/hosts/{host}/usage).

    scrape round ──UsageBook.record(round, at)──▶ instance → InstanceUsage ◀──noops.usage.<host>── gateway
                   (advance: pure)                                            (reply: pure, bounded)

CPU cores used are the CPU seconds between the two last rounds that found the instance, divided by
the seconds between them.  A round replaces the book, so an instance gone or not answering drops
out (as from /metrics), and one back after missing a round starts without a rate again.  Only
instances of images with noops-init have stats: the others never appear.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs import messages, subjects
from services.hostd.initstats import InitStats

log = logging.getLogger("noops.hostd.usage")


def cpu_cores(before: messages.InstanceUsage | None, cpu_seconds: float, at: float) -> float | None:
    """None without an earlier sample, when no time passed, or when the count went back (it only
    grows for one process tree: noops-init counts its reaped children too)."""
    if before is None or at <= before.at or cpu_seconds < before.cpu_seconds:
        return None
    return (cpu_seconds - before.cpu_seconds) / (at - before.at)


def advance(book: Mapping[str, messages.InstanceUsage], scraped: Mapping[str, tuple[str, InitStats]],
            at: float) -> dict[str, messages.InstanceUsage]:
    """The book after a round scraped at ``at``: exactly the instances of that round."""
    return {instance: messages.InstanceUsage(
                instance=instance, app=app, cpu_cores=cpu_cores(book.get(instance), s.cpu_seconds, at),
                cpu_seconds=s.cpu_seconds, memory_bytes=s.memory_bytes, ready=s.ready, at=at)
            for instance, (app, s) in scraped.items()}


def reply(host: str, book: Mapping[str, messages.InstanceUsage], *,
          limit: int = messages.USAGE_ITEMS_PER_MESSAGE) -> messages.Usage:
    """By instance id, at most ``limit`` (the reply must fit a NATS message)."""
    ids = sorted(book)
    return messages.Usage(host=host, items=[book[i] for i in ids[:limit]], truncated=len(ids) > limit)


class UsageBook:
    """The latest round's usage.  Replaced whole, never changed in place: a reply being encoded
    keeps the mapping it started with."""

    def __init__(self) -> None:
        self.latest: Mapping[str, messages.InstanceUsage] = {}

    def record(self, scraped: Mapping[str, tuple[str, InitStats]], at: float) -> None:
        self.latest = advance(self.latest, scraped, at)


async def serve_usage(nc: NATS, *, host: str, book: UsageBook) -> Subscription:
    """Subscribe; the caller unsubscribes at shutdown.  Answered from memory, never from Docker."""

    async def on_request(msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            messages.decode(msg.data or b"{}", messages.UsageRequest)
        except messages.DecodeError as exc:
            log.warning("usage request refused", extra={"error": str(exc)})
            return
        await msg.respond(messages.encode(reply(host, book.latest)))

    return await nc.subscribe(subjects.usage(host), cb=on_request)
