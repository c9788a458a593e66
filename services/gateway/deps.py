"""Dependencies the routers declare: everything comes from ``app.state``, set by ``create_app``
(no import-time globals, so tests build as many apps as they like)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from nats.aio.client import Client as NATS

from libs import db, outbox
from libs.settings import GatewaySettings


def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


def _queries(request: Request) -> db.Queries:
    return request.app.state.queries


def _relay(request: Request) -> outbox.Relay:
    return request.app.state.relay


def _nats(request: Request) -> NATS:
    return request.app.state.nc


def _settings(request: Request) -> GatewaySettings:
    return request.app.state.settings


def reads_task_log(calls: Iterable[Callable[..., Any] | None]) -> bool:
    """Whether a route with these dependencies talks to PostgreSQL (so it can answer 503)."""
    return _pool in set(calls)


PoolDep = Annotated[asyncpg.Pool, Depends(_pool)]
QueriesDep = Annotated[db.Queries, Depends(_queries)]
RelayDep = Annotated[outbox.Relay, Depends(_relay)]
NatsDep = Annotated[NATS, Depends(_nats)]
SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
