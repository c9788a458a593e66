"""What the image holds, decided purely from the layers read: one image layer per component and
for the app (their plain files), then the noops layer (noops-init, the merged configuration and
crontab), the merged environment, and who set each value (``--explain``).

Order constraints: configuration is merged only after every layer was read and checked, so a
bad file anywhere refuses the build before anything reaches the engine; a path is either a plain
file or configuration in every layer that has it (two formats are refused, not guessed).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imagebuild import merge
from imagebuild.errors import BuildError
from imagebuild.layers import ConfigFile, File, Layer
from imagebuild.stack import App

INIT_PATH = "noops/init"
CRONTAB_PATH = "etc/noops/crontab"
COUNTERS_PATH = "run/noops/counters"
NOOPS_DIRS = ("run/noops",)
RESERVED = frozenset({INIT_PATH, CRONTAB_PATH})


@dataclass(frozen=True)
class Plan:
    layers: tuple[tuple[str, dict[str, File]], ...]   # (name, files): components, app, then "noops"
    env: tuple[tuple[str, str], ...]
    explain: tuple[str, ...]
    dirs: tuple[str, ...] = NOOPS_DIRS   # made in the noops layer (the app writes its counters there)


def _check_one_format(layers: Sequence[Layer]) -> None:
    kinds: dict[str, tuple[str, str, str]] = {}   # path -> (format or "plain file", layer, origin)
    for layer in layers:
        here = [(p, "a plain file", f.origin) for p, f in layer.files.items()]
        here += [(p, c.format, c.origin) for p, c in layer.config.items()]
        for path, kind, origin in here:
            seen = kinds.get(path)
            if seen is not None and seen[0] != kind:
                raise BuildError(layer.name, origin, f"/{path} is {kind} here but {seen[0]} in layer {seen[1]!r} "
                                 f"({seen[2]}): two formats cannot be merged")
            if path in RESERVED:
                raise BuildError(layer.name, origin, f"/{path} is noops-init's: use the layer's crontab file, not "
                                 "config/ or files/" if path == CRONTAB_PATH else f"/{path} is noops-init's")
            kinds[path] = (kind, layer.name, origin)


def _merge(fmt: str, parts: Sequence[tuple[str, ConfigFile]]) -> merge.Merged:
    for layer, c in parts:   # each on its own first, so the error names the file that fails
        try:
            merge.parse(fmt, c.data.decode())
        except (merge.ParseError, UnicodeDecodeError) as exc:
            raise BuildError(layer, c.origin, str(exc)) from None
    return merge.merge(fmt, [(layer, c.data) for layer, c in parts])


def _explain(path: str, m: merge.Merged) -> list[str]:
    lines = []
    for key, who in m.sources.items():
        over = f" (over {', '.join(reversed(who[:-1]))})" if len(who) > 1 else ""
        lines.append(f"{path}: {key} <- {who[-1]}{over}")
    return lines


def _replaced_files(layers: Sequence[Layer]) -> list[str]:
    """Plain files an upper layer replaces (a file only one layer has needs no explaining)."""
    owners: dict[str, list[str]] = {}
    for layer in layers:
        for path in layer.files:
            owners.setdefault(path, []).append(layer.name)
    return [f"/{path}: file <- {who[-1]} (over {', '.join(reversed(who[:-1]))})"
            for path, who in owners.items() if len(who) > 1]


def _app_parts(app: App) -> tuple[ConfigFile | None, ConfigFile | None]:
    env = ConfigFile("env", "".join(f"{k}={v}\n" for k, v in app.env).encode(), "stack app.env") if app.env else None
    tab = ConfigFile("crontab", "".join(f"{c}\n" for c in app.crontab).encode(), "stack app.crontab") \
        if app.crontab else None
    return env, tab


def _init_env(app: App) -> list[tuple[str, str]]:
    env = [("NOOPS_INIT_STATS_PORT", str(app.stats_port)), ("NOOPS_INIT_CRONTAB", "/" + CRONTAB_PATH),
           ("NOOPS_INIT_COUNTERS", "/" + COUNTERS_PATH)]
    if app.ready_ports:
        env.append(("NOOPS_INIT_READY_PORTS", ",".join(map(str, app.ready_ports))))
    if app.ready_command:
        env.append(("NOOPS_INIT_READY_CMD", app.ready_command))
    return env


def plan(*, base_env: Sequence[str], layers: Sequence[Layer], app: App, init_binary: bytes) -> Plan:
    """``layers``: components then the app's layer (if any), lowest first."""
    _check_one_format(layers)
    explain: list[str] = []
    top: dict[str, File] = {INIT_PATH: File(data=init_binary, mode=0o755, origin="noops-init")}

    paths = dict.fromkeys(p for layer in layers for p in layer.config)
    for path in paths:
        parts = [(layer.name, layer.config[path]) for layer in layers if path in layer.config]
        m = _merge(parts[0][1].format, parts)
        top[path] = File(data=m.data, origin=path)
        explain += _explain("/" + path, m)

    app_env, app_tab = _app_parts(app)
    tabs = [(layer.name, layer.crontab) for layer in layers if layer.crontab] + ([("stack", app_tab)] if app_tab else [])
    if tabs:
        m = _merge("crontab", tabs)  # type: ignore[arg-type]
        top[CRONTAB_PATH] = File(data=m.data, origin=CRONTAB_PATH)
        explain += _explain("/" + CRONTAB_PATH, m)

    base = ConfigFile("env", "".join(f"{e}\n" for e in base_env).encode(), "the base image's Env")
    envs = [("base", base)] + [(layer.name, layer.env) for layer in layers if layer.env]
    envs += [("stack", app_env)] if app_env else []
    envs += [("noops", ConfigFile("env", "".join(f"{k}={v}\n" for k, v in _init_env(app)).encode(), "noops-init"))]
    m = _merge("env", envs)  # type: ignore[arg-type]
    env = tuple(merge.parse("env", m.data.decode()).items())
    explain += [line for line in _explain("ENV", m) if not line.endswith("<- noops")]

    explain += _replaced_files(layers)
    image_layers = tuple((layer.name, layer.files) for layer in layers if layer.files) + (("noops", top),)
    return Plan(layers=image_layers, env=env, explain=tuple(explain))
