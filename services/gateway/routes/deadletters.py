"""/v1/dead-letters: messages noops gave up on (libs/deadletters.py), newest first."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.gateway.deps import PoolDep, QueriesDep
from services.gateway.responses import DocumentedRoute

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"], route_class=DocumentedRoute)


@router.get("")
async def list_dead_letters(pool: PoolDep, q: QueriesDep,
                            consumer: Annotated[str | None, Query(max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")] = None,
                            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """``consumer``: only that consumer's (``placer``, ``registry``, ``hostd-<host>``, ``outbox``)."""
    return [{"id": r["id"], "stream": r["stream"], "consumer": r["consumer"], "stream_seq": r["stream_seq"],
             "subject": r["subject"], "reason": r["reason"], "error": r["error"], "deliveries": r["deliveries"],
             "excerpt": r["excerpt"], "source": r["source"], "at": r["at"].isoformat()}
            for r in await pool.fetch(q.list_dead_letters, limit, consumer)]
