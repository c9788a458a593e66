"""hostd's Prometheus metrics.

Module-level on purpose (the exception to "no globals at import"): prometheus_client's default
registry, which /metrics serves, refuses a second registration of the same name, and tests run
hostd several times in one process.  These objects hold counters only, no behaviour.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge

PLACEMENTS = Counter("noops_hostd_placements_total", "Placements handled, by action and outcome",
                     ["action", "outcome"])
REPORTS = Counter("noops_hostd_reports_total", "IpReports published, by state", ["state"])
DIE_EVENTS = Counter("noops_hostd_die_events_total", "Container 'die' events seen, by kind",
                     ["kind"])
OOM_EVENTS = Counter("noops_hostd_oom_events_total", "Container 'oom' events seen (memory limit hit)")
EVENT_RECONNECTS = Counter("noops_hostd_event_stream_reconnects_total",
                           "Times the Docker event stream broke and was opened again")
CONTAINERS = Gauge("noops_hostd_containers", "This cluster's containers on this host at the last heartbeat")
HEALTH = Counter("noops_hostd_health_transitions_total",
                 "Health verdict changes reported (true/false) and instances killed by their checks",
                 ["verdict"])
SWEEPS = Counter("noops_hostd_sweeps_total",
                 "Sweep items handled (orphans and leaks the reconciler named), by kind and outcome",
                 ["kind", "outcome"])
