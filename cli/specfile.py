"""An app spec from a file (JSON, or YAML: ``.yaml``/``.yml``, or whatever does not parse as JSON),
``-`` for standard input.  The gateway validates it; here only what is needed to send it."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from cli.errors import USAGE, CliError


def parse(text: str, name: str) -> dict[str, Any]:
    if name.endswith((".yaml", ".yml")):
        spec = _yaml(text, name)
    else:
        try:
            spec = json.loads(text)
        except ValueError as exc:
            if name.endswith(".json"):
                e = exc if isinstance(exc, json.JSONDecodeError) else None
                where = f" at line {e.lineno} column {e.colno}" if e else ""
                raise CliError(USAGE, f"{name}: not valid JSON: {e.msg if e else exc}{where}") from None
            spec = _yaml(text, name)
    if not isinstance(spec, dict):
        raise CliError(USAGE, f"{name}: an app spec is an object (id, image, instances...), not {type(spec).__name__}")
    if not isinstance(spec.get("id"), str) or not spec["id"]:
        raise CliError(USAGE, f"{name}: the spec needs an \"id\" (the app's name)")
    return spec


def _yaml(text: str, name: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CliError(USAGE, f"{name}: not valid YAML or JSON: {problem}{where}") from None


def load(path: str) -> dict[str, Any]:
    if path == "-":
        return parse(sys.stdin.read(), "<stdin>")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CliError(USAGE, f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(USAGE, f"{path}: not a text file") from None
    return parse(text, path)
