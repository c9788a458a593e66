"""Request counter and latency histogram, labelled by route *template* (``/v1/apps/{app_id}``),
never by raw path, so label cardinality stays bounded whatever clients send."""
from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Module-level like every prometheus metric: the default registry is process-wide anyway, and
# creating them per app would fail on the second create_app() in a test session.
REQUESTS = Counter("noops_gateway_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram("noops_gateway_request_seconds", "HTTP request duration", ["method", "route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))


class MetricsMiddleware:
    """Plain ASGI (not BaseHTTPMiddleware), so streaming responses such as /v1/events pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises before answering
        start = time.perf_counter()

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUESTS.labels(scope["method"], template, str(status)).inc()
            LATENCY.labels(scope["method"], template).observe(time.perf_counter() - start)
