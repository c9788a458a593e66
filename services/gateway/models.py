"""Request bodies beyond ``AppSpec`` itself (which lives in libs.appspec, shared with the placer)."""
from __future__ import annotations

from pydantic import Field

from libs.appspec import AppId, AppSpec, InstanceId, Strict


class AppUpdate(AppSpec):
    """PUT body: a full spec whose ``id`` may be left out (the path names the app)."""
    id: AppId | None = None  # type: ignore[assignment]

    def for_app(self, app_id: str) -> AppSpec:
        # Re-validate with the path id, so what is stored is exactly an AppSpec.
        return AppSpec.model_validate({**self.model_dump(), "id": app_id})


class ScaleRequest(Strict):
    """PATCH body: only the instance count may change this way, for now (unknown fields → 422)."""
    instances: int = Field(ge=0)


class RollbackRequest(Strict):
    version: int = Field(ge=1, description="The earlier version whose spec becomes the app's new version.")


class CancelRequest(Strict):
    rollback: bool = Field(False, description="Also return the app to the version it had before the deployment.")


class KillRequest(Strict):
    instances: list[InstanceId] = Field(min_length=1, max_length=10000, description="Instance ids of this app.")
    scale: bool = Field(True, description="Lower the desired count by as many (no replacements).")
