"""The gateway over HTTP: one ``Client`` per command.  Every failure leaves here as a ``CliError``
with its exit code (an unreachable gateway, an error body, an answer that is not JSON)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from cli import sse
from cli.config import Config
from cli.errors import SERVER, UNREACHABLE, USAGE, CliError, from_answer

# Seconds to wait for an answer; the event stream sends a keepalive every 15 s, so a read that
# waits longer than STREAM_READ_S means the stream is dead.
REQUEST_TIMEOUT_S = 10.0
STREAM_READ_S = 45.0


class Client:
    def __init__(self, cfg: Config, *, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.cfg = cfg
        headers = {"Accept": "application/json", "User-Agent": "noops-cli"}
        if cfg.token:
            headers["Authorization"] = f"Bearer {cfg.token}"
        self._http = httpx.Client(base_url=cfg.gateway, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---------------------------------------------------------------- plain requests

    def request(self, method: str, path: str, *, json: Any = None,
                params: Mapping[str, Any] | None = None) -> httpx.Response:
        try:
            r = self._http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if r.status_code >= 400:
            raise from_answer(r.status_code, _json_or_none(r), token_source=self.cfg.token_source)
        return r

    def call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        r = self.request(method, path, json=json, params=params)
        body = _json_or_none(r)
        if body is None and r.content:
            raise CliError(SERVER, f"{method} {path}: the answer is not JSON (is {self.cfg.gateway} a noops gateway?)")
        return body

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def get_all(self, path: str, **params: Any) -> list[Any]:
        """Every page of a paged list (X-Next-Cursor, e.g. an app's instances)."""
        out: list[Any] = []
        query = {k: v for k, v in params.items() if v is not None}
        while True:
            r = self.request("GET", path, params=query)
            page = _json_or_none(r)
            if not isinstance(page, list):
                raise CliError(SERVER, f"GET {path}: expected a list")
            out.extend(page)
            cursor = r.headers.get("X-Next-Cursor")
            if not cursor:
                return out
            query = {**query, "cursor": cursor}

    # ---------------------------------------------------------------- the event stream

    def events(self, params: Mapping[str, Any], *, last_event_id: str | None = None) -> Iterator[sse.Event]:
        """GET /v1/events, one event at a time until the stream ends (then it returns).  The first
        connection's failure raises CliError like any request."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S, read=STREAM_READ_S)
        try:
            with self._http.stream("GET", "/v1/events", params=params, headers=headers, timeout=timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    raise from_answer(r.status_code, _json_or_none(r), token_source=self.cfg.token_source)
                parser = sse.Parser()
                for line in r.iter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        yield event
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None

    def _transport_error(self, exc: httpx.HTTPError) -> CliError:
        url = self.cfg.gateway
        if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return CliError(USAGE, f"gateway {url!r}: {exc}")
        if isinstance(exc, httpx.ConnectTimeout):
            return CliError(UNREACHABLE, f"gateway {url} unreachable: no connection within {REQUEST_TIMEOUT_S:g}s")
        if isinstance(exc, httpx.TimeoutException):
            return CliError(UNREACHABLE, f"gateway {url} did not answer in time ({type(exc).__name__})")
        if isinstance(exc, httpx.ConnectError):
            return CliError(UNREACHABLE, f"gateway {url} unreachable: {_reason(exc)}")
        return CliError(UNREACHABLE, f"gateway {url}: {_reason(exc)}")


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    # "[Errno 111] Connection refused" → "connection refused"
    if "] " in text and text.startswith("[Errno"):
        text = text.split("] ", 1)[1]
    return text[:1].lower() + text[1:]


def _json_or_none(r: httpx.Response) -> Any:
    if not r.content:
        return None
    try:
        return r.json()
    except ValueError:
        return None
