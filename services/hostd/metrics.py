"""hostd's Prometheus metrics.

Module-level on purpose (the exception to "no globals at import"): prometheus_client's default
registry, which /metrics serves, refuses a second registration of the same name, and tests run
hostd several times in one process.  These objects hold counters only, no behaviour.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

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


class InstanceStats:
    """noops-init's stats of each instance (services/hostd/initstats.py), as of the last scrape
    round of each hostd in this process.  A round replaces its host's whole mapping."""

    def __init__(self) -> None:
        self._by_host: dict[str, Mapping[str, tuple[str, Any]]] = {}

    def publish(self, host: str, stats: Mapping[str, tuple[str, Any]]) -> None:
        self._by_host[host] = dict(stats)

    def forget(self, host: str) -> None:
        self._by_host.pop(host, None)

    def collect(self) -> Iterator[Metric]:
        cpu = CounterMetricFamily("noops_instance_cpu_seconds", "CPU seconds of the instance's app process tree "
                                  "(noops-init's stats)", labels=["app", "instance"])
        mem = GaugeMetricFamily("noops_instance_memory_bytes", "Resident memory of the instance's app process tree",
                                labels=["app", "instance"])
        ready = GaugeMetricFamily("noops_instance_ready", "1 when noops-init finds the instance ready",
                                  labels=["app", "instance"])
        counters = GaugeMetricFamily("noops_instance_counter", "App-defined counters (/run/noops/counters)",
                                     labels=["app", "instance", "name"])
        for stats in list(self._by_host.values()):
            for instance, (app, s) in sorted(stats.items()):
                cpu.add_metric([app, instance], s.cpu_seconds)
                mem.add_metric([app, instance], s.memory_bytes)
                ready.add_metric([app, instance], 1.0 if s.ready else 0.0)
                for name, value in s.counters:
                    counters.add_metric([app, instance, name], value)
        yield from (cpu, mem, ready, counters)


INSTANCE_STATS = InstanceStats()
REGISTRY.register(INSTANCE_STATS)  # type: ignore[arg-type]
