"""Read back and repair, for the reconciler (which compares; the registry owns the sinks).

    noops.sinks.observe (request) ─> every enabled sink's observe(), concurrently, each read from
                                     the sink itself ─> one snapshot, answered in pages that fit a
                                     NATS message (SinksObserved; the requester asks for the next
                                     page with the snapshot's id and next_offset).  A sink that
                                     cannot be read: ok=False with the error; the others still answer
    noops.sinks.repair  (request) ─> queue sink -> apps ─> answer at once: the SinksRepair queued
                                     └─> repair loop: Fanout.read(apps) (the task log) ─> that
                                         sink's SinkRunner.submit_repair: the sink forgets what it
                                         believes it holds for them, in the runner's own task, and
                                         converges them like any change

Level-triggered like the fan-out: a repair names apps, never entries; what a sink is given is
re-read from the task log.  Going through the runner's queue keeps one task driving each sink.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import Counter

from libs import messages, retry, subjects
from services.registry.sinks.model import Desired
from services.registry.sinks.runner import SinkRunner

log = logging.getLogger("noops.registry.sinkwatch")

REPAIRS = Counter("noops_registry_sink_repairs_total", "Apps handed to a sink for repair (noops.sinks.repair)",
                  ["sink"])

# A sink that does not answer within this is reported unreadable; the reconciler asks again next round.
OBSERVE_TIMEOUT_S = 5.0

Reader = Callable[[list[str]], Awaitable[Desired]]   # Fanout.read: apps -> their states from the task log

# A snapshot's later pages are served from memory this long after the read (a requester walks the
# pages at once; one that comes back later gets a fresh read).
SNAPSHOT_TTL_S = 30.0
# One page's entries, in bytes of member text, at most this share of the server's max_payload
# (the JSON around them and the group keys fit in the rest).
PAGE_SHARE = 0.5

Entry = tuple[int, str | None, str | None]   # (view index, group or None: unreadable, member or None: empty group)


def flatten(views: Sequence[messages.SinkView]) -> list[Entry]:
    """Every view as entries (pure): an unreadable view is one entry, an empty group one entry."""
    out: list[Entry] = []
    for i, v in enumerate(views):
        if not v.ok:
            out.append((i, None, None))
            continue
        for group in sorted(v.groups):
            members = v.groups[group]
            out.extend((i, group, m) for m in members) if members else out.append((i, group, None))
    return out


def page(views: Sequence[messages.SinkView], entries: Sequence[Entry], offset: int, max_bytes: int
         ) -> tuple[list[messages.SinkView], int]:
    """The views holding ``entries[offset:]`` up to ``max_bytes`` of text, and the next offset
    (0: this page is the last) (pure).  At least one entry per page, so a page always advances."""
    groups: dict[int, dict[str, list[str]]] = {}
    unreadable: set[int] = set()
    size, k = 0, offset
    while k < len(entries):
        i, group, member = entries[k]
        cost = 8 + len(group or "") + len(member or "")
        if k > offset and size + cost > max_bytes:
            break
        size += cost
        if group is None:
            unreadable.add(i)
        else:
            members = groups.setdefault(i, {}).setdefault(group, [])
            if member is not None:
                members.append(member)
        k += 1
    out = [messages.SinkView(sink=views[i].sink, ok=False, error=views[i].error) for i in sorted(unreadable)]
    out += [messages.SinkView(sink=views[i].sink, ok=True, groups=g) for i, g in sorted(groups.items())]
    if offset == 0:   # a view with nothing at all (no groups) still says it was read
        seen = unreadable | set(groups)
        out += [messages.SinkView(sink=v.sink, ok=True) for i, v in enumerate(views) if i not in seen and v.ok]
    return out, (k if k < len(entries) else 0)


def accepted(req: messages.SinksRepair, known: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
    """(sink -> sorted app ids to repair, what was refused) (pure).  Only enabled sinks and app ids
    of the task log's form (they end up in nft set names and HAProxy lookups)."""
    names = set(known)
    out: dict[str, list[str]] = {}
    refused: list[str] = []
    for sink, apps in sorted(req.repairs.items()):
        if sink not in names:
            refused.append(f"sink {sink!r:.40}")
            continue
        good = sorted({a for a in apps if subjects.TOKEN_RE.fullmatch(a)})
        refused += [f"app {a!r:.70}" for a in sorted(set(apps) - set(good))]
        if good:
            out[sink] = good
    return out, refused


