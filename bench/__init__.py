"""Benchmarks (bench/RESULTS.md).  Each one that starts processes removes them in its ``finally``."""
from __future__ import annotations

import signal


def unwind_on_sigterm() -> None:
    """SIGTERM (``timeout``, a supervisor) unwinds like Ctrl-C, through every ``finally``: without
    it the process died on the spot and left its NATS server, HAProxy, nft table and database
    behind (a fan-out run stopped by ``timeout`` left an HAProxy checking 25,000 servers)."""
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
