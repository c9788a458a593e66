"""Request body limit: a body over NOOPS_GATEWAY_MAX_BODY_BYTES is refused with 413 and the API's
JSON error shape, before FastAPI reads (and parses) it.  Plain ASGI like MetricsMiddleware, so
streaming responses pass untouched.

A declared Content-Length over the limit is refused at once; a chunked body is counted as it
arrives and refused when it passes the limit (the handler has not run: FastAPI reads the whole
body before calling it, and is then told the client disconnected)."""
from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        try:
            too_big = declared is not None and int(declared) > self.max_bytes
        except ValueError:
            too_big = False   # a malformed length is the server's (uvicorn's) to refuse
        if too_big:
            await self._refuse(send)
            return
        seen = 0
        refused = False

        async def counting_receive() -> Message:
            # Past the limit the 413 is sent from here and the app is told the client went away:
            # raising instead would reach FastAPI's body parsing, which answers 400 for any error.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:   # after the 413, whatever the app still says is dropped
                await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": "request body too large",
                           "details": [{"field": "", "reason": f"the limit is {self.max_bytes} bytes"}]}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
