"""The reconciler's pure core: what the task log wants, what every other system holds, and what to
do about each difference.  No I/O and no clock: ``compute(desired, observed, memory, now, policy)``
returns the findings, the actions and the memory to pass in next time (views.py gathers the
inputs, act.py carries the actions out).

Level-triggered: every round compares complete states; nothing here replays events.  A
difference is acted on only once it has been seen for ``policy.grace_s`` across at least two
rounds (``memory``: finding key -> when first seen), because every view is taken at a slightly
different moment: an inventory taken just before a container started, a sink a few milliseconds
behind the task log, a placement in flight.  A finding that goes away is forgotten.

What is compared, and what a difference leads to (kinds):

    task log RUNNING here, host runs no container for it     missing          -> LOST (placer replaces)
    container whose instance the task log does not place   orphan           -> sweep container (hostd)
      on this host at this epoch, or whose instance ended
    both know the instance, with different container ids   container_mismatch (reported)
    volume / lease of an instance not placed here           leaked_volume, leaked_lease -> sweep
    noops macvlan left in a host's root namespace           leaked_interface -> sweep
    host did not answer its inventory                       unreachable      (reported; its items unjudged)
    sink entry that should not be there / that is missing   sink_extra, sink_missing -> repair app in sink
    sink that could not be read                             sink_unreadable  (reported)
    Prometheus target not in service / in service, no target prometheus_extra, prometheus_missing (reported:
                                                             Prometheus pulls from the task log itself)
    host UP in the task log, silent for host_silent_s        host_silent      (reported: the placer owns hosts)
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from libs.messages import TERMINAL, Inventory, SinkView, SweepItem

MISSING = "missing"
ORPHAN = "orphan"
CONTAINER_MISMATCH = "container_mismatch"
LEAKED_VOLUME = "leaked_volume"
LEAKED_LEASE = "leaked_lease"
LEAKED_INTERFACE = "leaked_interface"
UNREACHABLE = "unreachable"
SINK_EXTRA = "sink_extra"
SINK_MISSING = "sink_missing"
SINK_UNREADABLE = "sink_unreadable"
PROMETHEUS_EXTRA = "prometheus_extra"
PROMETHEUS_MISSING = "prometheus_missing"
HOST_SILENT = "host_silent"
KINDS = (MISSING, ORPHAN, CONTAINER_MISMATCH, LEAKED_VOLUME, LEAKED_LEASE, LEAKED_INTERFACE, UNREACHABLE,
         SINK_EXTRA, SINK_MISSING, SINK_UNREADABLE, PROMETHEUS_EXTRA, PROMETHEUS_MISSING, HOST_SILENT)

# What each kind leads to once confirmed (kinds absent here are only reported).
LOSE, SWEEP, REPAIR = "lose", "sweep", "repair"
ACTION_OF = {MISSING: LOSE, ORPHAN: SWEEP, LEAKED_VOLUME: SWEEP, LEAKED_LEASE: SWEEP, LEAKED_INTERFACE: SWEEP,
             SINK_EXTRA: REPAIR, SINK_MISSING: REPAIR}
SWEEP_KIND = {ORPHAN: "container", LEAKED_VOLUME: "volume", LEAKED_LEASE: "lease", LEAKED_INTERFACE: "interface"}


@dataclass(frozen=True)
class Instance:
    """One instance as the task log has it."""
    id: str
    app: str
    host: str
    state: str
    epoch: int = 0
    container_id: str = ""

    @property
    def live(self) -> bool:
        return self.state not in TERMINAL


@dataclass(frozen=True)
class Endpoint:
    """One in-service instance (the SQL rule noops_in_service) with its named container ports."""
    instance: str
    ip: str
    ports: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Desired:
    """What the task log says, read after the hosts answered (see views.py for why).
    ``instances``: every live instance, and the ended ones the inventories name.
    ``in_service``: app -> its in-service set.  ``lb_ports``: load-balancer port -> (app, port name).
    ``silent_hosts``: hosts UP in the task log whose last heartbeat is older than host_silent_s."""
    instances: Mapping[str, Instance] = field(default_factory=dict)
    in_service: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    lb_ports: Mapping[int, tuple[str, str]] = field(default_factory=dict)
    silent_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Observed:
    """What the other systems hold.  ``inventories``: host -> its answer (None: no answer); hosts
    absent are not judged.  ``sinks``: the registry's read-back (None: the registry did not answer).
    ``prometheus``: (instance, port name) of Prometheus' active noops targets (None: not compared)."""
    inventories: Mapping[str, Inventory | None] = field(default_factory=dict)
    sinks: tuple[SinkView, ...] | None = None
    prometheus: frozenset[tuple[str, str]] | None = None


