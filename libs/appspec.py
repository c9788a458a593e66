"""The app spec: the native format users POST.  Defined once; the gateway validates with it,
the placer reads stored specs back through it.  Other issues extend it, never rename fields."""
from __future__ import annotations

import json
import posixpath
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StringConstraints,
                      ValidationInfo, WithJsonSchema, field_validator, model_validator)

from libs import constraints, imageref
from libs.messages import MAX_STOP_TIMEOUT_S
from libs.subjects import INSTANCE_RE, MAX_INSTANCE_ID, MAX_TOKEN, TOKEN_RE

# Ids, bounded everywhere they appear (bodies here, paths in the gateway): app and host ids become
# NATS subject tokens; an instance id is its app's id and 12 hex digits (services/placer/commit.py).
AppId = Annotated[str, StringConstraints(max_length=MAX_TOKEN, pattern=TOKEN_RE.pattern)]
HostId = AppId
InstanceId = Annotated[str, StringConstraints(max_length=MAX_INSTANCE_ID, pattern=INSTANCE_RE.pattern)]

# The document carries the whole grammar as a pattern (clients and fuzzers generate from it); the
# validator says which part failed.
ImageRef = Annotated[str, AfterValidator(imageref.check),
                     WithJsonSchema({"type": "string", "minLength": 1, "maxLength": imageref.MAX_REFERENCE,
                                     "pattern": imageref.PATTERN,
                                     "description": "A Docker image reference: [registry[:port]/]name[:tag][@sha256:digest]."})]

# Size bounds.  A spec travels inside placement messages (one placement per instance, at most
# 256 KiB of them per message: libs/messages.py), and NATS refuses a message over its max_payload
# (1 MiB by default): with these bounds one placement stays far below it, so no spec can produce a
# placement NATS would refuse (which would be set aside by the outbox relay, never started).
# Sizes are counted as encoded JSON, so escaping (control characters: 6 bytes each) counts too.
MAX_ENV = 256                  # variables
MAX_ENV_NAME = 256             # characters
MAX_ENV_BYTES = 128 * 1024     # all names and values, encoded
MAX_LABELS = 64
MAX_LABEL_KEY = 128
MAX_LABEL_VALUE = 1024
MAX_ARG = 4096                 # one cmd / health-check command argument, characters
MAX_CMD_BYTES = 64 * 1024      # a whole cmd or health-check command, encoded
MAX_CONSTRAINT = 1024


def _storable(v: str) -> str:
    # PostgreSQL's jsonb holds neither NUL (\u0000) nor half a UTF-16 surrogate pair, and the spec is
    # stored as jsonb: refused here, naming the field, instead of failing the insert.
    if "\x00" in v:
        raise ValueError("must not contain a NUL character")
    try:
        v.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (a lone surrogate is not)") from None
    return v


# Free text of a spec (arguments, environment, labels, constraints, paths).
Text = Annotated[str, AfterValidator(_storable)]


def _encoded_len(value: object) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def _bounded_args(v: list[str]) -> list[str]:
    for i, arg in enumerate(v):
        if len(arg) > MAX_ARG:
            raise ValueError(f"argument {i} has {len(arg)} characters; at most {MAX_ARG}")
    if _encoded_len(v) > MAX_CMD_BYTES:
        raise ValueError(f"takes {_encoded_len(v)} bytes encoded; at most {MAX_CMD_BYTES}")
    return v


Args = Annotated[list[Text], AfterValidator(_bounded_args)]


def _check_constraint(raw: list[str]) -> list[str]:
    if any(len(part) > MAX_CONSTRAINT for part in raw):
        raise ValueError(f"a constraint part is longer than {MAX_CONSTRAINT} characters")
    try:
        constraints.parse(raw)
    except constraints.ConstraintError as exc:
        raise ValueError(str(exc)) from None
    return raw


# Each item validated on its own, so an error names it: "constraints.1".
ConstraintSpec = Annotated[list[Text], AfterValidator(_check_constraint)]


class Strict(BaseModel):
    """Unknown fields are refused and types are strict: ``false`` is not 0 and ``"3"`` is not 3 (an
    int is still a valid float).  Stored specs read back through these models too: they were
    written by ``model_dump`` of one, so their types are already exact."""
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Resources(Strict):
    cpus: float = Field(0.1, gt=0, le=1024, description="CPU share (Docker CPU quota).")
    mem_mb: int = Field(32, ge=4, le=4 * 1024 * 1024, description="Memory limit in MiB.")
    disk_mb: int = Field(0, ge=0, le=64 * 1024 * 1024, description="Per-instance volume size; 0 = none.")
    egress_mbit: int = Field(0, ge=0, le=400_000, description="Egress limit; 0 = unlimited.")


