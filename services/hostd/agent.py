"""Placement handling: make this host's containers match what the placer asked, idempotently.

Every handler treats its input as "look at instance X again": it re-lists the instance's
containers on the engine and acts from what it finds, so a redelivered or repeated placement
adopts instead of duplicating.  What to do is decided purely (decide.py) from those containers,
the highest epoch acted on and the instance's tombstone, so a start that comes after its own
stop (redelivered, reordered) is ignored instead of recreating the instance.  One instance is handled by one coroutine at a time (a lock per
instance, shared with the die-event handler so a FAILED never overtakes the RUNNING before it);
different instances run concurrently up to a bound.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from nats.aio.msg import Msg

from libs import bus, messages, retry
from services.hostd import metrics
from services.hostd.adoption import Adoption
from services.hostd.deaths import Deaths
from services.hostd.decide import Act, Decision, Known, decide, found
from services.hostd.lifecycle import Lifecycle
from services.hostd.runtime import RuntimeRefused, RuntimeUnavailable
from services.hostd.sweep import Sweeping
from services.hostd.volumes import VolumeError

log = logging.getLogger("noops.hostd.agent")


def _combined(verdicts: list[bus.Verdict]) -> bus.Verdict:
    """A message's verdict from its placements': again after the shortest delay if any must retry."""
    retries = [v for v in verdicts if v.outcome is bus.Outcome.NAK]
    return min(retries, key=lambda v: v.delay_s) if retries else bus.ACK


def retry_delay(num_delivered: int) -> float:
    """Per-message backoff for a transient failure: the one retry policy (libs/retry.py)."""
    return retry.DEFAULT.backoff(num_delivered)


class Agent(Adoption, Lifecycle, Deaths, Sweeping):
    """hostd's agent: adoption at start, placements, deaths and health news, sweeps (one part per file)."""

    # ------------------------------------------------------------ placements

    async def handle_batch(self, msgs: list[Msg]) -> list[bus.Verdict]:
        """bus.pull_loop handler: one verdict per message, each after its reports were published.
        A message carries several placements (messages.Placements); it is acked when all of them
        are done, else delivered again after the shortest retry delay among them -- applying a
        placement twice is harmless (a start adopts the running container, a stop finds none)."""
        results: list[list[bus.Verdict] | None] = [None] * len(msgs)   # None: not for us, TERM
        groups: dict[str, list[tuple[int, int, Msg, messages.Placement]]] = defaultdict(list)
        for i, msg in enumerate(msgs):
            items = self._parse(msg)
            if items is None:
                continue
            results[i] = [bus.ACK] * len(items)
            for j, placement in enumerate(items):
                groups[placement.instance].append((i, j, msg, placement))

        async def run_group(instance: str, items: list[tuple[int, int, Msg, messages.Placement]]) -> None:
            # Lock before slot: waiting on a busy instance must not hold one of the slots.  Stops
            # have slots of their own: cheap for the engine, and never queued behind starts.
            stops_only = all(p.action == "stop" for _, _, _, p in items)
            async with self._locks.hold(instance), (self._stop_slots if stops_only else self._slots):
                for i, j, msg, placement in items:  # in delivery order
                    results[i][j] = await self._handle_one(msg, placement)   # type: ignore[index]

        await asyncio.gather(*(run_group(k, v) for k, v in groups.items()))
        return [bus.TERM if r is None else _combined(r) for r in results]

    def _parse(self, msg: Msg) -> list[messages.Placement] | None:
        """The placements of one message for this host, or None (malformed or misrouted: TERM)."""
        try:
            batch = messages.decode(msg.data, messages.Placements)
        except messages.DecodeError as exc:
            log.error("malformed placement dropped", extra={"subject": msg.subject, "error": str(exc),
                                                            "data": msg.data[:200].decode(errors="replace")})
            metrics.PLACEMENTS.labels("?", "malformed").inc()
            return None
        if batch.host != self.host or any(p.host != self.host for p in batch.items):
            log.error("placement for another host dropped", extra={
                "for_host": batch.host, "instances": [p.instance for p in batch.items][:20]})
            for p in batch.items:
                metrics.PLACEMENTS.labels(p.action, "misrouted").inc()
            return None
        return batch.items

    async def _handle_one(self, msg: Msg, p: messages.Placement) -> bus.Verdict:
        try:
            decision = await self.apply(p)
        except Exception as exc:
            delay = retry_delay(_num_delivered(msg))
            extra = {"instance": p.instance, "action": p.action, "epoch": p.epoch, "retry_in_s": delay,
                     "error": str(exc) or type(exc).__name__}
            if isinstance(exc, RuntimeUnavailable | RuntimeRefused | VolumeError):
                log.warning("placement failed for now; will retry", extra=extra)
            else:
                log.exception("placement failed unexpectedly; will retry", extra=extra)
            metrics.PLACEMENTS.labels(p.action, "retry").inc()
            return bus.nak(delay)
        metrics.PLACEMENTS.labels(p.action, decision.outcome).inc()
        return bus.ACK

    async def apply(self, p: messages.Placement) -> Decision:
        """Decide on one placement from what is known of its instance, then act (the caller holds
        the instance's lock).  Raises on transient trouble (engine away, report not published)."""
        existing = await self._instance_containers(p.instance)
        seen = self._epochs.get(p.instance, 0)
        d = decide(p.action, p.epoch, Known(found=found(c.state for c in existing), seen_epoch=seen,
                                            tombstone=self.tombstones.get(p.instance)))
        if d.act is Act.IGNORE:
            log.info("placement ignored", extra={"instance": p.instance, "epoch": p.epoch, "action": p.action,
                                                 "seen_epoch": seen, "outcome": d.outcome, "reason": d.reason})
            return d
        self._epochs[p.instance] = max(seen, p.epoch)
        if d.act is Act.STOP:
            await self._stop(p, existing)
        else:  # ADOPT or CREATE: _start re-checks the running one (it may die meanwhile)
            await self._start(p, existing)
        return d


def _num_delivered(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:  # not a JetStream message (tests calling apply directly)
        return 1
