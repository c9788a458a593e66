"""Every error the API returns has the same shape, ``{"error": ..., "details": [...]}`` (``ErrorBody``,
which the OpenAPI document declares for every error status), and none carries a traceback.
Handlers raise ``ApiError``; validation, unknown routes, wrong methods and a task log that cannot
be reached are mapped here, in one place."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import pydantic
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from libs import db
from services.gateway.params import NOUNS

log = logging.getLogger("noops.gateway")


class ErrorDetail(pydantic.BaseModel):
    field: str = pydantic.Field(description='Where: "resources.cpus", "3.id" (bulk item 3), "query.limit"; "" for the whole body.')
    reason: str


class ErrorBody(pydantic.BaseModel):
    error: str = pydantic.Field(description="What went wrong, for a person to read.")
    details: list[ErrorDetail] = pydantic.Field(default_factory=list, description="Present when there are some.")


class ApiError(Exception):
    def __init__(self, status: int, error: str, details: Sequence[dict[str, str]] = (),
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.details, self.headers = status, error, list(details), headers


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"{what} {ident!r} not found")


def invalid_spec(field: str, reason: str) -> ApiError:
    return ApiError(422, "invalid app spec", [{"field": field, "reason": reason}])


def body(error: str, details: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    return {"error": error, "details": list(details)} if details else {"error": error}


def field_of(loc: Sequence[str | int]) -> str:
    """``("body", "resources", "cpus")`` → ``"resources.cpus"``; query/path locations keep their prefix."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    return ".".join(str(p) for p in parts)


def validation_body(errors: Sequence[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """Map pydantic/FastAPI errors to (status, body).  A path id no app, host or instance can have
    names nothing: 404, as for an unknown one.  Malformed JSON is the client's syntax, not a spec
    problem, so it gets 400 instead of 422."""
    for e in errors:
        loc = e.get("loc", ())
        if len(loc) == 2 and loc[0] == "path" and loc[1] in NOUNS:
            return 404, body(f"{NOUNS[str(loc[1])]} {e.get('input')!r} not found")
    if any(e.get("type") == "json_invalid" for e in errors):
        reasons = [f"{(e.get('ctx') or {}).get('error', e.get('msg', ''))} at position {e['loc'][-1]}"
                   for e in errors if e.get("type") == "json_invalid"]
        return 400, body("malformed JSON", [{"field": "", "reason": r} for r in reasons])
    in_body = any(e.get("loc", ("",))[0] == "body" for e in errors)
    details = [{"field": field_of(e.get("loc", ())), "reason": e.get("msg", "invalid")} for e in errors]
    return 422, body("invalid app spec" if in_body else "invalid request", details)


METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(routes: Iterable[BaseRoute], path: str) -> list[str]:
    """Every method some route serves at this path, and OPTIONS, in a fixed order."""
    methods = {"OPTIONS"}
    for route in routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER))


def install(app: FastAPI, routes: Sequence[BaseRoute]) -> None:
    """``routes``: every route the app serves, flat (an included router is one entry of
    ``app.routes`` in recent FastAPI versions, so the caller passes the routers' own)."""
    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse(body(exc.error, exc.details), status_code=exc.status, headers=exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        status, content = validation_body(exc.errors())
        return JSONResponse(content, status_code=status)

    async def on_model_error(_: Request, exc: Exception) -> JSONResponse:
        # A spec re-validated inside a handler (PUT fills in the path id) fails like a body would.
        assert isinstance(exc, pydantic.ValidationError)
        details = [{"field": field_of(e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        return JSONResponse(body("invalid app spec", details), status_code=422)

    async def on_http(request: Request, exc: Exception) -> Response:
        # Unknown routes and wrong methods come through here.
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route matching the path only; the truth is
            # all of them.  OPTIONS is answered, not refused: the same list, no body.
            headers["Allow"] = ", ".join(allowed_methods([*app.router.routes, *routes], request.url.path))
            if request.method == "OPTIONS":
                return Response(status_code=204, headers=headers)
        return JSONResponse(body(str(exc.detail).lower()), status_code=exc.status_code, headers=headers)

    async def on_task_log_down(request: Request, exc: Exception) -> JSONResponse:
        # Transient by definition: the client should retry, and nothing was half-written because
        # every write is one transaction.
        log.warning("task log unavailable", extra={"path": request.url.path, "error": str(exc) or type(exc).__name__})
        return JSONResponse(body("task log unavailable, retry"), status_code=503, headers={"Retry-After": "1"})

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(pydantic.ValidationError, on_model_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for cls in (*db.TRANSIENT, db.TaskLogUnavailable):
        app.add_exception_handler(cls, on_task_log_down)
