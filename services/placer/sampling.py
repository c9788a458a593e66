"""How many hosts one placement decision looks at, so its cost stops growing with the cluster.

Kubernetes' scheduler scores only ``percentageOfNodesToScore`` of the feasible nodes (adaptive:
50% minus one point per 125 nodes, never under 5%, never fewer than 100 nodes); Nomad's limit
iterator stops after a few feasible nodes.  Here a decision visits hosts in the snapshot's fixed
shuffled order from a start drawn from its seed, and stops once it has found ``wanted(n)`` feasible
hosts *and* they take the whole request; otherwise it looks further, up to every host — so a request
that does not fit still carries exact counts per reason.  ``max_hosts`` bounds the number wanted,
which is what makes a decision's cost independent of the cluster's size beyond it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sampling:
    percent: float = 0.0      # of the hosts; 0: adaptive, Kubernetes' formula
    min_hosts: int = 100      # never fewer (clusters this small are scored whole)
    max_hosts: int = 1000     # never more; 0: no bound

    @classmethod
    def from_settings(cls, s) -> Sampling:
        return cls(percent=s.score_percent, min_hosts=s.score_min_hosts, max_hosts=s.score_max_hosts)

    def wanted(self, n: int) -> int:
        """Feasible hosts a decision looks for in a cluster of ``n`` hosts."""
        pct = self.percent or max(5.0, 50.0 - n / 125)
        k = max(self.min_hosts, math.ceil(n * min(pct, 100.0) / 100))
        if self.max_hosts:
            k = min(k, max(self.max_hosts, self.min_hosts))
        return min(n, k)


EVERY_HOST = Sampling(percent=100.0, max_hosts=0)


def window(order: np.ndarray, start: int, size: int) -> np.ndarray:
    """``size`` host indexes of ``order`` from ``start`` on, wrapping around."""
    n = len(order)
    end = start + size
    if end <= n:
        return order[start:end]
    return np.concatenate((order[start:], order[:min(end - n, start)]))
