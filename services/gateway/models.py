"""Request bodies beyond ``AppSpec`` itself (which lives in libs.appspec, shared with the placer)."""
from __future__ import annotations

from pydantic import Field

from libs.appspec import AppId, AppSpec, Strict


class AppUpdate(AppSpec):
    """PUT body: a full spec whose ``id`` may be left out (the path names the app)."""
    id: AppId | None = None  # type: ignore[assignment]

    def for_app(self, app_id: str) -> AppSpec:
        # Re-validate with the path id, so what is stored is exactly an AppSpec.
        return AppSpec.model_validate({**self.model_dump(), "id": app_id})


class ScaleRequest(Strict):
    """PATCH body: only the instance count may change this way, for now (unknown fields → 422)."""
    instances: int = Field(ge=0)
