"""Marathon's error shapes on the /v2 routes: ``{"message": ...}``, validation as 422
``{"message": "Object is not valid", "details": [{"path": ..., "errors": [...]}]}``, unparseable
JSON as 400 with ``details`` a string.  ``MarathonRoute`` (the route class of every /v2 router)
turns what the shared code raises (``ApiError`` of the store and of ``authorize``, request
validation) into these, so the store and the token checks stay the ones /v1 uses."""
from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from services.gateway.errors import ApiError
from services.gateway.marathon import ids, translate


class MarathonError(Exception):
    def __init__(self, status: int, message: str, details: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.details, self.headers = status, message, details, headers


def app_not_found(marathon_id: str) -> MarathonError:
    return MarathonError(404, f"App '{marathon_id}' does not exist")


def invalid(details: list[dict[str, Any]]) -> MarathonError:
    return MarathonError(422, "Object is not valid", details)


def bad_id(exc: ids.BadId, path: str = "/id") -> MarathonError:
    return invalid([translate.problem(path, str(exc))])


def _from_api(exc: ApiError) -> MarathonError:
    if exc.status == 422 and exc.details:
        return invalid([translate.problem(translate.marathon_path(d["field"].split(".")), d["reason"])
                        for d in exc.details])
    reasons = "; ".join(d["reason"] for d in exc.details)
    return MarathonError(exc.status, f"{exc.error}: {reasons}" if reasons else exc.error, headers=exc.headers)


def _from_validation(exc: RequestValidationError) -> MarathonError:
    return invalid([translate.problem("/" + "/".join(str(p) for p in e.get("loc", ())), e.get("msg", "invalid"))
                    for e in exc.errors()])


def to_marathon(exc: Exception) -> MarathonError | None:
    if isinstance(exc, MarathonError):
        return exc
    if isinstance(exc, translate.Invalid):
        return invalid(exc.details)
    if isinstance(exc, ApiError):
        return _from_api(exc)
    if isinstance(exc, RequestValidationError):
        return _from_validation(exc)
    return None


def response(err: MarathonError) -> JSONResponse:
    body: dict[str, Any] = {"message": err.message}
    if err.details is not None:
        body["details"] = err.details
    return JSONResponse(body, status_code=err.status, headers=err.headers)


class MarathonRoute(APIRoute):
    """Errors in Marathon's shape; everything else (the task log down: 503) as the gateway's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await inner(request)
            except Exception as exc:
                err = to_marathon(exc)
                if err is None:
                    raise
                return response(err)

        return handler
