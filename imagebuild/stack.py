"""The stack file (YAML or JSON): which layers an image is made of, read and checked.

    name: demo/web            # the image's repository (tags: :<tag> and :sha-<image id>)
    tag: latest               # optional
    base: noops/base:latest   # required: an image on the local engine
    components:               # optional, lowest first: directories or tarballs (layer layout below)
      - ./components/cron
    app:
      path: ./app             # optional, same layout as a component
      command: ["/bin/sh", "/app/run.sh"]
      env: {GREETING: hello}  # over every layer's env file
      crontab: ["@every 1m /app/tick"]
      ready: {ports: [8080]}  # or {command: "wget -q -O- localhost:8080/health"}
      stats_port: 9100        # noops-init's stats and readiness; 0: none
      workdir: /app

A layer (component or app) is a directory or a .tar/.tar.gz holding: ``files/`` (copied to /),
``config/`` (configuration merged across layers, installed at its path under /), ``crontab``,
``env`` and ``layer.yaml`` (optional: ``formats: {path under config/: format}``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from libs import imageref
from imagebuild.errors import BuildError

DEFAULT_STATS_PORT = 9100
_APP_KEYS = {"path", "command", "env", "crontab", "ready", "stats_port", "workdir"}
_TOP_KEYS = {"name", "tag", "base", "components", "app"}


@dataclass(frozen=True)
class LayerRef:
    name: str        # how errors and --explain call it: the directory's or tarball's name
    path: Path


@dataclass(frozen=True)
class App:
    command: tuple[str, ...]
    layer: LayerRef | None = None
    env: tuple[tuple[str, str], ...] = ()
    crontab: tuple[str, ...] = ()
    ready_ports: tuple[int, ...] = ()
    ready_command: str = ""
    stats_port: int = DEFAULT_STATS_PORT
    workdir: str = "/"


@dataclass(frozen=True)
class Stack:
    file: Path
    name: str
    tag: str
    base: str
    components: tuple[LayerRef, ...]
    app: App


def _layer_name(path: Path) -> str:
    name = path.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _read(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text()
    except OSError as exc:
        raise BuildError("stack", str(file), f"cannot be read: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise BuildError("stack", str(file), f"does not parse: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(doc, dict):
        raise BuildError("stack", str(file), "must be a mapping (name, base, components, app)")
    return doc


def _ref(file: Path, raw: Any, what: str) -> LayerRef:
    if not isinstance(raw, str) or not raw:
        raise BuildError(what, str(file), "a layer is given by its path (a directory or a tarball)")
    path = (file.parent / raw).resolve()
    ref = LayerRef(_layer_name(path), path)
    if not path.exists():
        raise BuildError(ref.name, str(path), "does not exist")
    return ref


def _app(file: Path, raw: Any) -> App:
    if not isinstance(raw, dict):
        raise BuildError("app", str(file), "app must be a mapping with at least a command")
    unknown = set(raw) - _APP_KEYS
    if unknown:
        raise BuildError("app", str(file), f"unknown keys {sorted(unknown)}; expected {sorted(_APP_KEYS)}")
    command = raw.get("command")
    if isinstance(command, str):
        command = ["/bin/sh", "-c", command]
    if not command or not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        raise BuildError("app", str(file), "command must be a list of strings (or one shell string)")
    env = raw.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and k and "=" not in k and "\n" not in str(v)
                                            for k, v in env.items()):
        raise BuildError("app", str(file), "env must map variable names to one-line values")
    crontab = raw.get("crontab") or []
    if not isinstance(crontab, list) or not all(isinstance(c, str) for c in crontab):
        raise BuildError("app", str(file), "crontab must be a list of crontab lines")
    ready = raw.get("ready") or {}
    ports = ready.get("ports") or [] if isinstance(ready, dict) else None
    if ports is None or not all(isinstance(p, int) and 0 < p < 65536 for p in ports) or (
            not isinstance(ready.get("command", ""), str)):
        raise BuildError("app", str(file), "ready must be {ports: [N, ...]} and/or {command: \"...\"}")
    stats_port = raw.get("stats_port", DEFAULT_STATS_PORT)
    if not isinstance(stats_port, int) or not 0 <= stats_port < 65536:
        raise BuildError("app", str(file), "stats_port must be a port number (0: no stats)")
    workdir = raw.get("workdir", "/")
    if not isinstance(workdir, str) or not workdir.startswith("/"):
        raise BuildError("app", str(file), "workdir must be an absolute path")
    layer = replace(_ref(file, raw["path"], "app"), name="app") if raw.get("path") else None
    return App(command=tuple(command), layer=layer,
               env=tuple((k, str(v)) for k, v in env.items()), crontab=tuple(crontab),
               ready_ports=tuple(ports), ready_command=ready.get("command", ""), stats_port=stats_port,
               workdir=workdir)


def load(file: Path) -> Stack:
    """The stack at ``file``, its layer paths resolved against its directory; BuildError otherwise."""
    doc = _read(file)
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise BuildError("stack", str(file), f"unknown keys {sorted(unknown)}; expected {sorted(_TOP_KEYS)}")
    name, tag, base = doc.get("name"), str(doc.get("tag", "latest")), doc.get("base")
    if not isinstance(name, str) or imageref.problem(f"{name}:{tag}"):
        raise BuildError("stack", str(file), f"name/tag {name!r}:{tag!r} is not an image reference: "
                         f"{imageref.problem(f'{name}:{tag}') if isinstance(name, str) else 'name is required'}")
    if not isinstance(base, str) or not base:
        raise BuildError("base", str(file), "base is required (an image on the local engine, e.g. noops/base:latest)")
    components = doc.get("components") or []
    if not isinstance(components, list):
        raise BuildError("stack", str(file), "components must be a list of paths")
    refs = tuple(_ref(file, c, f"components.{i}") for i, c in enumerate(components))
    app = _app(file, doc.get("app"))
    names = [r.name for r in refs] + (["app"] if app.layer else [])
    if len(set(names)) != len(names) or "base" in names:
        raise BuildError("stack", str(file), f"layer names must be unique and not 'base': {names}")
    return Stack(file=file, name=name, tag=tag, base=base, components=refs, app=app)
