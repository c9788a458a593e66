"""Reading one layer (a directory or a tarball) into what the build needs: its plain files, its
configuration files with their formats, its crontab and env.  Nothing is merged here."""
from __future__ import annotations

import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from imagebuild.errors import BuildError
from imagebuild.merge import FORMATS
from imagebuild.stack import LayerRef

_BY_SUFFIX = {".conf": "keyvalue", ".properties": "keyvalue", ".env": "keyvalue", ".cfg": "keyvalue",
              ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".cron": "crontab"}
_TOP = ("files", "config", "crontab", "env", "layer.yaml")


@dataclass(frozen=True)
class File:
    data: bytes = b""
    mode: int = 0o644
    link: str = ""          # a symlink's target ("" for a regular file)
    origin: str = ""        # where it came from, for errors


@dataclass(frozen=True)
class ConfigFile:
    format: str
    data: bytes
    origin: str


@dataclass(frozen=True)
class Layer:
    name: str
    files: dict[str, File] = field(default_factory=dict)        # path under / (no leading /)
    config: dict[str, ConfigFile] = field(default_factory=dict)
    crontab: ConfigFile | None = None
    env: ConfigFile | None = None


def _normal(mode: int) -> int:
    # Only the executable bit of the source counts: the same tree checked out under another umask
    # gives the same layer.
    return 0o755 if mode & 0o111 else 0o644


def _entries_of_dir(root: Path) -> dict[str, File]:
    out: dict[str, File] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = File(link=str(path.readlink()), origin=str(path))
        elif path.is_file():
            out[rel] = File(data=path.read_bytes(), mode=_normal(path.stat().st_mode), origin=str(path))
    return out


def _entries_of_tar(file: Path, name: str) -> dict[str, File]:
    out: dict[str, File] = {}
    try:
        with tarfile.open(file, "r:*") as tar:
            for m in tar.getmembers():
                rel = posixpath.normpath(m.name.lstrip("/")).removeprefix("./")
                if rel in (".", "") or rel.startswith("../"):
                    continue
                origin = f"{file}:{rel}"
                if m.issym():
                    out[rel] = File(link=m.linkname, origin=origin)
                elif m.isfile():
                    f = tar.extractfile(m)
                    out[rel] = File(data=f.read() if f else b"", mode=_normal(m.mode), origin=origin)
                elif not m.isdir():
                    raise BuildError(name, origin, "only files, directories and symlinks can be in a layer")
    except (tarfile.TarError, OSError) as exc:
        raise BuildError(name, str(file), f"is not a readable tarball: {exc}") from None
    return out


def _format(name: str, rel: str, declared: dict[str, str], origin: str) -> str:
    fmt = declared.get(rel)
    if fmt is None:
        base = posixpath.basename(rel)
        fmt = "crontab" if base == "crontab" else _BY_SUFFIX.get(posixpath.splitext(base)[1])
    if fmt not in FORMATS:
        raise BuildError(name, origin, f"unknown configuration format for {rel!r}; name it .conf, .yaml, .json or "
                         f".cron, or declare it in layer.yaml (formats: {{{rel}: keyvalue}}), one of {', '.join(FORMATS)}")
    return fmt


def read(ref: LayerRef) -> Layer:
    """The layer at ``ref.path``; BuildError naming the layer and file when it is not one."""
    if ref.path.is_dir():
        entries = _entries_of_dir(ref.path)
    elif ref.path.is_file():
        entries = _entries_of_tar(ref.path, ref.name)
    else:
        raise BuildError(ref.name, str(ref.path), "does not exist")
    for rel, f in entries.items():
        if rel.split("/", 1)[0] not in _TOP or (rel in ("files", "config")):
            raise BuildError(ref.name, f.origin, f"unexpected entry {rel!r}: a layer holds {', '.join(_TOP)}")
    declared: dict[str, str] = {}
    if "layer.yaml" in entries:
        f = entries["layer.yaml"]
        try:
            doc = yaml.safe_load(f.data.decode()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise BuildError(ref.name, f.origin, f"does not parse: {' '.join(str(exc).split())[:200]}") from None
        formats = doc.get("formats", {}) if isinstance(doc, dict) else None
        if not isinstance(formats, dict) or set(doc) - {"formats"}:
            raise BuildError(ref.name, f.origin, "expected only formats: {path under config/: format}")
        declared = {str(k).lstrip("/"): str(v) for k, v in formats.items()}
    files: dict[str, File] = {}
    config: dict[str, ConfigFile] = {}
    for rel, f in entries.items():
        top, _, rest = rel.partition("/")
        if top == "files":
            files[rest] = f
        elif top == "config":
            if f.link:
                raise BuildError(ref.name, f.origin, "a configuration file cannot be a symlink")
            config[rest] = ConfigFile(_format(ref.name, rest, declared, f.origin), f.data, f.origin)
    special = {k: ConfigFile("crontab" if k == "crontab" else "env", entries[k].data, entries[k].origin)
               for k in ("crontab", "env") if k in entries}
    return Layer(name=ref.name, files=files, config=config, crontab=special.get("crontab"), env=special.get("env"))
