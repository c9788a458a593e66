"""The dependency every router is included with: find the route's rule in ``policy.RULES``, read
the token from the Authorization header, look it up (one indexed read: a revoked token stops
working on its next request), and refuse with 401 (no valid token) or 403 (not enough role).

The app scope of routes naming an app in the path (``{app_id}``) is checked here too; handlers
take the same dependency as ``WhoDep`` (FastAPI runs it once per request) to check the scope of
what the path does not name (a spec's id, an instance's app), filter lists, redact secrets and
name the token in the audit trail."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.gateway import policy, tokenstore
from services.gateway.access import Principal, Role, parse_authorization
from services.gateway.errors import ApiError

# Anonymous callers of the open routes; it has no role, so nothing in a handler grants it anything.
ANONYMOUS = Principal("", Role.viewer, apps="")
# Declares the scheme in OpenAPI (the docs page gets an "Authorize" button); it refuses nothing
# itself, the other header forms are read below.
BEARER = HTTPBearer(auto_error=False, description="A noops API token (also accepted: `token=<t>`, basic auth).")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="noops", charset="UTF-8"'}


def unauthorized(reason: str) -> ApiError:
    return ApiError(401, "authentication required", [{"field": "Authorization", "reason": reason}],
                    headers=CHALLENGE)


def forbidden(reason: str, field: str = "Authorization") -> ApiError:
    return ApiError(403, "forbidden", [{"field": field, "reason": reason}])


async def authorize(request: Request,
                    _: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None) -> Principal:
    route = request.scope.get("route")
    need = policy.rule(request.method, getattr(route, "path_format", request.url.path))
    if need is policy.OPEN:
        return ANONYMOUS
    if need is policy.MISSING:
        raise forbidden("this route has no access rule (services/gateway/policy.py)")
    assert isinstance(need, Role)
    secret = parse_authorization(request.headers.get("authorization"))
    if secret is None:
        raise unauthorized("send a token: 'Bearer <token>', 'token=<token>' or basic auth with the token as password")
    state = request.app.state
    who = await tokenstore.lookup(state.pool, state.queries, secret)
    if who is None:
        raise unauthorized("unknown, expired or revoked token")
    if not who.has(need):
        raise forbidden(f"needs the {need.name} role; token {who.name!r} has {who.role.name}")
    if need is Role.admin and who.apps is not None:
        raise forbidden(f"acts on the whole cluster; token {who.name!r} is limited to apps {who.apps!r}")
    # Routes under /v1/apps/{app_id}: the scope is checked here, before the body is even read.
    if "app_id" in request.path_params:
        require_app(who, request.path_params["app_id"])
    return who


WhoDep = Annotated[Principal, Depends(authorize)]


def require_app(who: Principal, app_id: str, field: str = "app") -> None:
    """403 unless the token's scope covers the app (for reads and changes alike)."""
    if not who.sees(app_id):
        raise forbidden(f"token {who.name!r} is limited to apps {who.apps!r}", field)
