"""Image references: a table of what Docker accepts and what it refuses ("invalid reference format")."""
from __future__ import annotations

import re

import pytest

from libs import imageref

DIGEST = "sha256:" + "a" * 64

GOOD = [
    ("nginx", "bare-name"),
    ("nginx:1", "tag"),
    ("nginx:1.25.3-alpine", "dotted-tag"),
    ("noops/base:latest", "two-components"),
    ("library/nginx", "library"),
    ("a", "one-letter"),
    ("0", "one-digit"),
    ("my_app", "underscore"),
    ("my__app", "double-underscore"),
    ("my-app", "dash"),
    ("my---app", "many-dashes"),
    ("my.app", "dot"),
    ("ghcr.io/org/app:v1", "registry"),
    ("localhost/app", "localhost"),
    ("localhost:5000/app:dev", "registry-port"),
    ("Registry.Example.COM/app", "uppercase-domain"),
    ("198.18.1.1:5000/a/b/c", "ipv4-registry"),
    ("[::1]:5000/app", "ipv6-registry"),
    (f"nginx@{DIGEST}", "digest"),
    (f"nginx:1@{DIGEST}", "tag-and-digest"),
    ("app:" + "t" * 128, "longest-tag"),
    ("app:_x", "tag-underscore-first"),
    ("a" * 255, "longest-name"),
    ("z" * 64, "64-letters-not-hex"),
]

BAD = [
    ("", "empty"),
    ("Nginx", "uppercase-path"),
    ("nginx:", "empty-tag"),
    ("nginx:-x", "tag-dash-first"),
    ("nginx:.x", "tag-dot-first"),
    ("app:" + "t" * 129, "tag-too-long"),
    ("nginx:1:2", "two-tags"),
    ("-nginx", "leading-dash"),
    ("nginx-", "trailing-dash"),
    ("ngi___nx", "triple-underscore"),
    ("ngi..nx", "double-dot"),
    ("ngi._nx", "dot-underscore"),
    ("org//app", "empty-component"),
    ("/app", "leading-slash"),
    ("app/", "trailing-slash"),
    ("my app", "space"),
    ("app@sha256:abc", "short-digest"),
    ("app@md5:" + "a" * 32, "other-algorithm"),
    ("app@sha256:" + "A" * 64, "uppercase-digest"),
    ("app@", "empty-digest"),
    ("@" + DIGEST, "digest-only"),
    (":1", "tag-only"),
    ("a" * 256, "name-too-long"),
    ("0123456789abcdef" * 4, "64-hex-name"),
    ("-x.io/app", "bad-domain"),
    ("x.io:port/app", "non-numeric-port"),
    ("app:tag\u00e9", "non-ascii-tag"),
    ("app\n", "newline"),
    ("a" * 1000, "far-too-long"),
]


@pytest.mark.parametrize("ref", [pytest.param(r, id=i) for r, i in GOOD])
def test_docker_accepts(ref: str) -> None:
    assert imageref.problem(ref) is None
    assert re.fullmatch(imageref.PATTERN, ref)   # the document's pattern agrees


@pytest.mark.parametrize("ref", [pytest.param(r, id=i) for r, i in BAD])
def test_docker_refuses(ref: str) -> None:
    reason = imageref.problem(ref)
    assert reason
    with pytest.raises(ValueError, match="not a valid image reference"):
        imageref.check(ref)