class SinkWatch:
    def __init__(self, runners: Sequence[SinkRunner], read: Reader | None, *, policy: retry.Policy = retry.DEFAULT,
                 observe_timeout_s: float = OBSERVE_TIMEOUT_S) -> None:
        """``read`` may be None only without runners (NOOPS_SINKS=""): nothing is ever queued."""
        self.runners = {r.name: r for r in runners}
        self.read, self.policy, self.observe_timeout_s = read, policy, observe_timeout_s
        self._pending: dict[str, set[str]] = {}
        self._wake = asyncio.Event()
        # The last read: (id, taken at (monotonic), views, entries); later pages come from it.
        self._snapshot: tuple[str, float, list[messages.SinkView], list[Entry]] | None = None
        self._max_payload = 1 << 20   # the server's, once serve() connected

    # ------------------------------------------------------------------ observe
    async def observe(self) -> messages.SinksObserved:
        async def one(r: SinkRunner) -> messages.SinkView:
            try:
                return await asyncio.wait_for(r.sink.observe(), self.observe_timeout_s)
            except Exception as exc:   # one sink's trouble is that sink's answer, not the others'
                return messages.SinkView(sink=r.name, ok=False, error=retry.describe(exc))
        return messages.SinksObserved(sinks=list(await asyncio.gather(*map(one, self.runners.values()))))

    # ------------------------------------------------------------------ repair
    def queue(self, repairs: Mapping[str, Iterable[str]]) -> None:
        for sink, apps in repairs.items():
            self._pending.setdefault(sink, set()).update(apps)
        if self._pending:
            self._wake.set()

    async def run(self) -> None:
        """The repair loop: read the queued apps once from the task log, hand each sink its own."""
        failures = retry.Failures(self.policy)
        while True:
            if not self._pending:
                await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, {}
            assert self.read is not None, "repairs are queued only for enabled sinks"
            try:
                states = await self.read(sorted(set().union(*pending.values())))
            except Exception as exc:
                self.queue(pending)      # kept: tried again after the pause
                if not retry.is_transient(exc):
                    raise                # a bug: the supervisor logs and restarts the loop
                delay = failures.failed()
                log.warning("sink repair: task log read failed; retrying",
                            extra={"error": retry.describe(exc), "retry_in_s": round(delay, 2)})
                await asyncio.sleep(delay)
                continue
            failures.ok()
            for sink, apps in sorted(pending.items()):
                self.runners[sink].submit_repair({a: states[a] for a in apps if a in states})
                REPAIRS.labels(sink).inc(len(apps))
                log.info("sink repair handed to the runner", extra={"sink": sink, "apps": sorted(apps)[:20],
                                                                   "count": len(apps)})

    async def observe_page(self, req: messages.SinksObserve, max_bytes: int) -> messages.SinksObserved:
        snap = self._snapshot
        if not req.snapshot or snap is None or snap[0] != req.snapshot or time.monotonic() - snap[1] > SNAPSHOT_TTL_S:
            views = (await self.observe()).sinks
            snap = self._snapshot = (uuid.uuid4().hex, time.monotonic(), views, flatten(views))
            offset = 0
        else:
            offset = max(0, req.offset)
        sid, _, views, entries = snap
        sinks, nxt = page(views, entries, offset, max_bytes)
        return messages.SinksObserved(sinks=sinks, snapshot=sid, next_offset=nxt)

    # ------------------------------------------------------------------ NATS
    async def on_observe(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            req = messages.decode(msg.data, messages.SinksObserve) if msg.data else messages.SinksObserve()
        except messages.DecodeError as exc:
            log.warning("sinks observe: malformed request, answered as a new read", extra={"error": str(exc)[:200]})
            req = messages.SinksObserve()
        try:
            max_bytes = int(self._max_payload * PAGE_SHARE)
            await msg.respond(messages.encode(await self.observe_page(req, max_bytes)))
        except Exception as exc:   # NATS away: the requester times out and asks again
            log.warning("sinks observe not answered", extra={"error": retry.describe(exc)})

    async def on_repair(self, msg: Msg) -> None:
        try:
            req = messages.decode(msg.data, messages.SinksRepair)
        except messages.DecodeError as exc:
            log.warning("sinks repair refused: malformed request", extra={"error": str(exc)[:200]})
            queued: dict[str, list[str]] = {}
        else:
            queued, refused = accepted(req, self.runners)
            if refused:
                log.warning("sinks repair: refused part of the request", extra={"refused": refused[:20]})
            self.queue(queued)
        if not msg.reply:
            return
        try:
            await msg.respond(messages.encode(messages.SinksRepair(repairs=queued)))
        except Exception as exc:
            log.warning("sinks repair not answered", extra={"error": retry.describe(exc)})

    async def serve(self, nc: NATS) -> list[Subscription]:
        """Subscribe both subjects; the caller unsubscribes (or closes the connection) at shutdown."""
        self._max_payload = nc.max_payload or self._max_payload
        subs = [await nc.subscribe(subjects.SINKS_OBSERVE, cb=self.on_observe),
                await nc.subscribe(subjects.SINKS_REPAIR, cb=self.on_repair)]
        await nc.flush()   # the server has both subscriptions: a request from now on finds a responder
        return subs
