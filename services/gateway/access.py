"""Who is asking and what they may do: roles, app scopes, the accepted Authorization forms and
secret redaction.  Pure: no I/O, so every rule here is unit-tested from a table
(tests/unit/gateway/test_access_rules.py).  The route → role table is in ``policy.py``; the
token lookup in ``tokenstore.py``."""
from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from dataclasses import dataclass
from typing import Any

TOKEN_PREFIX = "noops_"
REDACTED = "<redacted>"
# An app-id glob: the characters of an app id (libs/subjects.TOKEN_RE) plus ``*``.
PATTERN_RE = re.compile(r"^[a-z0-9*-]{1,128}$")
TOKEN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class Role(enum.IntEnum):
    """Ordered: each role may do what the ones below it may."""
    viewer = 1    # read
    operator = 2  # deploy, scale, restart, kill, rollback, pause/resume/cancel
    admin = 3     # hosts (drain, cordon), tokens, audit, dead letters, added capabilities


def token_hash(secret: str) -> str:
    """What the database keeps.  A plain sha256 is enough here, unlike for passwords: the secret
    is 32 random bytes (256 bits), so there is nothing to guess or look up in a dictionary, and a
    slow KDF would only cost every request a few milliseconds.  Without a salt the hash is also
    the lookup key (one indexed read per request)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_authorization(header: str | None) -> str | None:
    """The token from an Authorization header, in any accepted form; None if there is none.

    ``Bearer <t>`` · Marathon/DC/OS ``token=<t>`` · ``Basic base64(<any user>:<t>)``."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    low = scheme.lower()
    if low == "bearer":
        return rest.strip() or None
    if low.startswith("token="):
        return header.strip()[len("token="):].strip() or None
    if low == "basic":
        try:
            decoded = base64.b64decode(rest.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


def pattern_problem(pattern: str) -> str | None:
    if not PATTERN_RE.match(pattern):
        return "an app-id pattern: lowercase letters, digits, '-' and '*' (any run of characters), at most 128"
    return None


def matches(pattern: str | None, app_id: str) -> bool:
    """``payments-*`` matches ``payments-api``; None matches every app.  Only ``*`` is special."""
    if pattern is None:
        return True
    rx = "".join(".*" if c == "*" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, app_id) is not None


@dataclass(frozen=True)
class Principal:
    """The token a request carries, as the database knows it."""
    name: str
    role: Role
    apps: str | None = None   # app-id pattern; None: every app

    def has(self, role: Role) -> bool:
        return self.role >= role

    def sees(self, app_id: str) -> bool:
        return matches(self.apps, app_id)

    def may_change(self, app_id: str) -> bool:
        return self.has(Role.operator) and self.sees(app_id)


def redact_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with every ``env`` value replaced (names kept): what a viewer sees."""
    if not spec.get("env"):
        return spec
    return {**spec, "env": {k: REDACTED for k in spec["env"]}}


def spec_for(who: Principal, app_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    return spec if who.may_change(app_id) else redact_spec(spec)


def cap_add_problems(who: Principal, specs: list[tuple[str, Any]]) -> list[dict[str, str]]:
    """Added capabilities are admin-approved: one problem per spec that asks for some.
    ``specs``: (field prefix, AppSpec) pairs, the prefix "" for a single spec, "3." in a bulk."""
    if who.has(Role.admin):
        return []
    return [{"field": f"{prefix}security.cap_add",
             "reason": f"adding capabilities ({', '.join(s.security.cap_add)}) needs an admin token"}
            for prefix, s in specs if s.security.cap_add]
