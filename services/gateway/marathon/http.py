"""Request plumbing shared by the /v2 routers: the body as Marathon reads it, ids from the path,
and the answer of a call that starts a deployment."""
from __future__ import annotations

import json
from typing import Any

from fastapi import Request
import msgspec
from fastapi.responses import JSONResponse, Response

from services.gateway.auth import require_app
from services.gateway.access import Principal
from services.gateway.marathon import ids
from services.gateway.marathon.errors import MarathonError, bad_id

# Marathon's embed values, with any of its prefixes ("apps.", "app.", none).
EMBED_PREFIXES = ("apps.", "app.")


def embeds(values: list[str]) -> set[str]:
    out = set()
    for v in values:
        for prefix in EMBED_PREFIXES:
            if v.startswith(prefix):
                v = v[len(prefix):]
                break
        out.add(v)
    return out


def flag(value: str | None) -> bool:
    """Marathon clients send booleans as ``true`` or Python's ``True``."""
    return value is not None and value.lower() == "true"


async def json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MarathonError(400, "Invalid JSON", str(exc)) from None


def app_id_of(marathon_id: str, who: Principal, path: str = "/id") -> tuple[str, str]:
    """(collapsed Marathon id, noops id) of a path or body id; 422 if it cannot map, 403 out of scope."""
    mid = ids.collapse(marathon_id)
    try:
        app_id = ids.to_noops(mid)
    except ids.BadId as exc:
        raise bad_id(exc, path) from None
    require_app(who, app_id)
    return mid, app_id


def encoded(body: Any) -> Response:
    """A big answer (every app with its tasks) encoded by msgspec: FastAPI's own encoding walks
    every value in Python and takes seconds for 10,000 apps (bench/marathon_apps.py)."""
    return Response(msgspec.json.encode(body), media_type="application/json")


def deployment(result: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(result, status_code=status,
                        headers={"Marathon-Deployment-Id": result["deploymentId"], **(headers or {})})
