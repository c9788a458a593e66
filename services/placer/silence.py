"""Who is really gone: the pure judgement behind marking hosts DOWN.  No I/O; ``now`` is passed in.

A host is judged by the heartbeats this placer *heard*, not by what the task log last wrote:
a database hiccup delays the writes but not the hearing.  Three rules keep a fault of the
placer's own view from looking like dead hosts (the anchors: Kubernetes' node lifecycle
controller, Nomad's heartbeat grace):

1. Deaf placer, no verdict.  While the placer is not connected to the bus, and for
   ``lost_after_s`` after it (re)connects or becomes leader, nobody's silence counts: the hosts
   need that long to be heard again.
2. Everyone silent is the placer's problem.  When more than ``mass_silence_share`` of the
   hosts that were up are silent at once, the likeliest cause is between the placer and the
   hosts (a bus outage, a partition), not that many hosts died together: nothing is marked DOWN,
   and the event is logged and counted.  Kubernetes does the same when every zone is fully
   disrupted ("assumes a problem with connectivity between the control plane and the nodes").
3. Evictions are rate-limited by a token bucket (``eviction_rate_per_s``, ``eviction_burst``),
   so a flapping network cannot move the whole cluster at once; the hosts held back stay silent
   and are judged again at the next sweep.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Policy:
    lost_after_s: float = 10.0
    mass_silence_share: float = 0.55
    eviction_rate_per_s: float = 0.5
    eviction_burst: float = 3.0


@dataclass(frozen=True)
class Verdict:
    down: tuple[str, ...] = ()       # mark these DOWN now
    silent: tuple[str, ...] = ()     # every host past lost_after_s (down + held)
    held: str = ""                   # why silent hosts were not marked (empty: none held)
    tokens: float = 0.0              # the bucket after this verdict


@dataclass
class Ears:
    """What this placer heard: the time it last heard each up host, and since when it has been
    able to hear at all (``None``: not connected now).  Times are the caller's monotonic clock."""

    heard: dict[str, float] = field(default_factory=dict)
    listening_since: float | None = None

    def hear(self, host: str, now: float) -> None:
        self.heard[host] = now

    def watch(self, hosts: Iterable[str], now: float) -> None:
        """Hosts the task log has UP that this placer has not heard yet (a new leader's start)."""
        for h in hosts:
            self.heard.setdefault(h, now)

    def forget(self, hosts: Iterable[str]) -> None:
        for h in hosts:
            self.heard.pop(h, None)

    def deaf(self) -> None:
        self.listening_since = None

    def listening(self, now: float) -> None:
        if self.listening_since is None:
            self.listening_since = now


def judge(ears: Ears, now: float, policy: Policy, tokens: float, last_now: float) -> Verdict:
    """Which of the heard hosts to mark DOWN now.  ``tokens`` and ``last_now`` are the bucket as
    the previous verdict left it (and when)."""
    tokens = min(policy.eviction_burst, tokens + max(0.0, now - last_now) * policy.eviction_rate_per_s)
    if ears.listening_since is None:
        return Verdict(held="not connected to the bus", tokens=tokens)
    since = ears.listening_since
    if now - since <= policy.lost_after_s:
        return Verdict(tokens=tokens)   # still giving everyone the chance to be heard
    # Longest silent first: the rate limit lets those go before the ones that just fell quiet.
    silent = sorted((h for h, t in ears.heard.items() if now - max(t, since) > policy.lost_after_s),
                    key=lambda h: (ears.heard[h], h))
    if not silent:
        return Verdict(tokens=tokens)
    if len(silent) > policy.mass_silence_share * len(ears.heard):
        return Verdict(silent=tuple(silent), tokens=tokens,
                       held=f"{len(silent)} of {len(ears.heard)} hosts silent at once "
                            f"(more than {policy.mass_silence_share:.0%}): assuming the placer cannot hear them")
    n = min(len(silent), int(tokens))
    held = f"eviction rate limit ({policy.eviction_rate_per_s:g} hosts/s)" if n < len(silent) else ""
    return Verdict(down=tuple(silent[:n]), silent=tuple(silent), held=held, tokens=tokens - n)

