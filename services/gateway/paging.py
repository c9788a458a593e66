"""Keyset cursors of the instance listings (GET /v1/apps/{id}/instances).

A page is ordered newest first by (created_at, id); the cursor is the key of its last row, so the
next page starts strictly after it whatever was inserted meanwhile (new rows are newer: they land
before the cursor, never shift a page).  Opaque to clients: base64url of ``1.<microseconds since
the epoch>.<instance id>``; the leading version lets the form change without breaking old links."""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from libs.subjects import INSTANCE_RE

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_VERSION = "1"
# Page sizes of the listing: the default, and the most one request may ask for.
DEFAULT_LIMIT = 500
MAX_LIMIT = 5000
MAX_CURSOR = 200  # characters: far more than any key needs
_MICROS = re.compile(r"-?[0-9]{1,19}")


class BadCursor(ValueError):
    """A cursor this gateway did not make (or one of a form it no longer reads)."""


@dataclass(frozen=True)
class Key:
    created_at: datetime
    id: str


def encode(key: Key) -> str:
    micros = (key.created_at - _EPOCH) // timedelta(microseconds=1)
    raw = f"{_VERSION}.{micros}.{key.id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(cursor: str) -> Key:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("not a cursor of this listing") from None
    version, _, rest = raw.partition(".")
    micros, _, ident = rest.partition(".")
    if version != _VERSION or not _MICROS.fullmatch(micros) or not INSTANCE_RE.match(ident):
        raise BadCursor("not a cursor of this listing")
    try:
        at = _EPOCH + timedelta(microseconds=int(micros))
    except OverflowError:
        raise BadCursor("not a cursor of this listing") from None
    return Key(at, ident)
