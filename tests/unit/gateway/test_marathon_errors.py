"""What the shared code raises, in Marathon's error shapes (services/gateway/marathon/errors.py)."""
from __future__ import annotations

import json

import pytest
from fastapi.exceptions import RequestValidationError

from services.gateway.errors import ApiError
from services.gateway.marathon import errors, translate


@pytest.mark.parametrize("exc,status,body", [
    (ApiError(422, "invalid app spec", [{"field": "resources.cpus", "reason": "no host has 9 cpus"}]), 422,
     {"message": "Object is not valid", "details": [{"path": "/cpus", "errors": ["no host has 9 cpus"]}]}),
    (ApiError(422, "invalid app spec", [{"field": "health_checks.0.interval_s", "reason": "too small"}]), 422,
     {"message": "Object is not valid", "details": [{"path": "/healthChecks/0/intervalSeconds",
                                                    "errors": ["too small"]}]}),
    (ApiError(403, "forbidden", [{"field": "Authorization", "reason": "needs the operator role"}]), 403,
     {"message": "forbidden: needs the operator role"}),
    (ApiError(409, "app 'x' already exists"), 409, {"message": "app 'x' already exists"}),
    (translate.Invalid([translate.problem("/gpus", "no GPUs")]), 422,
     {"message": "Object is not valid", "details": [{"path": "/gpus", "errors": ["no GPUs"]}]}),
    (RequestValidationError([{"loc": ("query", "limit"), "msg": "too big"}]), 422,
     {"message": "Object is not valid", "details": [{"path": "/query/limit", "errors": ["too big"]}]}),
    (errors.MarathonError(400, "Invalid JSON", "Expecting value"), 400,
     {"message": "Invalid JSON", "details": "Expecting value"}),
], ids=["store-422", "native-path", "403", "409", "invalid", "query", "400"])
def test_mapped(exc: Exception, status: int, body: dict) -> None:
    err = errors.to_marathon(exc)
    assert err is not None
    r = errors.response(err)
    assert (r.status_code, json.loads(r.body)) == (status, body)


def test_the_challenge_header_stays() -> None:
    err = errors.to_marathon(ApiError(401, "authentication required", [{"field": "Authorization", "reason": "x"}],
                                      headers={"WWW-Authenticate": "Bearer"}))
    assert err is not None and errors.response(err).headers["www-authenticate"] == "Bearer"


def test_anything_else_is_left_to_the_gateway() -> None:
    assert errors.to_marathon(RuntimeError("boom")) is None
