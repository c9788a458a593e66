"""Configuration merges, pure: each layer's text of one file → the merged file and who set what.

Rules per format (docs/images.md):
  keyvalue  ``key=value`` lines: an upper layer's key replaces the lower's value; new keys are
            appended; comments and blank lines of merged files are not kept.
  yaml/json mappings merge key by key, recursively; anything else (a list, a scalar, a mapping
            over a non-mapping) is replaced whole by the upper layer's.
  crontab   jobs are keyed by their command (an upper entry with the same command replaces the
            schedule), variables (NAME=value) by their name.
  env       the image's environment, ``NAME=value`` lines, as keyvalue.
A file only one layer brings is kept byte for byte.  ``sources`` maps each value's key (a dotted
path for yaml/json) to the layers that set it, lowest first: the last one won (``--explain``).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from imagebuild import cron

FORMATS = ("keyvalue", "yaml", "json", "crontab", "env")


class ParseError(ValueError):
    """A file of a layer does not parse in its format (the message says where)."""


@dataclass(frozen=True)
class Merged:
    data: bytes
    sources: Mapping[str, tuple[str, ...]]


def _keyvalue(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not key or any(c.isspace() for c in key):
            raise ParseError(f"line {n}: expected key=value, got {line[:60]!r}")
        out[key] = value.strip()
    return out


def _structured(fmt: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ParseError(f"not valid {fmt.upper()}: {' '.join(str(exc).split())[:200]}") from None
    if value is None and fmt == "yaml":
        value = {}
    if not isinstance(value, dict):
        raise ParseError(f"the top level must be a mapping to merge, not {type(value).__name__}")
    return value


def _crontab(text: str) -> dict[str, str]:
    """key ("job <command>" or "var <name>") → the line."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        try:
            line = cron.parse_line(raw)
        except cron.CronError as exc:
            raise ParseError(f"line {n}: {exc}") from None
        if line is not None:
            out[f"{line.kind} {line.key}"] = line.text
    return out


def parse(fmt: str, text: str) -> Any:
    """The file's content as the merge sees it; ParseError when it does not parse."""
    if fmt in ("keyvalue", "env"):
        return _keyvalue(text)
    if fmt in ("yaml", "json"):
        return _structured(fmt, text)
    if fmt == "crontab":
        return _crontab(text)
    raise ValueError(f"unknown format {fmt!r}")


def _leaves(value: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, path + (str(k),))]
    return [path]


def _deep(lower: dict[str, Any], upper: dict[str, Any], layer: str, path: tuple[str, ...],
          sources: dict[tuple[str, ...], tuple[str, ...]]) -> dict[str, Any]:
    out = dict(lower)
    for k, v in upper.items():
        here = path + (str(k),)
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep(out[k], v, layer, here, sources)
            continue
        before = sources.get(here, ())
        for gone in [p for p in sources if p[:len(here)] == here]:
            del sources[gone]   # the lower value under this key is replaced whole
        for leaf in _leaves(v, here):
            sources[leaf] = (before if leaf == here else ()) + (layer,)
        out[k] = v
    return out


def _flat(layers: Sequence[tuple[str, dict[str, str]]]) -> tuple[dict[str, str], dict[tuple[str, ...], tuple[str, ...]]]:
    out: dict[str, str] = {}
    sources: dict[tuple[str, ...], tuple[str, ...]] = {}
    for layer, values in layers:
        for k, v in values.items():
            out[k] = v
            sources[(k,)] = sources.get((k,), ()) + (layer,)
    return out, sources


def render(fmt: str, value: Any) -> bytes:
    if fmt in ("keyvalue", "env"):
        return "".join(f"{k}={v}\n" for k, v in value.items()).encode()
    if fmt == "json":
        return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()
    if fmt == "yaml":
        return yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True).encode()
    if fmt == "crontab":
        return "".join(line + "\n" for line in value.values()).encode()
    raise ValueError(f"unknown format {fmt!r}")


def merge(fmt: str, layers: Sequence[tuple[str, bytes]]) -> Merged:
    """``layers``: (layer name, file content), lowest first.  ParseError names no layer: the
    caller knows which file it handed in (``parse`` each first to say which one failed)."""
    parsed = [(layer, parse(fmt, data.decode())) for layer, data in layers]
    if fmt in ("yaml", "json"):
        value: dict[str, Any] = {}
        sources: dict[tuple[str, ...], tuple[str, ...]] = {}
        for layer, doc in parsed:
            value = _deep(value, doc, layer, (), sources)
    else:
        value, sources = _flat(parsed)
    data = layers[0][1] if len(layers) == 1 else render(fmt, value)
    return Merged(data=data, sources={".".join(k): v for k, v in sources.items()})