class Port(Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
    container_port: int = Field(ge=1, le=65535)
    protocol: str = Field("tcp", pattern="^(tcp|udp)$")
    host_port: int = Field(0, ge=0, le=65535, description=(
        "A port on the host itself that each instance needs (0: none). The placer puts at most one such "
        "instance on a host and skips hosts where something already listens on that port."))


class UpgradeStrategy(Strict):
    """Marathon's rolling-update knobs, plus a progress deadline and automatic rollback."""
    minimum_health_capacity: float = Field(1.0, ge=0, le=1, description="Share of instances that must stay healthy.")
    maximum_over_capacity: float = Field(1.0, ge=0, le=1, description="Share of extra instances allowed meanwhile.")
    progress_deadline_s: float = Field(600.0, gt=0, le=86400, description="A deployment making no progress "
                                       "for this long fails.")
    auto_rollback: bool = Field(True, description="A failed deployment returns the app to its last good version.")


# Linux capabilities an app may ask to get back (``security.cap_add``), by Docker's names without
# the CAP_ prefix.  Containers start with Docker's default set minus NET_RAW and NET_ADMIN (they
# share the hosts' L2 segment: with those, one container could answer ARP for another's address);
# asking for any capability needs an admin token.
CAPABILITIES = frozenset({
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "CHOWN",
    "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE",
    "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYSLOG",
    "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE",
    "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "WAKE_ALARM",
})


def _capability(v: Any) -> Any:
    if isinstance(v, str):
        v = v.upper().removeprefix("CAP_")
        if v not in CAPABILITIES:
            raise ValueError(f"{v[:32]!r} is not a Linux capability")
    return v


class Security(Strict):
    """How the app's containers run.  The defaults need nothing: Docker's default capabilities
    minus NET_RAW and NET_ADMIN, ``no-new-privileges``, the host's pids limit, the image's user."""
    cap_add: list[Annotated[str, BeforeValidator(_capability)]] = Field(
        default_factory=list, max_length=64,
        description="Capabilities to give back (e.g. NET_BIND_SERVICE, NET_RAW); needs an admin token.")
    user: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$",
                             description="Run as this user[:group] (name or number) instead of the image's.")
    read_only_rootfs: bool = Field(False, description="Mount the container's root filesystem read-only "
                                   "(its volume, if any, stays writable).")


def _upper(v: Any) -> Any:
    return v.upper() if isinstance(v, str) else v


class HealthCheck(Strict):
    """One health check, Marathon's shape: ``HTTP`` (port name, path, expected status range),
    ``TCP`` (port name: a connection is accepted) or ``COMMAND`` (run inside the container, exit 0).
    Defaults are Marathon's: 300 s grace, every 60 s, 20 s timeout, killed after 3 failures."""
    protocol: Annotated[Literal["HTTP", "TCP", "COMMAND"], BeforeValidator(_upper)] = Field(
        description="HTTP, TCP or COMMAND (any case).")
    port_name: str | None = Field(None, description="One of the app's port names (HTTP and TCP).")
    path: Text = Field("/", max_length=2048, pattern=r"^/\S*$", description="HTTP: the path asked for.")
    # Not strict as a whole: JSON has no tuples, and strict mode takes only a tuple for one.
    status: tuple[StrictInt, StrictInt] = Field((200, 399), strict=False,
                                                description="HTTP: the lowest and highest status that pass.")
    command: Args = Field(default_factory=list, max_length=256,
                               description="COMMAND: argv run in the container; exit code 0 passes.")
    grace_period_s: float = Field(300.0, ge=0, le=86400, description="Failures after the start do not count "
                                  "for this long (a success ends the grace period early).")
    interval_s: float = Field(60.0, ge=0.1, le=86400, description="Time between two checks.")
    timeout_s: float = Field(20.0, gt=0, le=3600, description="A check not answered within this fails.")
    max_consecutive_failures: int = Field(3, ge=0, le=1000, description="The instance is killed (and replaced) "
                                          "after this many failures in a row; 0 = never.")

    @field_validator("status")
    @classmethod
    def _status_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 100 <= v[0] <= v[1] <= 599:
            raise ValueError("status must be [lowest, highest] with 100 <= lowest <= highest <= 599")
        return v

    @model_validator(mode="after")
    def _fields_of_protocol(self) -> "HealthCheck":
        if self.protocol == "COMMAND":
            if not self.command:
                raise ValueError("command is required for COMMAND checks")
            if self.port_name is not None:
                raise ValueError("port_name applies to HTTP and TCP checks only")
        else:
            if not self.port_name:
                raise ValueError(f"port_name is required for {self.protocol} checks")
            if self.command:
                raise ValueError("command applies to COMMAND checks only")
        return self

    def describe(self) -> str:
        """How a result names the check: "http /health", "tcp http", "command wget -q ..."."""
        if self.protocol == "HTTP":
            return f"http {self.path}"
        if self.protocol == "TCP":
            return f"tcp {self.port_name}"
        return "command " + " ".join(self.command)[:80]