@dataclass(frozen=True)
class Policy:
    grace_s: float = 10.0           # a difference must last this long (and two rounds) to be acted on
    max_actions: int = 1000         # per round and action kind; the rest wait for the next round
    dry_run: bool = False           # find and report, never act
    prometheus_grace_s: float = 30.0  # Prometheus re-reads discovery on its own refresh: younger differences are not drift


@dataclass(frozen=True)
class Finding:
    kind: str
    where: str                      # host name, "sink:<name>", "prometheus"
    instance: str = ""
    detail: str = ""
    app: str = ""
    key: str = ""                   # what the action needs: container id, interface name, sink group
    since: float = 0.0              # when first seen
    action: str = ""                # "" (report only) | "wait" (grace) | "deferred" (rate limit) |
                                    # "dry-run" | "lose" | "sweep" | "repair"

    @property
    def memory_key(self) -> str:
        return f"{self.kind}|{self.where}|{self.instance}|{self.key}|{self.detail if self.kind.startswith('sink') else ''}"


@dataclass(frozen=True)
class Actions:
    lose: tuple[str, ...] = ()                                   # instance ids to mark LOST
    sweeps: Mapping[str, tuple[SweepItem, ...]] = field(default_factory=dict)   # host -> items
    repairs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)        # sink -> apps

    def __bool__(self) -> bool:
        return bool(self.lose or self.sweeps or self.repairs)


@dataclass(frozen=True)
class Result:
    findings: tuple[Finding, ...]
    actions: Actions
    memory: Mapping[str, float]
    counts: Mapping[str, int]


# ---------------------------------------------------------------------------- comparing hosts

def _host_findings(host: str, inv: Inventory | None, placed_here: Mapping[str, Instance],
                   instances: Mapping[str, Instance]) -> Iterable[Finding]:
    if inv is None:
        yield Finding(UNREACHABLE, host, detail=f"{len(placed_here)} instances unverified")
        return
    seen = {i.instance: i for i in inv.items}
    for iid, p in placed_here.items():
        item = seen.get(iid)
        if p.state == "RUNNING" and (item is None or item.state != "running"):
            yield Finding(MISSING, host, iid, "no container" if item is None else f"container {item.state}", p.app)
    for item in inv.items:
        p = instances.get(item.instance)
        if item.state != "running":
            continue   # hostd removes dead ones itself (die events, adoption, the next start)
        if p is None:
            why = "no task for this instance"
        elif not p.live:
            why = f"instance ended ({p.state})"
        elif p.host != host:
            why = f"task log places it on {p.host}"
        elif item.epoch and p.epoch and item.epoch != p.epoch:
            why = f"epoch {item.epoch}, task log {p.epoch}"
        else:
            if p.container_id and item.container_id != p.container_id:
                yield Finding(CONTAINER_MISMATCH, host, item.instance,
                              f"task log {p.container_id[:12]}, host {item.container_id[:12]}", p.app)
            continue
        yield Finding(ORPHAN, host, item.instance, f"container {item.container_id[:12]}: {why}", item.app,
                      key=item.container_id)
    with_container = set(seen)
    for kind, names in ((LEAKED_VOLUME, inv.volumes), (LEAKED_LEASE, inv.leases)):
        for iid in names:
            p = instances.get(iid)
            if iid in with_container or (p is not None and p.live and p.host == host):
                continue   # in use, or made for a start in progress
            what = "volume" if kind == LEAKED_VOLUME else "lease"
            yield Finding(kind, host, iid, f"{what} of {'an unknown instance' if p is None else 'an ended instance' if not p.live else 'an instance placed on ' + p.host}",
                          "" if p is None else p.app)
    for name in inv.interfaces:
        yield Finding(LEAKED_INTERFACE, host, detail=f"macvlan {name} left in the root namespace", key=name)


# ---------------------------------------------------------------------------- comparing sinks

def _wanted(view: SinkView, desired: Desired) -> Iterable[tuple[str, str, set[str]]]:
    """(group, app, wanted members) for every group the sink has or should have."""
    if view.sink == "nft":
        for app in sorted(set(view.groups) | set(desired.in_service)):
            yield app, app, {e.ip for e in desired.in_service.get(app, ()) if e.ip and ":" not in e.ip}
        return
    # haproxy ("<port>") and ipvs ("<vip>:<port>"): one group per load-balancer port.
    group_of: dict[int, str] = {}
    for g in view.groups:
        port = g.rpartition(":")[2]
        if port.isdigit():
            group_of[int(port)] = g
    for port in sorted(set(group_of) | set(desired.lb_ports)):
        group = group_of.get(port, str(port))
        app_pname = desired.lb_ports.get(port)
        if app_pname is None:
            yield group, "", set()
            continue
        app, pname = app_pname
        eps = [e for e in desired.in_service.get(app, ()) if e.ip and pname in e.ports]
        if view.sink == "haproxy":
            yield group, app, {f"{e.instance} {e.ip}:{e.ports[pname]}" for e in eps}
        else:
            yield group, app, {f"{e.ip}:{e.ports[pname]}" for e in eps}


