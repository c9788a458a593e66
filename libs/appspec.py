"""The app spec: the native format users POST.  Defined once; the gateway validates with it,
the placer reads stored specs back through it.  Other issues extend it, never rename fields."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from libs.subjects import TOKEN_RE

AppId = Annotated[str, StringConstraints(pattern=TOKEN_RE.pattern)]


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


class AppSpec(Strict):
    id: AppId
    image: Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^\S+$")]
    cmd: list[str] = Field(default_factory=list, max_length=256)
    instances: int = Field(1, ge=0)
    resources: Resources = Field(default_factory=Resources)
    ports: list[Port] = Field(default_factory=list, max_length=64)
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    constraints: list[list[str]] = Field(default_factory=list)
    health_checks: list[dict[str, Any]] = Field(default_factory=list)
    upgrade_strategy: dict[str, Any] = Field(default_factory=dict)

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not k or "=" in k or "\x00" in k:
                raise ValueError(f"environment variable name {k!r} is not valid")
        return v

    @model_validator(mode="after")
    def _unique_ports(self) -> "AppSpec":
        names = [p.name for p in self.ports]
        if len(names) != len(set(names)):
            raise ValueError("port names must be unique")
        return self
