"""The error answers of the OpenAPI document, declared once: every route says every status it can
answer, each with the one error body (``errors.ErrorBody``).

Most follow from a route's shape, so ``DocumentedRoute`` (the route class of every router) adds
them itself: 404 when the path names something, 400 (malformed JSON) and 413 (over
NOOPS_GATEWAY_MAX_BODY_BYTES, services/gateway/limits.py) when there is a body, 422 when there is
anything to validate, 503 when the handler reads the task log, 401 and 403 always (tokens).
What only the handler knows, a 409, the route declares: ``responses=CONFLICT``."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from services.gateway import deps
from services.gateway.errors import ErrorBody

_WHY = {
    400: "Malformed JSON.",
    401: "No token, or one that is not valid.",
    403: "The token's role or scopes do not allow this.",
    404: "Nothing has this id (also an id no app, host or instance can have), or no such route.",
    409: "Conflicts with the current state (see the operation).",
    413: "The body is over NOOPS_GATEWAY_MAX_BODY_BYTES; refused before it is read.",
    422: "Invalid input; each detail names the field.",
    503: "The task log cannot be reached; retry (nothing was half-written).",
}
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody, "description": why} for code, why in _WHY.items()}


def error(code: int, description: str) -> dict[int | str, dict[str, Any]]:
    """One error answer with a description of its own (e.g. which conflict a 409 is)."""
    return {code: {"model": ErrorBody, "description": description}}


CONFLICT = error(409, "The app already exists, or has no deployment in progress.")


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any] | None]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def answers(route: APIRoute) -> list[int]:
    """The error statuses a route can answer, from its shape."""
    codes = {401, 403}
    if route.dependant.path_params:
        codes.add(404)
    if route.body_field is not None:
        codes |= {400, 413}
    # FastAPI declares a 422 of its own shape wherever anything is validated; ours replaces it.
    if route.dependant.path_params or route.dependant.query_params or route.body_field is not None:
        codes.add(422)
    if deps.reads_task_log(_calls(route.dependant)):
        codes.add(503)
    return sorted(codes)


class DocumentedRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        declared = dict(kwargs.get("responses") or {})
        extra = {code: ERRORS[code] for code in answers(self) if code not in declared}
        if extra:
            # Built once more, now with every answer: FastAPI derives the response models it puts in
            # the document from ``responses`` in the constructor.
            super().__init__(path, endpoint, **{**kwargs, "responses": {**declared, **extra}})