def _sink_findings(view: SinkView, desired: Desired) -> Iterable[Finding]:
    where = f"sink:{view.sink}"
    if not view.ok:
        yield Finding(SINK_UNREADABLE, where, detail=view.error[:300])
        return
    for group, app, want in _wanted(view, desired):
        have = set(view.groups.get(group, ()))
        for m in sorted(have - want):
            yield Finding(SINK_EXTRA, where, _instance_of(m), f"{group}: {m}", app,
                          key=group)
        for m in sorted(want - have):
            yield Finding(SINK_MISSING, where, _instance_of(m), f"{group}: {m}", app, key=group)


def _instance_of(member: str) -> str:
    return member.split(" ", 1)[0] if " " in member else ""


def _prometheus_findings(targets: frozenset[tuple[str, str]], desired: Desired) -> Iterable[Finding]:
    want = {(e.instance, pname): app for app, eps in desired.in_service.items() for e in eps for pname in e.ports}
    for inst, pname in sorted(targets - want.keys()):
        yield Finding(PROMETHEUS_EXTRA, "prometheus", inst, f"target {inst}/{pname} is not in service")
    for (inst, pname), app in sorted(want.items()):
        if (inst, pname) not in targets:
            yield Finding(PROMETHEUS_MISSING, "prometheus", inst, f"no target for {inst}/{pname}", app)


# ---------------------------------------------------------------------------- the whole round

def compare(desired: Desired, observed: Observed) -> list[Finding]:
    """Every difference between the task log and the views (pure, no grace applied)."""
    by_host: dict[str, dict[str, Instance]] = defaultdict(dict)
    for p in desired.instances.values():
        if p.live:
            by_host[p.host][p.id] = p
    out: list[Finding] = []
    for host, inv in observed.inventories.items():
        out.extend(_host_findings(host, inv, by_host.get(host, {}), desired.instances))
    for view in observed.sinks or ():
        out.extend(_sink_findings(view, desired))
    if observed.prometheus is not None:
        out.extend(_prometheus_findings(observed.prometheus, desired))
    out.extend(Finding(HOST_SILENT, h, detail="UP in the task log, no heartbeat") for h in desired.silent_hosts)
    return out


def compute(desired: Desired, observed: Observed, memory: Mapping[str, float], now: float,
            policy: Policy = Policy()) -> Result:
    """Findings with their action, the actions to carry out, and the memory for the next round."""
    found = compare(desired, observed)
    new_memory: dict[str, float] = {}
    findings: list[Finding] = []
    lose: list[str] = []
    sweeps: dict[str, list[SweepItem]] = defaultdict(list)
    repairs: dict[str, set[str]] = defaultdict(set)
    budget = defaultdict(lambda: policy.max_actions)
    counts = dict.fromkeys(KINDS, 0)
    for f in found:
        counts[f.kind] += 1
        key = f.memory_key
        since = memory.get(key, now)
        new_memory[key] = since
        if f.kind in (PROMETHEUS_EXTRA, PROMETHEUS_MISSING) and now - since < policy.prometheus_grace_s:
            counts[f.kind] -= 1
            continue
        act = ACTION_OF.get(f.kind, "")
        if act:
            if key not in memory or now - since < policy.grace_s:
                act = "wait"
            elif policy.dry_run:
                act = "dry-run"
            elif act == REPAIR and not f.app:
                act = ""   # a group no app owns (e.g. a spare HAProxy frontend): only reported
            elif act == REPAIR and f.app in repairs[f.where[5:]]:
                pass       # the app is repaired once, whatever the number of its entries
            elif budget[act] <= 0:
                act = "deferred"
            else:
                budget[act] -= 1
                if act == LOSE:
                    lose.append(f.instance)
                elif act == SWEEP:
                    sweeps[f.where].append(SweepItem(kind=SWEEP_KIND[f.kind], instance=f.instance, key=f.key,  # type: ignore[arg-type]
                                                     reason=f"{f.kind}: {f.detail}"[:200]))
                else:
                    repairs[f.where[5:]].add(f.app)
        findings.append(_with(f, since, act))
    actions = Actions(tuple(lose), {h: tuple(v) for h, v in sweeps.items()},
                      {s: tuple(sorted(a)) for s, a in repairs.items() if a})
    return Result(tuple(findings), actions, new_memory, counts)


def _with(f: Finding, since: float, action: str) -> Finding:
    return Finding(f.kind, f.where, f.instance, f.detail, f.app, f.key, since, action)
