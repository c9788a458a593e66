"""Asking a host's hostd for its instances' CPU and memory (noops.usage.<host>, request/reply;
services/hostd/usage.py answers).  One request, a short deadline: the cluster map shows "—"
rather than wait for a host that does not answer."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from libs import messages, subjects
from services.gateway.access import Principal
from services.gateway.errors import ApiError

_RETRY = {"Retry-After": "1"}


async def ask(nc: NATS, host: str, *, timeout_s: float) -> messages.Usage:
    """The host's answer, or ApiError 503 naming why there is none."""
    try:
        msg = await nc.request(subjects.usage(host), messages.encode(messages.UsageRequest()), timeout=timeout_s)
    except nats.errors.NoRespondersError:
        raise ApiError(503, f"host {host!r} does not answer (no hostd listening); retry", headers=_RETRY) from None
    except (nats.errors.Error, TimeoutError) as exc:
        # nats.errors.TimeoutError is one of these: a hostd that did not answer within the deadline.
        raise ApiError(503, f"host {host!r} did not answer within {timeout_s:g}s "
                            f"({type(exc).__name__}); retry", headers=_RETRY) from None
    try:
        return messages.decode(msg.data, messages.Usage)
    except messages.DecodeError as exc:
        raise ApiError(503, f"host {host!r} answered something unreadable: {exc}") from None


def view(usage: messages.Usage, who: Principal) -> dict[str, Any]:
    """The API's JSON (``at`` in RFC 3339), only the apps the token sees."""
    return {"host": usage.host, "truncated": usage.truncated,
            "items": [{"instance": u.instance, "app": u.app, "cpu_cores": u.cpu_cores, "cpu_seconds": u.cpu_seconds,
                       "memory_bytes": u.memory_bytes, "ready": u.ready,
                       "at": datetime.fromtimestamp(u.at, timezone.utc).isoformat()}
                      for u in usage.items if who.sees(u.app)]}
