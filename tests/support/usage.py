"""hostd's real usage responder (services/hostd/usage.py serve_usage) in this process, connected
to the session's NATS under the host's own identity (hostd-<host>), its book filled from
noops-init stats text as a scrape round would fill it: what the gateway's and the map's tests ask,
without a container (the scrape itself is tests/integration/hostd/test_hostd_initstats_scrape.py)."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import nats

from devtools import infra
from devtools.cluster import ClusterConfig
from libs import bus
from services.hostd.initstats import parse
from services.hostd.usage import UsageBook, serve_usage

# Round → instance → (app, noops-init's /stats body), at these times (unix seconds).
Rounds = list[tuple[float, Mapping[str, tuple[str, str]]]]


def body(cpu_seconds: float, memory_bytes: int, ready: int = 1) -> str:
    return f"cpu_seconds {cpu_seconds}\nmemory_bytes {memory_bytes}\nprocesses 1\nuptime_seconds 9\nready {ready}\n"


def record(book: UsageBook, rounds: Rounds) -> None:
    for at, found in rounds:
        book.record({inst: (app, parse(text)) for inst, (app, text) in found.items()}, at)


async def connect_as(cfg: ClusterConfig, user: str, name: str) -> nats.NATS:
    return await bus.connect(cfg.nats_url, name, **cfg.nats_credentials(user))


@contextlib.asynccontextmanager
async def hostd_usage(cfg: ClusterConfig, host: str, rounds: Rounds | None = None) -> AsyncIterator[UsageBook]:
    """Answering on noops.usage.<host> until the block ends (unsubscribed and closed even on failure)."""
    infra.ensure_nats_identities(cfg.run_dir, [host], monitor_port=cfg.nats_monitor_port)
    nc = await connect_as(cfg, f"hostd-{host}", f"hostd-usage-{host}")
    try:
        book = UsageBook()
        record(book, rounds or [])
        sub = await serve_usage(nc, host=host, book=book)
        await nc.flush()
        try:
            yield book
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()
