"""Message types carried on NATS, each defined once.  JSON on the wire (msgspec).

Unknown fields are rejected, so a malformed or foreign message is refused rather than
half-understood.  Payloads other systems consume (EndpointsChanged) carry a version ``v``.
"""
from __future__ import annotations

from typing import Literal, TypeVar

import msgspec

STATES = ("PENDING", "STARTING", "RUNNING", "FAILED", "KILLED", "LOST")
TERMINAL = frozenset({"FAILED", "KILLED", "LOST"})
InstanceState = Literal["PENDING", "STARTING", "RUNNING", "FAILED", "KILLED", "LOST"]


class Msg(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class DeployRequest(Msg):
    """'Look at app X again.'  Carries no desired state: the placer re-reads the task log."""
    app: str
    reason: str = ""


class PortSpec(Msg):
    name: str
    container_port: int
    protocol: str = "tcp"


class HealthCheckSpec(Msg):
    """One health check as hostd runs it (libs/appspec.py HealthCheck, port name resolved)."""
    protocol: Literal["HTTP", "TCP", "COMMAND"]
    name: str                     # how results name it: "http /health", "tcp http", "command ..."
    port: int = 0                 # container port (HTTP, TCP)
    path: str = "/"
    status_min: int = 200
    status_max: int = 399
    command: list[str] = []
    grace_period_s: float = 300.0
    interval_s: float = 60.0
    timeout_s: float = 20.0
    max_consecutive_failures: int = 3   # 0 = never kill


class SecuritySpec(Msg):
    """How hostd runs the container (libs/appspec.py Security); hostd adds its own defaults."""
    cap_add: list[str] = []       # capability names without CAP_, upper case
    user: str = ""                # user[:group]; "" = the image's
    read_only_rootfs: bool = False


MAX_STOP_TIMEOUT_S = 600          # ContainerSpec.stop_timeout_s: a stop holds its instance's lock this long at most


class ContainerSpec(Msg):
    image: str
    cmd: list[str]
    env: dict[str, str]
    labels: dict[str, str]
    cpus: float
    mem_mb: int
    ports: list[PortSpec]
    disk_mb: int = 0              # > 0: a volume of this size mounted at volume_path
    egress_mbit: int = 0          # > 0: egress limit installed on the container's interface
    volume_path: str = "/data"
    keep_volume: bool = False     # seam for stateful services: keep the volume when the instance stops
    health_checks: list[HealthCheckSpec] = []
    security: SecuritySpec = SecuritySpec()
    stop_timeout_s: int = 0       # SIGTERM → SIGKILL grace (appspec kill_grace_s); 0 = hostd's NOOPS_STOP_TIMEOUT_S


class Placement(Msg):
    """Start or stop one instance on one host.  ``epoch`` orders commands for the same instance."""
    instance: str
    app: str
    version: int
    host: str
    epoch: int
    action: Literal["start", "stop"]
    spec: ContainerSpec
    address: str = ""             # IPAM mode "pool": the address the placer reserved (CIDR form)


class Placements(Msg):
    """What travels on a host's placement subject: that host's placements from one commit, in
    order.  A deploy that puts 30 instances on one host is one message (one outbox row, one
    publish, one ack), not 30; at most ``PLACEMENTS_PER_MESSAGE`` items each."""
    host: str
    items: list[Placement]


PLACEMENTS_PER_MESSAGE = 64


class IpReport(Msg):
    """The container-IP report: which instance holds which container and address, from the host that made it."""
    instance: str
    app: str
    host: str
    epoch: int
    state: InstanceState
    container_id: str = ""
    ip: str = ""
    reason: str = ""
    at: float = 0.0
    mac: str = ""
    parent: str = ""              # the host NIC the container's interface hangs off
    lease_expires: float = 0.0    # IPAM mode "dhcp": when the lease runs out (unix time)
    # Health news (RUNNING reports only): hostd sends a report when the verdict of the
    # instance's health checks changes.  ``health`` "" = this report says nothing about health.
    healthy: bool | None = None
    health: str = ""              # the last result, e.g. "http /health: status 500"


class Heartbeat(Msg):
    host: str
    cpus: float
    mem_mb: int
    labels: dict[str, str]
    instances: int
    load1: float
    at: float
    disk_free_mb: dict[str, int] = {}   # free volume capacity per storage driver ("loop", "lvm")
    addresses_free: int = -1            # free container addresses; -1 = not limited by this host
    egress_mbit: int = 0                # egress bandwidth this host offers; 0 = not limited
    ipam: str = "dhcp"                  # "pool": the placer assigns addresses (Placement.address)
    ports_listening: list[int] = []     # TCP ports something listens on in the host's own namespace


class InventoryItem(Msg):
    instance: str
    app: str
    container_id: str
    state: str
    ip: str = ""
    epoch: int = 0                # the container's noops.epoch label (0: none)


class Inventory(Msg):
    """What one host holds right now, as the engine and the kernel say (hostd/inventory.py)."""
    host: str
    items: list[InventoryItem]
    volumes: list[str] = []       # instances with a volume on this host (loop image or LV)
    leases: list[str] = []        # instances with a DHCP lease in hostd's journal
    interfaces: list[str] = []    # noops macvlans left in the root namespace (never moved into a container)


SweepKind = Literal["container", "volume", "lease", "interface"]


class SweepItem(Msg):
    """One thing the reconciler found that nothing owns.  ``key``: the container id (container),
    the interface name (interface), "" otherwise.  hostd re-checks before acting: a container is
    removed only if it still has that id; a volume or lease only if no container of the instance
    exists on the host."""
    kind: SweepKind
    instance: str = ""
    key: str = ""
    reason: str = ""


class Sweep(Msg):
    """reconciler -> hostd (noops.sweep.<host>, request/reply): remove these (at most
    ``SWEEP_ITEMS_PER_MESSAGE``; hostd refuses the rest, to be asked again)."""
    host: str
    items: list[SweepItem]


SWEEP_ITEMS_PER_MESSAGE = 64


class SweepOutcome(Msg):
    item: SweepItem
    outcome: Literal["removed", "absent", "refused", "failed"]
    detail: str = ""


class SweepResult(Msg):
    host: str
    outcomes: list[SweepOutcome]


class UsageRequest(Msg):
    """gateway -> hostd (noops.usage.<host>, request/reply): the latest usage of its instances."""


class InstanceUsage(Msg):
    """One instance's usage as noops-init last counted it (services/hostd/usage.py).  ``cpu_cores``:
    CPU seconds per second between the host's last two scrapes that found the instance; None after
    the first one (nothing to compare with yet)."""
    instance: str
    app: str
    cpu_cores: float | None
    cpu_seconds: float
    memory_bytes: int
    ready: bool
    at: float                     # when scraped (unix time)


class Usage(Msg):
    """hostd -> gateway: instances of images with noops-init (the others have no stats), by
    instance id, at most ``USAGE_ITEMS_PER_MESSAGE``; ``truncated`` when the host had more."""
    host: str
    items: list[InstanceUsage]
    truncated: bool = False


# An item is at most ~330 bytes (76-character id, 63-character app, three 24-digit numbers), so a
# full reply stays near 330 KB, well under NATS's default max_payload (1 MiB).
USAGE_ITEMS_PER_MESSAGE = 1000


class SinkView(Msg):
    """What one sink holds, read back from the sink itself (not from the registry's cache).
    ``groups``: haproxy: "<lb port>" -> ["<server name> <ip>:<port>"] of servers taking traffic
    (those in maintenance, i.e. draining, are left out); nft: "<app>" -> ["<ip>"]; ipvs:
    "<vip>:<port>" -> ["<ip>:<port>"].  ``ok`` False: the sink could not be read (``error``)."""
    sink: str
    ok: bool
    groups: dict[str, list[str]] = {}
    error: str = ""


class SinksObserve(Msg):
    """reconciler -> registry (noops.sinks.observe; an empty body is the first page of a new read).
    A read of every sink is one snapshot, answered in pages that fit a NATS message."""
    snapshot: str = ""            # "" : read the sinks now; else the read a page continues
    offset: int = 0               # index of the first entry of the page asked for


class SinksObserved(Msg):
    """registry -> reconciler, one page of the answer to noops.sinks.observe: views holding the
    page's entries (a group may continue on the next page: merge them).  ``next_offset`` 0: the
    last page.  A page of another ``snapshot`` than asked for means that read expired: start again."""
    sinks: list[SinkView]
    snapshot: str = ""
    next_offset: int = 0


class SinksRepair(Msg):
    """reconciler -> registry (noops.sinks.repair, request/reply): sink name -> apps whose entries
    disagree with the task log.  The registry forgets what it believed that sink holds for them,
    reads the task log again and converges them (the answer is the same message, once queued)."""
    repairs: dict[str, list[str]]


class ReconcileNow(Msg):
    """gateway -> reconciler: run a round now (POST /v1/drift)."""
    reason: str = ""


class Endpoint(Msg, gc=False):
    """Not tracked by the garbage collector (it holds no reference cycle: strings and a dict of
    ints): the registry keeps one per in-service instance, and full collections walking them
    all paused it for tens of milliseconds."""
    instance: str
    host: str
    ip: str
    ports: dict[str, int]


class EndpointsChanged(Msg):
    """The in-service set of one app, complete: consumers replace what they had for the app."""
    app: str
    endpoints: list[Endpoint]
    seq: int
    v: int = 1


# Change events (noops.instance.<app>, noops.deployment.<app>, noops.host.<host>; docs/events.md).
# Written by PostgreSQL (migration 0015's triggers) into the outbox, so the field names there are
# these.  Each message is a batch: ``items`` in the order the changes were made; /v1/events sends
# one frame per item.  ``at``: unix time (the gateway sends RFC 3339).

class InstanceEvent(Msg, omit_defaults=True):
    """Defaults are left out on the wire: the placer announces 100,000 placements in seconds,
    and every byte of them goes through the outbox (the gateway's frames carry every field)."""
    app: str
    instance: str
    host: str
    state: InstanceState
    epoch: int
    version: int
    at: float
    health: Literal["healthy", "unhealthy"] | None = None   # the instance's verdict; None: none (yet)
    ip: str = ""
    desired: Literal["RUNNING", "KILLED"] = "RUNNING"
    reason: str = ""


class PlacedInstances(Msg):
    """Instances one commit of the placer placed (PENDING, reason "placed"), as columns: a
    quarter of the bytes of as many items, for the commit of 100,000 placements."""
    version: int
    at: float
    instances: list[str]
    hosts: list[str]
    epochs: list[int]


class InstanceEvents(Msg, omit_defaults=True):
    """One app's instance changes: ``items`` (migration 0015's trigger), or ``placed`` (the
    placer's commit).  ``changes()`` is both as items, in order."""
    app: str
    items: list[InstanceEvent] = []
    placed: PlacedInstances | None = None

    def changes(self) -> list[InstanceEvent]:
        p = self.placed
        if p is None:
            return self.items
        return self.items + [InstanceEvent(app=self.app, instance=i, host=h, state="PENDING", epoch=e,
                                           version=p.version, at=p.at, reason="placed")
                             for i, h, e in zip(p.instances, p.hosts, p.epochs)]


INSTANCE_EVENTS_PER_MESSAGE = 64   # items a message of migration 0015's trigger holds at most
PLACED_PER_MESSAGE = 1000          # placements an InstanceEvents.placed holds at most (~60 KB)


DeploymentState = Literal["running", "paused", "succeeded", "failed", "cancelled", "superseded"]


class DeploymentEvent(Msg):
    app: str
    deployment: int
    version: int
    from_version: int | None
    state: DeploymentState
    reason: str
    progress: dict[str, int]      # {"target", "new_running", "old_live"} once the placer measured it
    at: float


class DeploymentEvents(Msg):
    app: str
    items: list[DeploymentEvent]

    def changes(self) -> list[DeploymentEvent]:
        return self.items


class HostEvent(Msg):
    host: str
    state: Literal["UP", "DOWN"]
    draining: bool
    cordoned: bool
    epoch: int
    at: float


class HostEvents(Msg):
    items: list[HostEvent]

    def changes(self) -> list[HostEvent]:
        return self.items


EVENT_TYPES: dict[str, type[Msg]] = {"instance": InstanceEvents, "deployment": DeploymentEvents, "host": HostEvents}


M = TypeVar("M", bound=Msg)
T = TypeVar("T")
_encoder = msgspec.json.Encoder()


def encode(msg: Msg) -> bytes:
    return _encoder.encode(msg)


def decode(data: bytes, typ: type[M]) -> M:
    """Decode or raise ``msgspec.ValidationError`` / ``msgspec.DecodeError`` (both ``msgspec.MsgspecError``)."""
    return msgspec.json.decode(data, type=typ)


def encode_value(value: object) -> str:
    """Messages (or lists of them) as JSON text, e.g. for a container label."""
    return _encoder.encode(value).decode()


def decode_value(data: bytes, typ: type[T]) -> T:
    return msgspec.json.decode(data, type=typ)


DecodeError = msgspec.MsgspecError
