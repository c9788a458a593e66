"""What a noops container looks like on the engine, both ways, with no I/O.

Forward: a Placement becomes a container name, labels and a create config.  Backward: the
engine's inspect / list output becomes a ``ContainerInfo`` and failure text a person can read.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from libs import messages
from libs.settings import HostdSettings
from services.hostd import network

LABEL_CLUSTER = "noops.cluster"
LABEL_HOST = "noops.host"
LABEL_INSTANCE = "noops.instance"
LABEL_APP = "noops.app"
LABEL_VERSION = "noops.version"
LABEL_EPOCH = "noops.epoch"
LABEL_ADDRESS = "noops.address"   # IPAM pool: the reserved address, so adoption can re-attach it
LABEL_EGRESS = "noops.egress"     # egress_mbit, for the same reason
LABEL_HEALTH = "noops.health"     # the health checks (JSON), so an adopted container is checked again
LABEL_KEEP_VOLUME = "noops.keep_volume"  # "true": the volume outlives the container (a sweep keeps it)
# The app's kill grace (seconds), so every stop of the container uses it -- also those that come
# without its spec: a sweep, a health kill, the placer's stop of a stale copy.
LABEL_STOP_TIMEOUT = "noops.stop_timeout"
# Images built by `noops image build` (imagebuild/image.py) run noops-init as PID 1: it serves
# stats on this port and ends its log with the app's exit ("noops-init: exited with code 3 after 2.1 s").
LABEL_INIT = "org.noops.init"
LABEL_INIT_STATS_PORT = "org.noops.init.stats_port"
INIT_STOP_TIMEOUT_ENV = "NOOPS_INIT_STOP_TIMEOUT_S"   # noops-init's SIGTERM → SIGKILL grace
INIT_LOG_PREFIX = "noops-init: "
MIB = 1024 * 1024


@dataclass(frozen=True)
class ContainerInfo:
    """One container as the engine last described it (a snapshot: re-read, never mutate)."""
    id: str
    name: str
    labels: Mapping[str, str]
    state: str              # docker's word: created, running, exited, dead, ...
    ip: str = ""
    exit_code: int = 0
    oom_killed: bool = False
    pid: int = 0            # of the container's first process while running (inspect only)
    started_at: float = 0.0  # unix time of the last start (inspect only; 0 unknown)

    @property
    def instance(self) -> str:
        return self.labels.get(LABEL_INSTANCE, "")

    @property
    def app(self) -> str:
        return self.labels.get(LABEL_APP, "")

    @property
    def epoch(self) -> int:
        try:
            return int(self.labels.get(LABEL_EPOCH, "0"))
        except ValueError:
            return 0

    @property
    def keep_volume(self) -> bool:
        return self.labels.get(LABEL_KEEP_VOLUME) == "true"

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def has_init(self) -> bool:
        """Its image runs noops-init (the image's labels are the container's too)."""
        return self.labels.get(LABEL_INIT) == "1"

    @property
    def init_stats_port(self) -> int:
        try:
            port = int(self.labels.get(LABEL_INIT_STATS_PORT, "0"))
        except ValueError:
            return 0
        return port if self.has_init and 0 < port < 65536 else 0

    def stop_timeout_s(self, default_s: int) -> int:
        """SIGTERM → SIGKILL grace for this container: its app's (label), else the host's default."""
        try:
            grace = int(self.labels.get(LABEL_STOP_TIMEOUT, "0"))
        except ValueError:
            return default_s
        return grace if 0 < grace <= messages.MAX_STOP_TIMEOUT_S else default_s


def container_name(cluster: str, instance: str) -> str:
    return f"noops-{cluster}-{instance}"


def owner_labels(cluster: str, host: str) -> dict[str, str]:
    """The labels that say 'this container belongs to this hostd' (list/event filters use them)."""
    return {LABEL_CLUSTER: cluster, LABEL_HOST: host}


def container_labels(p: messages.Placement, cluster: str, host: str) -> dict[str, str]:
    # noops.* are written last so an app spec cannot claim another instance's identity.
    return {
        **p.spec.labels,
        **owner_labels(cluster, host),
        LABEL_INSTANCE: p.instance,
        LABEL_APP: p.app,
        LABEL_VERSION: str(p.version),
        LABEL_EPOCH: str(p.epoch),
        # Only when set, so a plain container's labels stay as they were.
        **({LABEL_ADDRESS: p.address} if p.address else {}),
        **({LABEL_EGRESS: str(p.spec.egress_mbit)} if p.spec.egress_mbit else {}),
        **({LABEL_HEALTH: messages.encode_value(p.spec.health_checks)} if p.spec.health_checks else {}),
        **({LABEL_KEEP_VOLUME: "true"} if p.spec.keep_volume else {}),
        **({LABEL_STOP_TIMEOUT: str(p.spec.stop_timeout_s)} if p.spec.stop_timeout_s > 0 else {}),
    }


def health_checks(info: ContainerInfo) -> tuple[messages.HealthCheckSpec, ...]:
    """The checks a container was created with; none when the label is missing or unreadable."""
    raw = info.labels.get(LABEL_HEALTH, "")
    if not raw:
        return ()
    try:
        return tuple(messages.decode_value(raw.encode(), list[messages.HealthCheckSpec]))
    except messages.DecodeError:
        return ()


@dataclass(frozen=True)
class Hardening:
    """The host's defaults for every container (HostdSettings); an app's ``security`` adds to them."""
    cap_drop: tuple[str, ...] = ("NET_RAW", "NET_ADMIN")   # names without CAP_; "ALL" drops every one
    pids_limit: int = 4096                                 # 0: none
    no_new_privileges: bool = True
    init: bool = True    # the engine's init (tini) as PID 1: SIGTERM reaches the app, zombies are reaped

    @classmethod
    def from_settings(cls, cfg: HostdSettings) -> "Hardening":
        return cls(cap_drop=cfg.cap_drop_names(), pids_limit=cfg.pids_limit, no_new_privileges=cfg.no_new_privileges,
                   init=cfg.init)


def security_config(sec: messages.SecuritySpec, hardening: Hardening) -> dict[str, Any]:
    """The HostConfig (and Config) keys of a container's privileges.  The volume bind stays writable
    under ``ReadonlyRootfs`` (a bind is read-write unless it says ``:ro``)."""
    add = list(dict.fromkeys(c.upper().removeprefix("CAP_") for c in sec.cap_add))
    # A capability given back is not dropped too: Docker would apply the drop after the add.
    drop = [c for c in hardening.cap_drop if c not in add]
    host: dict[str, Any] = {"CapDrop": drop, "CapAdd": add}
    if hardening.no_new_privileges:
        host["SecurityOpt"] = ["no-new-privileges:true"]
    if hardening.pids_limit > 0:
        host["PidsLimit"] = hardening.pids_limit
    if sec.read_only_rootfs:
        host["ReadonlyRootfs"] = True
    return host


def create_config(p: messages.Placement, cluster: str, host: str, volume: str = "",
                  hardening: Hardening = Hardening(), stop_timeout_s: int = 0,
                  image_has_init: bool = False) -> dict[str, Any]:
    """The body of POST /containers/create for a placement; ``volume``: host path of its volume;
    ``stop_timeout_s``: the grace its stops get (noops-init, if the image has it, kills then too);
    ``image_has_init``: the image runs noops-init, which is then PID 1 instead of the engine's init."""
    env = [f"{k}={v}" for k, v in p.spec.env.items()]
    if stop_timeout_s > 0:
        env.append(f"{INIT_STOP_TIMEOUT_ENV}={stop_timeout_s}")
    config: dict[str, Any] = {
        "Image": p.spec.image,
        "Env": env,
        "Labels": container_labels(p, cluster, host),
        "HostConfig": {
            "NanoCpus": int(p.spec.cpus * 1e9),
            "Memory": p.spec.mem_mb * MIB,
            "RestartPolicy": {"Name": "no"},
            **network.host_config(),
            **security_config(p.spec.security, hardening),
        },
    }
    if hardening.init and not image_has_init:
        # The kernel gives PID 1 no default signal actions: busybox httpd (the base image's) ignores
        # SIGTERM there, so every stop would wait for the whole grace and end in SIGKILL.
        config["HostConfig"]["Init"] = True
    if p.spec.security.user:  # empty means the image's own USER
        config["User"] = p.spec.security.user
    if volume:
        config["HostConfig"]["Binds"] = [f"{volume}:{p.spec.volume_path}"]
    if p.spec.cmd:  # empty means the image's own CMD
        config["Cmd"] = list(p.spec.cmd)
    return config