class AppSpec(Strict):
    id: AppId
    image: ImageRef
    cmd: Args = Field(default_factory=list, max_length=256)
    instances: int = Field(1, ge=0)
    resources: Resources = Field(default_factory=Resources)
    ports: list[Port] = Field(default_factory=list, max_length=64)
    env: dict[Text, Text] = Field(default_factory=dict)
    labels: dict[Text, Text] = Field(default_factory=dict)
    constraints: list[ConstraintSpec] = Field(default_factory=list, max_length=32)
    health_checks: list[HealthCheck] = Field(default_factory=list, max_length=8)
    upgrade_strategy: UpgradeStrategy = Field(default_factory=UpgradeStrategy)
    placement: Literal["binpack", "spread"] = Field("binpack", description="Fill the fullest feasible host "
                                                    "(utilization) or the emptiest (spread).")
    backoff_seconds: float = Field(1.0, gt=0, le=3600, description="First delay before relaunching a failed instance.")
    backoff_factor: float = Field(1.15, ge=1, le=100, description="Each further failure multiplies the delay.")
    max_launch_delay_seconds: float = Field(300.0, ge=0, le=86400, description="The delay never grows past this.")

    security: Security = Field(default_factory=Security, description="Capabilities, user, read-only root.")
    volume_path: Text = Field("/data", max_length=4096,
                             description="Where the instance's volume (resources.disk_mb > 0) is mounted.")
    kill_grace_s: int | None = Field(None, ge=1, le=MAX_STOP_TIMEOUT_S, description=(
        "Seconds an instance's process gets between SIGTERM and SIGKILL when it is stopped (scale down, update, "
        "health kill, sweep); null = the host's default (NOOPS_STOP_TIMEOUT_S, 5 s)."))

    @field_validator("volume_path")
    @classmethod
    def _absolute_volume_path(cls, v: str) -> str:
        if not v.startswith("/") or v == "/" or "\x00" in v or ":" in v or posixpath.normpath(v) != v:
            raise ValueError("volume_path must be a normalized absolute path other than / (no ':')")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_ENV:
            raise ValueError(f"{len(v)} variables; at most {MAX_ENV}")
        for k in v:
            if not k or "=" in k or "\x00" in k:
                raise ValueError(f"environment variable name {k!r} is not valid")
            if len(k) > MAX_ENV_NAME:
                raise ValueError(f"environment variable name {k[:32]!r}... is longer than {MAX_ENV_NAME} characters")
        size = _encoded_len(v)
        if size > MAX_ENV_BYTES:
            raise ValueError(f"names and values take {size} bytes encoded; at most {MAX_ENV_BYTES}")
        return v

    @field_validator("labels")
    @classmethod
    def _bounded_labels(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_LABELS:
            raise ValueError(f"{len(v)} labels; at most {MAX_LABELS}")
        for k, value in v.items():
            if not k or len(k) > MAX_LABEL_KEY:
                raise ValueError(f"label key {k[:32]!r} must have 1 to {MAX_LABEL_KEY} characters")
            if len(value) > MAX_LABEL_VALUE:
                raise ValueError(f"label {k[:32]!r}: value longer than {MAX_LABEL_VALUE} characters")
        return v

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, ports: list[Port]) -> list[Port]:
        names = [p.name for p in ports]
        if len(names) != len(set(names)):
            raise ValueError("port names must be unique")
        host_ports = [p.host_port for p in ports if p.host_port]
        if len(host_ports) != len(set(host_ports)):
            raise ValueError("host ports must be unique")
        return ports

    @field_validator("health_checks")
    @classmethod
    def _checks_name_ports(cls, v: list[HealthCheck], info: ValidationInfo) -> list[HealthCheck]:
        names = [p.name for p in info.data.get("ports", [])]
        for i, check in enumerate(v):
            if check.port_name is not None and check.port_name not in names:
                raise ValueError(f"health_checks.{i}.port_name {check.port_name!r} is not one of the app's "
                                 f"ports ({', '.join(names) or 'none'})")
        return v
