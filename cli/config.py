"""Where the gateway is and which token to send.  Each comes from the first of: the flag
(``--gateway``, ``--token``), the environment (``NOOPS_GATEWAY``, ``NOOPS_TOKEN``), the default
(http://127.0.0.1:8700, where `make up` serves; the token in ``.noops/admin-token`` of the current
directory or the nearest parent holding one, which `make up` writes).  Pure but for reading that file."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cli.errors import AUTH, USAGE, CliError

DEFAULT_GATEWAY = "http://127.0.0.1:8700"
TOKEN_FILE = Path(".noops") / "admin-token"


@dataclass(frozen=True)
class Config:
    gateway: str
    token: str | None
    token_source: str  # "--token", "NOOPS_TOKEN", the file's path, or "none": named in 401 errors


def find_token_file(cwd: Path) -> Path | None:
    for d in (cwd, *cwd.parents):
        if (d / TOKEN_FILE).is_file():
            return d / TOKEN_FILE
    return None


def resolve(gateway: str | None, token: str | None, env: Mapping[str, str], cwd: Path) -> Config:
    url = (gateway or env.get("NOOPS_GATEWAY") or DEFAULT_GATEWAY).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise CliError(USAGE, f"gateway {url!r}: give a URL starting with http:// or https://")
    if token:
        return Config(url, token.strip(), "--token")
    if env.get("NOOPS_TOKEN"):
        return Config(url, env["NOOPS_TOKEN"].strip(), "NOOPS_TOKEN")
    path = find_token_file(cwd)
    if path is None:
        return Config(url, None, "none")
    try:
        secret = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a text file"
        raise CliError(AUTH, f"cannot read the token in {path}: {why}") from None
    return Config(url, secret or None, str(path) if secret else "none")
