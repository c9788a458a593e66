"""The instance listings' query parameters and paging headers, shared by GET /v1/apps/{id}/instances
and GET /v1/instances (the cursor itself is paging.py's, pure)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import Query, Request, Response

from services.gateway import paging
from services.gateway.errors import ApiError

PhaseQuery = Annotated[Literal["live", "ended"] | None, Query(
    description="`live`: not ended yet (PENDING, STARTING, RUNNING); `ended`: FAILED, KILLED or LOST "
                "(kept for the retention of docs/retention.md).")]
LimitQuery = Annotated[int, Query(ge=1, le=paging.MAX_LIMIT, description=f"Page size (default {paging.DEFAULT_LIMIT}).")]
CursorQuery = Annotated[str | None, Query(max_length=paging.MAX_CURSOR, description=(
    "Where the page starts: the `X-Next-Cursor` of the previous page (opaque)."))]


def start_key(cursor: str | None) -> paging.Key | None:
    """The key a page starts after; a cursor this gateway did not make is a 422."""
    if cursor is None:
        return None
    try:
        return paging.decode(cursor)
    except paging.BadCursor as exc:
        raise ApiError(422, "invalid request", [{"field": "query.cursor", "reason": str(exc)}]) from None


def one_page(rows: Sequence[Any], limit: int, request: Request, response: Response) -> Sequence[Any]:
    """``rows`` were fetched with one row more than the page: when it is there, the page is cut and
    the answer carries `X-Next-Cursor` and `Link: <...>; rel="next"` (the same query, next page)."""
    if len(rows) <= limit:
        return rows
    rows = rows[:limit]
    nxt = paging.encode(paging.Key(rows[-1]["created_at"], rows[-1]["id"]))
    response.headers["X-Next-Cursor"] = nxt
    # Relative (path and query): right behind any proxy that keeps the path.
    there = request.url.include_query_params(cursor=nxt)
    response.headers["Link"] = f'<{there.path}?{there.query}>; rel="next"'
    return rows
