"""Exit codes and the one-line errors the CLI prints.  Pure: an answer's status and body in, a
``CliError`` out; ``main`` prints it and exits with its code."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OK = 0
FAILED = 1          # the deployment failed, was cancelled or superseded
USAGE = 2           # bad flags, unreadable spec file, 400 / 413 / 422 from the gateway
UNREACHABLE = 3     # no connection to the gateway, or no answer in time
AUTH = 4            # 401 / 403: no valid token, too low a role, an app outside the token's scope
NOT_FOUND = 5       # 404
CONFLICT = 6        # 409
TIMEOUT = 7         # --timeout passed before the deployment ended
SERVER = 8          # the gateway failed (5xx, 503 "task log unavailable, retry") or answered nonsense
INTERNAL = 9        # a bug in the CLI itself (NOOPS_DEBUG=1 shows the traceback)
INTERRUPTED = 130   # Ctrl-C while following (the deployment goes on)

CODES = {OK: "ok", FAILED: "deployment failed", USAGE: "usage or bad input", UNREACHABLE: "gateway unreachable",
         AUTH: "not authenticated or not allowed", NOT_FOUND: "not found", CONFLICT: "conflict",
         TIMEOUT: "timed out", SERVER: "gateway error", INTERNAL: "internal error", INTERRUPTED: "interrupted"}


class CliError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def code_of(status: int) -> int:
    if status in (401, 403):
        return AUTH
    if status == 404:
        return NOT_FOUND
    if status == 409:
        return CONFLICT
    if 400 <= status < 500:
        return USAGE
    return SERVER


def details_text(details: Any) -> str:
    """``[{"field": "resources.cpus", "reason": "..."}]`` → ``"resources.cpus: ..."`` (``; `` between)."""
    if not isinstance(details, list):
        return ""
    parts = []
    for d in details:
        if isinstance(d, Mapping):
            field, reason = str(d.get("field") or ""), str(d.get("reason") or "")
            parts.append(f"{field}: {reason}" if field else reason)
    return "; ".join(p for p in parts if p)


def from_answer(status: int, body: Any, *, token_source: str) -> CliError:
    """The gateway's error body (``{"error", "details"}``, services/gateway/errors.py) as one line."""
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        text = body["error"]
        more = details_text(body.get("details"))
        if more:
            text = f"{text}: {more}"
    else:
        text = f"HTTP {status}"
    if status == 401:
        text += (f" (token from {token_source})" if token_source != "none" else
                 " (no token: pass --token, set NOOPS_TOKEN or run `make up` for .noops/admin-token)")
    return CliError(code_of(status), text)
