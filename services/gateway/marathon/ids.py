"""Names between Marathon and noops: app ids, task ids, deployment ids, timestamps.  Pure.

Marathon app ids are paths (``/prod/web``); noops app ids are one token of ``[a-z0-9-]``
(libs/subjects.TOKEN_RE), so a path maps to its segments joined with ``--``:

    /web       <->  web
    /prod/web  <->  prod--web

The mapping is a bijection on what it accepts (segments of ``[a-z0-9-]`` that neither start nor
end with ``-`` and hold no ``--``), so a list answers with exactly the id the client created.
("/prod/web" -> "prod-web" would read nicer but is lossy: "/prod-web" would collide with it.)
Marathon's dots in segments, uppercase, and ids whose token would pass 63 characters are refused.

A task id is the noops instance id (its app's id, ``-`` and 12 hex digits), so it encodes the
app.  A deployment id is ``<app>.<version>``: the noops deployment that rolls out that version
(opened by the placer once it reads the request), so an id is known when the write answers."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from libs.subjects import MAX_TOKEN, TOKEN_RE

SEPARATOR = "--"
_SEGMENT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_INSTANCE_SUFFIX_RE = re.compile(r"-[0-9a-f]{12}$")
_DEPLOYMENT_RE = re.compile(r"^(?P<app>[a-z0-9-]{1,63})\.(?P<version>[0-9]{1,10})$")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class BadId(ValueError):
    """A Marathon id that no noops app id can stand for; the message says why."""


def collapse(path: str) -> str:
    """``//prod//web/`` -> ``/prod/web`` (clients build ``/v2/apps/`` + id)."""
    return "/" + "/".join(s for s in path.split("/") if s)


def to_noops(marathon_id: str) -> str:
    segments = [s for s in marathon_id.split("/") if s]
    if not segments:
        raise BadId("an app id needs at least one path segment")
    for s in segments:
        if s in (".", ".."):
            raise BadId("relative ids ('.', '..') are not supported: give the absolute path")
        if not _SEGMENT_RE.match(s):
            raise BadId(f"segment {s[:64]!r}: lowercase letters, digits and '-' (not at either end); "
                        "noops ids have no '.'")
        if SEPARATOR in s:
            raise BadId(f"segment {s[:64]!r} holds '--', which noops uses to join path segments")
    out = SEPARATOR.join(segments)
    if len(out) > MAX_TOKEN or not TOKEN_RE.match(out):
        raise BadId(f"maps to {out[:80]!r}, longer than {MAX_TOKEN} characters (segments joined with '--')")
    return out


def to_marathon(app_id: str) -> str:
    return "/" + "/".join(app_id.split(SEPARATOR))


def app_of_task(task_id: str) -> str | None:
    """The noops app of a task id, None if it is not one noops made."""
    if not _INSTANCE_SUFFIX_RE.search(task_id):
        return None
    app = task_id[:-13]
    return app if TOKEN_RE.match(app) else None


def deployment_id(app_id: str, version: int) -> str:
    return f"{app_id}.{version}"


def parse_deployment_id(dep_id: str) -> tuple[str, int] | None:
    m = _DEPLOYMENT_RE.match(dep_id)
    return (m["app"], int(m["version"])) if m else None


def timestamp(t: datetime | None) -> str | None:
    """Marathon's format, which marathon-python alone parses: UTC with ``Z``, microseconds
    (exact, so a version's timestamp names it: rollback sends it back)."""
    if t is None:
        return None
    # isoformat, not strftime: this runs for every task of /v2/apps, and isoformat is 5x faster.
    return t.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_timestamp(text: str) -> datetime | None:
    for fmt in (TIME_FORMAT, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except (TypeError, ValueError):
            continue
    return None
