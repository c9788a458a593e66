"""Running the `noops` CLI as a user does: a subprocess, `python -m cli.main` from this checkout
(the venv's `noops` script may point at another one), gateway and token from the environment."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def env(gateway: str, token: str | None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("NOOPS_TOKEN", "NOOPS_GATEWAY", "NOOPS_DEBUG")}
    out.update(NOOPS_GATEWAY=gateway, PYTHONPATH=str(REPO))
    if token is not None:
        out["NOOPS_TOKEN"] = token
    return out


def one_line_error(r: Run, code: int, *says: str) -> None:
    """The CLI's promise for every failure: its exit code and one line on stderr, no traceback."""
    assert r.code == code, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("noops: "), r.err
    assert "Traceback" not in r.err and all(s in lines[0] for s in says), r.err
