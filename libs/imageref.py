"""Docker image references, checked the way the distribution/reference grammar defines them, so a
spec whose image Docker would refuse ("invalid reference format") is refused at the API instead of
crash-looping on a host:

    reference  := name [":" tag] ["@" digest]
    name       := [domain "/"] path                       (at most 255 characters)
    domain     := host [":" port]      host: DNS labels joined by ".", or [IPv6]
    path       := component ["/" component]*
    component  := [a-z0-9]+ ((\\.|_|__|-+) [a-z0-9]+)*
    tag        := [\\w][\\w.-]{0,127}
    digest     := "sha256:" 64 lowercase hex digits

As in Docker, the first part of the name is a domain only when something follows it; either way
it must be valid as one or the other.  Pure: no I/O, no registry is asked."""
from __future__ import annotations

import re

MAX_NAME = 255
# A whole reference: name, ":" tag, "@sha256:" digest.
MAX_REFERENCE = MAX_NAME + 1 + 128 + 1 + 7 + 64

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"   # \w, spelled out: ASCII as in Go
_DIGEST = r"sha256:[0-9a-f]{64}"

# The whole grammar in one expression, for the OpenAPI document (clients and fuzzers generate from
# it); ``problem`` below gives the reason a reference fails.
PATTERN = rf"^(?:{_DOMAIN}/)?{_PATH}(?::{_TAG})?(?:@{_DIGEST})?$"

_NAME_RE = re.compile(rf"(?:{_DOMAIN}/)?{_PATH}")
_TAG_RE = re.compile(_TAG)
_DIGEST_RE = re.compile(_DIGEST)
_HEX64_RE = re.compile(r"[0-9a-f]{64}")


def problem(ref: str) -> str | None:
    """Why ``ref`` is not a valid image reference, or None when it is one."""
    if len(ref) > MAX_REFERENCE:
        return f"has {len(ref)} characters; at most {MAX_REFERENCE}"
    rest, at, digest = ref.partition("@")
    if at and not _DIGEST_RE.fullmatch(digest):
        return "the digest after '@' must be sha256: and 64 lowercase hex digits"
    # A ":" after the last "/" starts the tag; one before it belongs to a registry's port.
    name, colon, tag = rest.rpartition(":") if ":" in rest.rpartition("/")[2] else (rest, "", "")
    if colon and not _TAG_RE.fullmatch(tag):
        return f"tag {tag[:32]!r} must be 1 to 128 of letters, digits, '_', '.', '-', not starting with '.' or '-'"
    if not name:
        return "the name is missing"
    if len(name) > MAX_NAME:
        return f"the name has {len(name)} characters; at most {MAX_NAME}"
    if _HEX64_RE.fullmatch(name):
        return "the name must not be 64 hex digits (Docker reads that as an image id)"
    if not _NAME_RE.fullmatch(name):
        return (f"name {name[:64]!r} must be [registry[:port]/]path, the path lowercase letters and digits "
                "separated by '.', '_', '__', '-' or '/'")
    return None


def check(ref: str) -> str:
    """A pydantic validator: ``ref`` unchanged, or ValueError with the reason."""
    reason = problem(ref)
    if reason is not None:
        raise ValueError(f"not a valid image reference: {reason}")
    return ref
