"""Settings for every noops service, read from the environment in one place.

Each service builds its settings object once in ``main()`` and passes it down;
nothing here is created at import time.  Every field documents its environment
variable and default; ``python -m libs.settings`` prints the table that lives in
docs/configuration.md (a test keeps the two in step).
"""
from __future__ import annotations

import dataclasses
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints

from libs.ranges import Ranges


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def setting(default: Any, env: str, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class CommonSettings:
    cluster: str = setting(
        "local", "NOOPS_CLUSTER",
        "Name of this noops cluster. Containers carry it as a label, so several clusters "
        "(a local one and the test suite's) can share one Docker engine without touching each other's containers.")
    nats_url: str = setting(
        "nats://127.0.0.1:4222", "NOOPS_NATS_URL", "NATS server(s), comma separated. JetStream must be enabled.")
    nats_user: str = setting(
        "", "NOOPS_NATS_USER",
        "NATS user this process connects as: `gateway`, `placer`, `registry`, `reconciler`, `hostd-<host id>` "
        "(each may publish and subscribe only what libs/natsauth.py grants it). Empty: connect without credentials.")
    nats_password_file: str = setting(
        "", "NOOPS_NATS_PASSWORD_FILE",
        "File holding that user's NATS password (read at start; keep it mode 0600). `make up` writes them "
        "under .run/nats-auth/.")
    db_dsn: str = setting(
        "postgresql://noops@127.0.0.1:5432/noops", "NOOPS_DB_DSN",
        "PostgreSQL DSN of the task log (placer, registry, reconciler and gateway use it; hostd does not). "
        "Keep the password out of it: use NOOPS_DB_PASSWORD_FILE. A service refuses to start when it would "
        "reach a database on another machine with a development password, or NATS on another machine "
        "without credentials (libs/exposure.py).")
    db_password_file: str = setting(
        "", "NOOPS_DB_PASSWORD_FILE",
        "File holding the database password (read at start, keep it mode 0600); it overrides a password in "
        "NOOPS_DB_DSN. `make up` generates one per machine in /var/lib/noops/pg-password.")
    log_level: str = setting("INFO", "NOOPS_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR.")
    log_format: str = setting("json", "NOOPS_LOG_FORMAT", "`json` (one object per line) or `text`.")
    connect_retry_max_s: float = setting(
        5.0, "NOOPS_CONNECT_RETRY_MAX_S",
        "Longest pause between attempts while waiting for NATS, PostgreSQL or Docker (connect-style waits, "
        "libs/retry.py `Policy.for_connect`).")
    retry_base_s: float = setting(
        0.2, "NOOPS_RETRY_BASE_S",
        "Retry policy of every loop (libs/retry.py): the n-th retry waits a random time between 0 and "
        "min(NOOPS_RETRY_CAP_S, this x 2^(n-1)) seconds (exponential backoff, full jitter).")
    retry_cap_s: float = setting(
        10.0, "NOOPS_RETRY_CAP_S",
        "Retry policy: the longest pause between two attempts of a loop, and the longest nak delay of a message.")
    db_command_timeout_s: float = setting(
        30.0, "NOOPS_DB_COMMAND_TIMEOUT_S",
        "No SQL statement runs longer than this (asyncpg `command_timeout`); a statement that times out is a "
        "transient error, retried like a lost connection.")
    db_random_page_cost: float = setting(
        1.1, "NOOPS_DB_RANDOM_PAGE_COST",
        "PostgreSQL's `random_page_cost` for noops' sessions: what an index lookup costs the planner against a "
        "sequential read (1.0). 1.1 suits a task log in memory or on SSD (PostgreSQL's own advice); with its "
        "default 4, report batches were planned as full scans of `instances` while the table grew "
        "(bench/RESULTS.md, placer end to end). Spinning disks: 4.")
    max_deliver: int = setting(
        10, "NOOPS_MAX_DELIVER",
        "A JetStream message is delivered at most this many times (consumer `max_deliver`); one whose handler "
        "still fails is terminated and recorded as a dead letter (GET /v1/dead-letters).")
    outbox_max_attempts: int = setting(
        10, "NOOPS_OUTBOX_MAX_ATTEMPTS",
        "An outbox row NATS refused this many times for a non-transient reason (payload too large, bad subject) "
        "is set aside (table `outbox_set_aside`, with the reason) and the relay moves on. Transient errors "
        "(NATS away) are retried without limit.")

    def __post_init__(self) -> None:
        if not self.db_random_page_cost > 0:
            raise SettingsError(f"NOOPS_DB_RANDOM_PAGE_COST must be above 0, not {self.db_random_page_cost:g}")


@dataclass(frozen=True)
class HttpSettings:
    http_host: str = setting("127.0.0.1", "NOOPS_HTTP_HOST", "Address the service's HTTP endpoint (/healthz, /metrics) binds to.")


@dataclass(frozen=True)
class GatewaySettings:
    common: CommonSettings
    http: HttpSettings
    port: int = setting(8700, "NOOPS_GATEWAY_PORT", "Port of the HTTP API and web UI.")
    max_instances: int = setting(10000, "NOOPS_MAX_INSTANCES_PER_APP", "Largest `instances` an app spec may ask for.")
    max_body_bytes: int = setting(
        1024 * 1024, "NOOPS_GATEWAY_MAX_BODY_BYTES",
        "Largest request body the API reads; a bigger one is refused with 413 and a JSON error body.")
    host_online_s: float = setting(
        3.0, "NOOPS_HOST_ONLINE_S",
        "The API and web UI show a host as online when its last heartbeat is at most this many seconds old.")
    tls_cert_file: str = setting(
        "", "NOOPS_GATEWAY_TLS_CERT_FILE",
        "PEM certificate (chain) for HTTPS; with NOOPS_GATEWAY_TLS_KEY_FILE the API and web UI are served "
        "over HTTPS only. Empty: plain HTTP (keep NOOPS_HTTP_HOST on loopback behind a TLS proxy then).")
    tls_key_file: str = setting("", "NOOPS_GATEWAY_TLS_KEY_FILE", "PEM private key of that certificate.")
    usage_timeout_s: float = setting(
        1.0, "NOOPS_GATEWAY_USAGE_TIMEOUT_S",
        "How long GET /v1/hosts/{id}/usage (the cluster map's CPU and memory columns) waits for the host's "
        "hostd to answer before it answers 503.")

    def __post_init__(self) -> None:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingsError("NOOPS_GATEWAY_TLS_CERT_FILE and NOOPS_GATEWAY_TLS_KEY_FILE go together: set both or neither")
        if self.usage_timeout_s <= 0:
            raise SettingsError(f"NOOPS_GATEWAY_USAGE_TIMEOUT_S must be above 0, not {self.usage_timeout_s:g}")


@dataclass(frozen=True)
class PlacerSettings:
    common: CommonSettings
    http: HttpSettings
    port: int = setting(8701, "NOOPS_PLACER_PORT", "Port of the placer's /healthz and /metrics.")
    heartbeat_grace_s: float = setting(
        3.0, "NOOPS_HEARTBEAT_GRACE_S",
        "A host whose last heartbeat is older than this is not offered new placements (its instances keep "
        "running and serving; see NOOPS_HOST_LOST_AFTER_S for when they are replaced).")
    host_lost_after_s: float = setting(
        10.0, "NOOPS_HOST_LOST_AFTER_S",
        "A host the placer has not heard for this long is marked DOWN and its instances LOST and replaced. Longer "
        "than a hostd restart (SIGKILL and back, adopting its containers, takes 2-5 s), shorter than the time an "
        "operator accepts for replacing a dead host's instances (they run elsewhere about 2-3 s after this). "
        "The silence counts only while the placer itself is connected to NATS, and from the moment it (re)connected "
        "or became leader.")
    mass_silence_share: float = setting(
        0.55, "NOOPS_MASS_SILENCE_SHARE",
        "When more than this share of the up hosts fall silent at once, none is marked DOWN: the placer assumes it "
        "cannot hear them (bus outage, partition), logs it and counts it in noops_placer_mass_silence_total. "
        "Kubernetes' unhealthy-zone threshold is the same figure. 1.0 turns the rule off.")
    eviction_rate_per_s: float = setting(
        0.5, "NOOPS_EVICTION_RATE",
        "Hosts per second that may be marked DOWN after the first NOOPS_EVICTION_BURST (a token bucket), so a "
        "flapping network cannot move the whole cluster at once. Kubernetes' default is 0.1 nodes/s.")
    eviction_burst: float = setting(
        3.0, "NOOPS_EVICTION_BURST", "Hosts that may be marked DOWN at once before NOOPS_EVICTION_RATE applies.")

    def __post_init__(self) -> None:
        if self.host_lost_after_s < self.heartbeat_grace_s:
            raise SettingsError(f"NOOPS_HOST_LOST_AFTER_S ({self.host_lost_after_s:g}) must not be shorter than "
                                f"NOOPS_HEARTBEAT_GRACE_S ({self.heartbeat_grace_s:g})")
        if not 0 < self.mass_silence_share <= 1:
            raise SettingsError(f"NOOPS_MASS_SILENCE_SHARE must be in (0, 1], not {self.mass_silence_share:g}")
        if self.eviction_rate_per_s <= 0 or self.eviction_burst < 1:
            raise SettingsError("NOOPS_EVICTION_RATE must be above 0 and NOOPS_EVICTION_BURST at least 1")
        if not 0 < self.quiet_share <= 1:
            raise SettingsError(f"NOOPS_PLACER_QUIET_SHARE must be in (0, 1], not {self.quiet_share:g}")
        if not 0 <= self.score_percent <= 100 or self.score_min_hosts < 1 or self.score_max_hosts < 0:
            raise SettingsError("NOOPS_PLACER_SCORE_PERCENT must be in [0, 100], NOOPS_PLACER_SCORE_MIN_HOSTS at "
                                "least 1 and NOOPS_PLACER_SCORE_MAX_HOSTS not negative")
    resync_interval_s: float = setting(
        10.0, "NOOPS_PLACER_RESYNC_S",
        "Every this many seconds the placer looks at every app again (level-triggered safety net for lost requests).")
    heartbeat_fast_path: bool = setting(
        True, "NOOPS_PLACER_HEARTBEAT_FAST_PATH",
        "Hand heartbeats to the placer straight from nats-py's read loop (services/placer/heartbeat_feed.py), "
        "skipping its per-message objects, queue and task: about half the placer's CPU for heartbeats. false: "
        "nats-py's ordinary subscription path (also taken by itself where the installed nats-py lacks the hook).")
    quiet_share: float = setting(
        0.25, "NOOPS_PLACER_QUIET_SHARE",
        "Largest share of the placer's time that looks placing and stopping nothing may take (while instances come "
        "up, the registry asks for a look at each app whose instances came into service, every announcement round): "
        "after such a batch the next one starts no sooner than its cost divided by this share, and at most 1 s later, "
        "so the requests arriving meanwhile are one look per app. A batch that placed or stopped instances is "
        "followed at once (50 ms). 1: no such pacing.")
    score_percent: float = setting(
        0.0, "NOOPS_PLACER_SCORE_PERCENT",
        "Share of the hosts (percent) a placement decision looks for among the feasible ones before it ranks them, "
        "Kubernetes' percentageOfNodesToScore: 0 is adaptive (50% minus one point per 125 hosts, at least 5%). "
        "Bin-packing takes the tightest fits from an index of free capacity, spread a shuffled sample. A request "
        "the sample cannot place looks further, up to every host, so \"why not\" counts stay exact.")
    score_min_hosts: int = setting(
        100, "NOOPS_PLACER_SCORE_MIN_HOSTS",
        "A placement decision looks for at least this many feasible hosts (smaller clusters: all of them).")
    score_max_hosts: int = setting(
        1000, "NOOPS_PLACER_SCORE_MAX_HOSTS",
        "...and at most this many, whatever NOOPS_PLACER_SCORE_PERCENT gives: beyond it a decision costs the same "
        "however large the cluster (spread takes one host per instance at least). 0: no bound.")


@dataclass(frozen=True)
class RegistrySettings:
    common: CommonSettings
    http: HttpSettings
    port: int = setting(8702, "NOOPS_REGISTRY_PORT", "Port of the registry's /healthz and /metrics.")
    sinks: str = setting(
        "haproxy,nft", "NOOPS_SINKS",
        "Sinks the registry keeps in step with the in-service set, comma separated: `haproxy`, `nft`, "
        "`ipvs` (left out with a log line when the kernel has no IPVS). Empty: none.")
    sinks_resync_s: float = setting(
        10.0, "NOOPS_SINKS_RESYNC_S",
        "Every this many seconds (and at start) every sink is given the full in-service set read from the task log, "
        "so a sink that was down or drifted converges.")
    sink_backoff_max_s: float = setting(
        10.0, "NOOPS_SINK_BACKOFF_MAX_S", "Longest pause between two attempts of a failing sink (exponential from 0.1 s).")
    haproxy_dir: str = setting(
        "/run/noops/haproxy", "NOOPS_HAPROXY_DIR",
        "Directory of the HAProxy the registry drives: `haproxy.cfg` (written by the registry), `admin.sock` "
        "(Runtime API), `master.sock` (master CLI, for reloads), `haproxy.pid`. `make up` uses `.run/haproxy`.")
    lb_bind_host: str = setting("127.0.0.1", "NOOPS_LB_BIND_HOST", "Address the load balancer's frontends listen on.")
    lb_ports: str = setting(
        "18000-18999", "NOOPS_LB_PORTS",
        "Port range (inclusive) for load-balancer frontends: each app's named port gets the lowest free one, "
        "kept in the task log (`lb_ports`) so it never moves.")
    lb_spare_frontends: int = setting(
        4, "NOOPS_LB_SPARE_FRONTENDS",
        "Frontends HAProxy keeps listening on the next free ports, so a new app needs no reload.")
    lb_check_interval_s: float = setting(
        0.5, "NOOPS_LB_CHECK_INTERVAL_S",
        "HAProxy checks every server (a TCP connect) this often and stops sending it connections after 2 failures "
        "in a row (each failing check waits up to this long for the lost host's answer), so an instance whose host "
        "is lost gets no new connection after about 4 intervals (2 s), long before the placer decides that the "
        "host is gone (NOOPS_HOST_LOST_AFTER_S). One success brings it back. Each check is a connection to the "
        "instance: raise it for backends of many thousands of servers. 0: no checks.")
    lb_drain_timeout_s: float = setting(
        10.0, "NOOPS_LB_DRAIN_TIMEOUT_S",
        "A server leaving the load balancer gets no new connection at once; after this many seconds its open "
        "connections are cut and it is deleted.")
    nft_table: str = setting(
        "noops", "NOOPS_NFT_TABLE",
        "nftables table (family inet) holding one set `app_<app>` of container IPs per app, for whitelists.")
    ipvs_vip: str = setting(
        "", "NOOPS_IPVS_VIP", "Virtual address of the IPVS services (sink `ipvs`); empty: `NOOPS_LB_BIND_HOST`.")
    report_batches_in_flight: int = setting(
        2, "NOOPS_REGISTRY_REPORT_BATCHES_IN_FLIGHT",
        "Report batches the registry judges and writes at once (each on its own PostgreSQL connection): while "
        "one waits on PostgreSQL the next is judged. A batch writes only rows still as it read them, so batches "
        "in flight never undo each other (one that meets a change is judged again, locked). At most 6: each holds "
        "one of the registry's 10 pooled connections, which its relay, announcer and fan-out need too.")
    announce_busy_share: float = setting(
        0.125, "NOOPS_REGISTRY_ANNOUNCE_BUSY_SHARE",
        "The announcer's rounds (one EndpointsChanged per app whose in-service set changed, each holding the "
        "complete set) are spaced so that they take at most this share of the time: a round that cost 40 ms "
        "starts the next one 0.32 s after its own start, so while big apps come up one round carries the changes "
        "of more report batches (between 50 ms and 1 s apart). 0: a round every 50 ms at most. Sinks do not wait "
        "for announcements.")
    container_ranges: str = setting(
        "", "NOOPS_REGISTRY_CONTAINER_RANGES",
        "Where container addresses may be: networks, comma separated, each either for every host "
        "(`198.18.0.0/20`) or for one (`h1=198.18.0.0/24`). An IP report whose address is outside its host's "
        "networks (or is a network's own or broadcast address) is rejected and counted in "
        "noops_registry_reports_rejected_total; so is one whose address is not the one the `pool` IPAM reserved "
        "for the instance. Empty: addresses are only checked for form (unicast, not loopback, link-local or "
        "multicast), and the registry says so in its log at start.")

    def __post_init__(self) -> None:
        if not 0 <= self.announce_busy_share <= 1:
            raise SettingsError(f"NOOPS_REGISTRY_ANNOUNCE_BUSY_SHARE must be in [0, 1], not {self.announce_busy_share:g}")
        if not 1 <= self.report_batches_in_flight <= 6:
            raise SettingsError("NOOPS_REGISTRY_REPORT_BATCHES_IN_FLIGHT must be in [1, 6], "
                                f"not {self.report_batches_in_flight}")

    def lb_port_range(self) -> tuple[int, int]:
        lo, sep, hi = self.lb_ports.partition("-")
        try:
            rng = (int(lo), int(hi if sep else lo))
        except ValueError:
            raise SettingsError(f"NOOPS_LB_PORTS={self.lb_ports!r} is not a range like 18000-18999") from None
        if not 0 < rng[0] <= rng[1] < 65536:
            raise SettingsError(f"NOOPS_LB_PORTS={self.lb_ports!r} is not a range inside 1-65535")
        return rng

    def container_networks(self) -> Ranges:
        """NOOPS_REGISTRY_CONTAINER_RANGES parsed (a libs/ranges.py ``Ranges``)."""
        try:
            return Ranges.parse(self.container_ranges)
        except ValueError as exc:
            raise SettingsError(f"NOOPS_REGISTRY_CONTAINER_RANGES: {exc}") from None

    def sink_names(self) -> list[str]:
        names = [n.strip() for n in self.sinks.split(",") if n.strip()]
        unknown = set(names) - {"haproxy", "nft", "ipvs"}
        if unknown:
            raise SettingsError(f"NOOPS_SINKS: unknown sink(s) {', '.join(sorted(unknown))}")
        return names


@dataclass(frozen=True)
class ReconcilerSettings:
    common: CommonSettings
    http: HttpSettings
    port: int = setting(8703, "NOOPS_RECONCILER_PORT", "Port of the reconciler's /healthz and /metrics.")
    interval_s: float = setting(5.0, "NOOPS_RECONCILE_INTERVAL_S", "Seconds between two inventory rounds.")
    inventory_timeout_s: float = setting(2.0, "NOOPS_INVENTORY_TIMEOUT_S", "How long to wait for one hostd's inventory.")
    grace_s: float = setting(
        10.0, "NOOPS_RECONCILER_GRACE_S",
        "A difference is acted on only once it has lasted this long, across two rounds at least (a placement in "
        "flight, a sink a moment behind the task log are not drift).")
    max_actions: int = setting(
        1000, "NOOPS_RECONCILER_MAX_ACTIONS",
        "At most this many actions of each kind (lose, sweep, repair) per round; the rest wait for the next round.")
    dry_run: bool = setting(
        False, "NOOPS_RECONCILER_DRY_RUN",
        "Find and report drift (metrics, logs, GET /v1/drift) but change nothing; retention only counts.")
    host_silent_s: float = setting(
        30.0, "NOOPS_RECONCILER_HOST_SILENT_S",
        "Hosts silent longer than this are not asked for their inventory; one still UP in the task log is reported "
        "(`host_silent`: the placer marks hosts DOWN).")
    concurrency: int = setting(
        256, "NOOPS_RECONCILER_CONCURRENCY", "Inventory and sweep requests in flight at once.")
    sinks_timeout_s: float = setting(
        5.0, "NOOPS_RECONCILER_SINKS_TIMEOUT_S", "How long to wait for the registry's read-back of its sinks.")
    sweep_timeout_s: float = setting(
        30.0, "NOOPS_RECONCILER_SWEEP_TIMEOUT_S",
        "How long to wait for one hostd to sweep what it was sent (a container stop takes its stop timeout).")
    prometheus_url: str = setting(
        "", "NOOPS_RECONCILER_PROMETHEUS_URL",
        "Prometheus to read the discovered targets from (`/api/v1/targets`); empty: Prometheus is not compared.")
    prometheus_job: str = setting("noops", "NOOPS_RECONCILER_PROMETHEUS_JOB", "The Prometheus job whose targets come from noops.")
    prometheus_grace_s: float = setting(
        30.0, "NOOPS_RECONCILER_PROMETHEUS_GRACE_S",
        "Prometheus re-reads the discovery at its refresh interval: a target difference younger than this is not reported.")
    rounds_kept: int = setting(100, "NOOPS_RECONCILER_ROUNDS_KEPT", "Rounds kept in the task log for GET /v1/drift.")
    findings_kept: int = setting(
        500, "NOOPS_RECONCILER_FINDINGS_KEPT", "Findings stored per round (the counts are always complete).")
    lb_port_retain_s: float = setting(
        86400.0, "NOOPS_LB_PORT_RETAIN_S",
        "A deleted app keeps its load-balancer ports this long (re-created meanwhile, it is served where it "
        "was); then the reconciler gives them back to the range.")
    retain_ended_per_app: int = setting(
        50, "NOOPS_RETAIN_ENDED_PER_APP",
        "Retention (docs/retention.md): the newest this many ended instances (FAILED, KILLED, LOST) of each app "
        "are kept with their events, unless older than NOOPS_RETAIN_ENDED_S; older ones are removed. 0: no count rule.")
    retain_ended_s: float = setting(
        7 * 86400.0, "NOOPS_RETAIN_ENDED_S",
        "Retention: an ended instance that ended longer ago than this is removed with its events, even among the "
        "newest NOOPS_RETAIN_ENDED_PER_APP of its app. 0: no age rule.")
    retention_batch: int = setting(
        1000, "NOOPS_RETENTION_BATCH",
        "Retention: ended instances removed per transaction (one short transaction each, index scans only).")
    retention_max_batches: int = setting(
        10, "NOOPS_RETENTION_MAX_BATCHES",
        "Retention: most batches per reconciler round, so one round never spends long pruning; a backlog is worked "
        "off over the next rounds. 0: retention off.")


@dataclass(frozen=True)
class HostdSettings:
    common: CommonSettings
    http: HttpSettings
    host_id: str = setting(
        "", "NOOPS_HOST_ID", "This host's name in the cluster (letters, digits, '-'); defaults to the machine's hostname.")
    port: int = setting(8710, "NOOPS_HOSTD_PORT", "Port of this hostd's /healthz and /metrics.")
    cpus: float = setting(0.0, "NOOPS_HOST_CPUS", "CPUs this host offers to instances; 0 means all the machine's cores.")
    mem_mb: int = setting(0, "NOOPS_HOST_MEM_MB", "Memory (MiB) this host offers; 0 means all the machine's memory.")
    labels: str = setting("", "NOOPS_HOST_LABELS", "Host attributes for constraints, e.g. `rack=r1,zone=z1`.")
    heartbeat_interval_s: float = setting(1.0, "NOOPS_HEARTBEAT_INTERVAL_S", "Seconds between two heartbeats.")
    docker_url: str = setting("", "NOOPS_DOCKER_URL", "Docker engine address; empty means the local default socket.")
    stop_timeout_s: int = setting(5, "NOOPS_STOP_TIMEOUT_S", "Seconds a container gets after SIGTERM before SIGKILL, "
                                  "unless its app sets `kill_grace_s`.")
    placement_max_deliver: int = setting(
        200, "NOOPS_HOSTD_PLACEMENT_MAX_DELIVER",
        "A placement message is delivered to hostd at most this many times (its consumer's `max_deliver`, in place "
        "of NOOPS_MAX_DELIVER): hostd retries a placement the engine cannot carry out now (Docker restarting, a "
        "volume command timing out) with the retry policy's backoff, capped at NOOPS_RETRY_CAP_S, so the default "
        "rides out an engine outage of about half an hour before the placement becomes a dead letter.")
    docker_timeout_s: float = setting(
        30.0, "NOOPS_HOSTD_DOCKER_TIMEOUT_S",
        "Deadline of each Docker API call (a stop gets NOOPS_STOP_TIMEOUT_S on top); past it the engine counts as "
        "unavailable and the placement is retried.")
    command_timeout_s: float = setting(
        120.0, "NOOPS_HOSTD_COMMAND_TIMEOUT_S",
        "Deadline of each storage command hostd runs (losetup, mkfs.ext4, mount, umount, lvcreate, lvs...); past it "
        "the command is killed and the placement retried.")
    oom_wait_s: float = setting(
        2.0, "NOOPS_HOSTD_OOM_WAIT_S",
        "How long the report of a container that exited by SIGKILL (code 137) waits for the engine's `oom` event, "
        "which may come after the exit, before it says `exited with code 137` rather than `OOMKilled`.")
    parent: str = setting(
        "eth0", "NOOPS_HOSTD_PARENT",
        "The host NIC containers' macvlan interfaces hang off (the simulated cluster gives each host its own veth).")
    vlan: int = setting(
        0, "NOOPS_HOSTD_VLAN",
        "When > 0, the macvlan parent is the 802.1q sub-interface `<parent>.<vlan>` (created if missing; the "
        "containers' range on a trunk port). Needs the kernel's 8021q module.")
    ipam: str = setting(
        "dhcp", "NOOPS_HOSTD_IPAM",
        "`dhcp`: hostd runs DHCP for each container from its macvlan's MAC; `pool`: the placer reserves the "
        "address in PostgreSQL (libs/ipam.py) and the placement carries it.")
    pool_gateway: str = setting(
        "", "NOOPS_HOSTD_POOL_GATEWAY", "IPAM `pool`: the containers' default gateway (DHCP mode learns it from the server).")
    dhcp_timeout_s: float = setting(5.0, "NOOPS_HOSTD_DHCP_TIMEOUT_S", "How long one DHCP exchange may take before the start fails.")
    concurrency: int = setting(
        8, "NOOPS_HOSTD_CONCURRENCY",
        "Most instances hostd starts, stops or sweeps at once (others wait their turn; one instance is always "
        "handled by one at a time). The engine, not hostd, is the limit on a deploy: past the engine's own "
        "parallelism more only makes each start slower (bench/RESULTS.md, start path).")
    health_first_retry_s: float = setting(
        0.1, "NOOPS_HOSTD_HEALTH_FIRST_RETRY_S",
        "A health check runs as soon as its instance does; while it has never passed and its grace period lasts, "
        "a failure (the app not listening yet) is retried after this long, then twice as long each time, up to "
        "the check's `interval_s`. 0: retry after the interval (an app listening a moment after its start was "
        "healthy a whole interval later).")
    stop_concurrency: int = setting(
        32, "NOOPS_HOSTD_STOP_CONCURRENCY",
        "Most instances hostd stops at once, apart from NOOPS_HOSTD_CONCURRENCY (so stops never queue behind "
        "starts, as the old version's during a rolling update). A stop is the engine's SIGTERM, the wait for the "
        "exit and a remove, and costs the engine far less than a start: `docker rm -f` of many containers runs 50 "
        "at once. With 8, 50 stops on one host took waves of 8.")
    max_addresses: int = setting(
        0, "NOOPS_HOSTD_MAX_ADDRESSES",
        "Most container addresses this host hands out (heartbeat `addresses_free`); 0 = not limited by the host.")
    storage: str = setting(
        "loop", "NOOPS_HOSTD_STORAGE",
        "Volume driver for `disk_mb` > 0: `loop` (sparse file + loop device + ext4) or `lvm` (a logical volume "
        "per instance in NOOPS_HOSTD_VG, tagged with the instance id).")
    volume_group: str = setting("noops", "NOOPS_HOSTD_VG", "Driver `lvm`: the LVM volume group instances' volumes are made in.")
    lvm_activate: bool = setting(
        True, "NOOPS_HOSTD_LVM_ACTIVATE",
        "Driver `lvm`: activate (and so mount) volumes. `false` on machines without device-mapper: metadata only.")
    state_dir: str = setting(
        "/var/lib/noops/hostd", "NOOPS_HOSTD_STATE_DIR",
        "hostd's own state on the host (one sub-directory per cluster and host): the DHCP lease journal, so a "
        "lease whose container ended while hostd was down is still released; and the tombstones of ended "
        "instances. Empty: nothing is kept on disk.")
    tombstones_max: int = setting(
        10_000, "NOOPS_HOSTD_TOMBSTONES_MAX",
        "Most ended instances (stopped, failed) hostd remembers, so a late or redelivered start for one of them "
        "is ignored instead of recreating it; the oldest are forgotten first.")
    tombstone_ttl_s: float = setting(
        7 * 86400.0, "NOOPS_HOSTD_TOMBSTONE_TTL_S",
        "Seconds an ended instance is remembered (far longer than any JetStream redelivery of its start).")
    loop_dir: str = setting(
        "/var/lib/noops/volumes", "NOOPS_HOSTD_LOOP_DIR",
        "Driver `loop`: directory for image files (one sub-directory per cluster and host); also LVM mount points.")
    volume_capacity_mb: int = setting(
        0, "NOOPS_HOSTD_VOLUME_CAPACITY_MB",
        "Driver `loop`: MiB this host promises to volumes in total; 0 = the free space of NOOPS_HOSTD_LOOP_DIR.")
    cap_drop: str = setting(
        "NET_RAW,NET_ADMIN", "NOOPS_HOSTD_CAP_DROP",
        "Capabilities every container loses from Docker's default set, comma separated (names without CAP_), "
        "except those its app's `security.cap_add` gives back. NET_RAW and NET_ADMIN because containers share "
        "the hosts' L2 segment (macvlan): with them one container could answer ARP for, or take, another's "
        "address. hostd sets up the containers' network from the host side, so they need neither. `ALL`: drop "
        "every capability (apps add back what they need). See docs/security.md.")
    pids_limit: int = setting(
        4096, "NOOPS_HOSTD_PIDS_LIMIT",
        "Most processes and threads (the cgroup's pids.max) one container may have; 0 = no limit. A fork bomb "
        "in one container then cannot exhaust the host's pid space (kernel.pid_max, often 32768 or 4194304); "
        "4096 leaves room for thread-heavy runtimes (a JVM or a Go service with a few thousand threads).")
    no_new_privileges: bool = setting(
        True, "NOOPS_HOSTD_NO_NEW_PRIVILEGES",
        "Start containers with `no-new-privileges`: a setuid binary or file capabilities inside the image cannot "
        "raise a process's privileges above what it started with.")
    init: bool = setting(
        True, "NOOPS_HOSTD_INIT",
        "Run every container with the engine's init (`docker run --init`: tini as PID 1, which forwards signals "
        "to the app and reaps zombies). Without it an app that is PID 1 and installs no SIGTERM handler (busybox "
        "httpd, many scripts) ignores the stop's SIGTERM and is killed only after its grace (kill_grace_s or "
        "NOOPS_STOP_TIMEOUT_S). Images built by `noops image build` (label org.noops.init=1) run without it: their "
        "noops-init is PID 1 (docs/images.md).")
    init_stats_interval_s: float = setting(
        10.0, "NOOPS_HOSTD_INIT_STATS_INTERVAL_S",
        "Seconds between two rounds of reading noops-init's stats (images built by `noops image build`: the label "
        "org.noops.init=1) into /metrics (`noops_instance_cpu_seconds_total`, `noops_instance_memory_bytes`, "
        "`noops_instance_counter`); 0: never. Containers of other images are not asked.")
    init_stats_timeout_s: float = setting(
        2.0, "NOOPS_HOSTD_INIT_STATS_TIMEOUT_S",
        "Deadline of one instance's stats request; an instance that does not answer within it drops out of /metrics "
        "until it answers again.")
    init_stats_concurrency: int = setting(
        16, "NOOPS_HOSTD_INIT_STATS_CONCURRENCY", "Most stats requests in flight at once in a round.")

    def __post_init__(self) -> None:
        if self.pids_limit < 0:
            raise SettingsError(f"NOOPS_HOSTD_PIDS_LIMIT must be 0 (no limit) or more, not {self.pids_limit}")
        from libs.appspec import CAPABILITIES  # the one list of names; pydantic is not needed before here
        unknown = set(self.cap_drop_names()) - CAPABILITIES - {"ALL"}
        if unknown:
            raise SettingsError(f"NOOPS_HOSTD_CAP_DROP: not Linux capabilities: {', '.join(sorted(unknown))}")

    def cap_drop_names(self) -> tuple[str, ...]:
        """NOOPS_HOSTD_CAP_DROP as capability names (upper case, without CAP_)."""
        return tuple(dict.fromkeys(n.strip().upper().removeprefix("CAP_") for n in self.cap_drop.split(",")
                                   if n.strip()))


T = TypeVar("T")

_SERVICES: dict[str, type] = {
    "gateway": GatewaySettings,
    "placer": PlacerSettings,
    "registry": RegistrySettings,
    "reconciler": ReconcilerSettings,
    "hostd": HostdSettings,
}


def _coerce(raw: str, typ: Any, env: str) -> Any:
    try:
        if typ is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return typ(raw)
    except ValueError:
        raise SettingsError(f"{env}={raw!r} is not a valid {typ.__name__}") from None


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build a settings dataclass (and its nested groups) from the environment."""
    env = os.environ if environ is None else environ
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            kwargs[f.name] = load(typ, env)
        elif f.metadata["env"] in env:
            kwargs[f.name] = _coerce(env[f.metadata["env"]], typ, f.metadata["env"])
    obj = cls(**kwargs)
    if isinstance(obj, HostdSettings) and not obj.host_id:
        obj = dataclasses.replace(obj, host_id=socket.gethostname().split(".")[0].lower())
    return obj


def parse_labels(text: str) -> dict[str, str]:
    """``rack=r1,zone=z1`` → ``{"rack": "r1", "zone": "z1"}``."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise SettingsError(f"NOOPS_HOST_LABELS: {part!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def markdown() -> str:
    """The configuration reference, one table per service."""
    lines = ["# Configuration", "",
             "Every service reads its settings from environment variables once, at start.",
             "This file is generated by `python -m libs.settings`; a test checks it is current.", ""]
    for name, cls in _SERVICES.items():
        lines += [f"## {name}", "", "| variable | default | meaning |", "|---|---|---|"]
        for env, default, doc in _rows(cls):
            lines.append(f"| `{env}` | `{default}` | {doc} |")
        lines.append("")
    return "\n".join(lines)


def _rows(cls: type) -> list[tuple[str, Any, str]]:
    rows = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += _rows(hints[f.name])
        else:
            rows.append((f.metadata["env"], f.default, f.metadata["doc"]))
    return rows


if __name__ == "__main__":
    sys.stdout.write(markdown())
