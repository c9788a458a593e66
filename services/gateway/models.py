"""Request bodies beyond ``AppSpec`` itself (which lives in libs.appspec, shared with the placer)."""
from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from libs.appspec import AppId, AppSpec, InstanceId, Strict
from services.gateway.access import PATTERN_RE, TOKEN_NAME_RE


class AppUpdate(AppSpec):
    """PUT body: a full spec whose ``id`` may be left out (the path names the app)."""
    id: AppId | None = None  # type: ignore[assignment]

    def for_app(self, app_id: str) -> AppSpec:
        # Re-validate with the path id, so what is stored is exactly an AppSpec.
        return AppSpec.model_validate({**self.model_dump(), "id": app_id})


class ScaleRequest(Strict):
    """PATCH body: only the instance count may change this way, for now (unknown fields → 422)."""
    instances: int = Field(ge=0)


# Versions are PostgreSQL integers: a larger one names no version (422, not a driver error).
MAX_VERSION = 2**31 - 1


class RollbackRequest(Strict):
    version: int = Field(ge=1, le=MAX_VERSION, description="The earlier version whose spec becomes the app's new version.")


class CancelRequest(Strict):
    rollback: bool = Field(False, description="Also return the app to the version it had before the deployment.")


class KillRequest(Strict):
    instances: list[InstanceId] = Field(min_length=1, max_length=10000, description="Instance ids of this app.")
    scale: bool = Field(True, description="Lower the desired count by as many (no replacements).")


class TokenCreate(Strict):
    """POST /v1/tokens.  The answer carries the secret once; it is never shown again."""
    name: str = Field(pattern=TOKEN_NAME_RE.pattern, description="Unique among live tokens.")
    role: Literal["viewer", "operator", "admin"]
    apps: str | None = Field(None, pattern=PATTERN_RE.pattern,
                             description="Limit the token to apps whose id matches this glob (`*`: any run "
                                         "of characters), e.g. `payments-*`.  Left out: every app.")
    expires_in_s: int | None = Field(None, ge=1, le=10 * 365 * 86400, description="Expires this long from now.")
    expires_at: AwareDatetime | None = Field(None, description="Expires at this time (with a time zone).")

    @model_validator(mode="after")
    def _one_expiry(self) -> "TokenCreate":
        if self.expires_in_s is not None and self.expires_at is not None:
            raise ValueError("give expires_in_s or expires_at, not both")
        return self
# Answers of a fixed shape, for the OpenAPI document (views of whole apps, instances and hosts
# stay plain objects: views.py builds them from rows).

class Created(BaseModel):
    id: str
    version: int


class BulkCreated(BaseModel):
    created: list[Created] = Field(description="In request order.")


class Deleting(BaseModel):
    id: str
    status: Literal["deleting"]


class NewVersion(BaseModel):
    id: str
    version: int = Field(description="The app's new version.")


class RolledBack(NewVersion):
    spec_of_version: int = Field(description="The earlier version whose spec it has.")


class DeploymentAction(BaseModel):
    id: int = Field(description="The deployment's id.")
    app: str
    action: Literal["pause", "resume", "cancel"]
    rollback: bool


class Backoff(BaseModel):
    delay_s: float
    launch_after: str | None


class DelayReset(BaseModel):
    id: str
    backoff: Backoff


class Killing(BaseModel):
    id: str
    killing: list[str] = Field(description="The instances being stopped.")
    scaled: bool = Field(description="Whether the desired count was lowered by as many.")


class HostFlags(BaseModel):
    id: str
    draining: bool
    cordoned: bool
    apps_affected: int = Field(description="Apps with instances on the host, asked to look again.")


class InstanceUsage(BaseModel):
    instance: str
    app: str
    cpu_cores: float | None = Field(description="CPU cores used between the host's last two scrapes of the "
                                                "instance; null after the first (nothing to compare with yet).")
    cpu_seconds: float = Field(description="CPU seconds of the instance's app process tree so far.")
    memory_bytes: int = Field(description="Resident memory of that process tree.")
    ready: bool = Field(description="noops-init's readiness of the instance.")
    at: str = Field(description="When hostd scraped it (RFC 3339).")


class HostUsage(BaseModel):
    host: str
    items: list[InstanceUsage] = Field(description="Instances whose image runs noops-init (others have no stats), "
                                                   "of apps the token sees, by instance id.")
    truncated: bool = Field(description="The host has more instances with stats than one answer holds (1,000).")
