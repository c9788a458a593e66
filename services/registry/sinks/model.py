"""What a sink is told: per app, its complete in-service set and where the LB serves each port."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from libs.messages import Endpoint


@dataclass(frozen=True)
class LbPort:
    """Where the load balancer serves one named port of an app (persisted in ``lb_ports``)."""
    bind_host: str
    port: int


@dataclass(frozen=True)
class AppState:
    """One app as the task log has it now.  ``endpoints`` is the complete in-service set (sorted by
    instance); an app with no endpoints (scaled to zero, deleted) keeps its LB ports."""
    app: str
    endpoints: tuple[Endpoint, ...] = ()
    lb: Mapping[str, LbPort] = field(default_factory=dict)
    read_at: float = 0.0   # monotonic time the task log was read (lag is measured from here)

    def ips(self) -> frozenset[str]:
        return frozenset(e.ip for e in self.endpoints if e.ip)

    def targets(self, port_name: str) -> dict[str, tuple[str, int]]:
        """instance -> (ip, container port) for the endpoints that expose ``port_name``."""
        return {e.instance: (e.ip, e.ports[port_name]) for e in self.endpoints
                if e.ip and port_name in e.ports}


Desired = Mapping[str, AppState]   # app id -> state; a full snapshot or a batch of changed apps