def info_from_inspect(data: Mapping[str, Any]) -> ContainerInfo:
    state = data.get("State") or {}
    return ContainerInfo(
        id=data.get("Id", ""),
        name=str(data.get("Name", "")).lstrip("/"),
        labels=dict((data.get("Config") or {}).get("Labels") or {}),
        state=str(state.get("Status", "")),
        ip=network.ip_of(data.get("NetworkSettings") or {}),
        exit_code=int(state.get("ExitCode") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        pid=int(state.get("Pid") or 0),
        started_at=_unix_time(str(state.get("StartedAt") or "")),
    )


def _unix_time(rfc3339: str) -> float:
    """Docker's '2026-11-28T02:42:18.123456789Z' (nanoseconds) → unix time; 0 when unset."""
    if not rfc3339 or rfc3339.startswith("0001-"):
        return 0.0
    head, _, frac = rfc3339.rstrip("Z").partition(".")
    zone = ""
    for sign in "+-":
        if sign in frac:
            frac, zone = frac.split(sign, 1)[0], sign + frac.split(sign, 1)[1]
    try:
        t = datetime.fromisoformat(f"{head}.{(frac or '0')[:6]}{zone or '+00:00'}")
    except ValueError:
        return 0.0
    return t.timestamp()


def info_from_list(data: Mapping[str, Any]) -> ContainerInfo:
    """An entry of GET /containers/json (no exit code there: inspect when it matters)."""
    names = data.get("Names") or [""]
    return ContainerInfo(
        id=data.get("Id", ""),
        name=str(names[0]).lstrip("/"),
        labels=dict(data.get("Labels") or {}),
        state=str(data.get("State", "")),
        ip=network.ip_of(data.get("NetworkSettings") or {}),
    )


def exit_reason(info: ContainerInfo, *, oom_killed: bool = False, init_said: str = "") -> str:
    """``oom_killed``: known from elsewhere than the engine's flag (its 'oom' event, the cgroup);
    ``init_said``: noops-init's last word on the app (``init_reason``), which says more than the code."""
    if info.oom_killed or oom_killed:
        return "OOMKilled"
    return init_said or f"exited with code {info.exit_code}"


def init_reason(log_lines: Sequence[str]) -> str:
    """noops-init's account of the app's end, from the container's last log lines ("" if none):
    'exited with code 3 after 2.1 s', 'killed by signal 9 (Killed) after 5.0 s (...)'."""
    for line in reversed(log_lines):
        text = line.strip()
        if text.startswith(INIT_LOG_PREFIX):
            said = text.removeprefix(INIT_LOG_PREFIX)
            if said.startswith(("exited with code ", "killed by signal ")):
                return said[:200]
    return ""


def create_failure(image: str, host: str, status: int, message: str) -> str:
    if status == 404:
        return f"image {image} not found on host {host}"
    if status == 409:
        return f"container name is already taken on host {host}: {message}"
    return f"could not create the container on host {host}: {message}"


def start_failure(host: str, message: str) -> str:
    return f"could not start the container on host {host}: {message}"
