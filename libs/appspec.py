"""The app spec: the native format users POST.  Defined once; the gateway validates with it,
the placer reads stored specs back through it.  Other issues extend it, never rename fields."""
from __future__ import annotations

import posixpath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from libs import constraints
from libs.subjects import TOKEN_RE

AppId = Annotated[str, StringConstraints(pattern=TOKEN_RE.pattern)]


def _check_constraint(raw: list[str]) -> list[str]:
    try:
        constraints.parse(raw)
    except constraints.ConstraintError as exc:
        raise ValueError(str(exc)) from None
    return raw


# Each item validated on its own, so an error names it: "constraints.1".
ConstraintSpec = Annotated[list[str], AfterValidator(_check_constraint)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class AppSpec(Strict):
    id: AppId
    image: Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^\S+$")]
    cmd: list[str] = Field(default_factory=list, max_length=256)
    instances: int = Field(1, ge=0)
    resources: Resources = Field(default_factory=Resources)
    ports: list[Port] = Field(default_factory=list, max_length=64)
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    constraints: list[ConstraintSpec] = Field(default_factory=list, max_length=32)
    health_checks: list[dict[str, Any]] = Field(default_factory=list)
    upgrade_strategy: UpgradeStrategy = Field(default_factory=UpgradeStrategy)
    placement: Literal["binpack", "spread"] = Field("binpack", description="Fill the fullest feasible host "
                                                    "(utilization) or the emptiest (spread).")
    backoff_seconds: float = Field(1.0, gt=0, le=3600, description="First delay before relaunching a failed instance.")
    backoff_factor: float = Field(1.15, ge=1, le=100, description="Each further failure multiplies the delay.")
    max_launch_delay_seconds: float = Field(300.0, ge=0, le=86400, description="The delay never grows past this.")

    volume_path: str = Field("/data", max_length=4096,
                             description="Where the instance's volume (resources.disk_mb > 0) is mounted.")

    @field_validator("volume_path")
    @classmethod
    def _absolute_volume_path(cls, v: str) -> str:
        if not v.startswith("/") or v == "/" or "\x00" in v or ":" in v or posixpath.normpath(v) != v:
            raise ValueError("volume_path must be a normalized absolute path other than / (no ':')")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not k or "=" in k or "\x00" in k:
                raise ValueError(f"environment variable name {k!r} is not valid")
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
