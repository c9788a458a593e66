"""The image's config and the archive the engine loads (`docker save` format), pure.

The image id is the sha256 of the config below, so everything in it is a function of the inputs:
no build time (``created`` is SOURCE_DATE_EPOCH, or 0), no host names, layers by content.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from imagebuild.tarlayer import TarLayer

ENTRYPOINT = ["/noops/init", "--"]
LABEL_INIT = "org.noops.init"
LABEL_STATS_PORT = "org.noops.init.stats_port"
LABEL_STACK = "org.noops.stack"


@dataclass(frozen=True)
class Base:
    """The base image as `docker save` gives it: its config and its layer tars, lowest first."""
    config: Mapping[str, Any]
    layers: tuple[bytes, ...]


def _created(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def config(*, base: Base, layers: Sequence[tuple[str, TarLayer]], env: Sequence[tuple[str, str]],
           command: Sequence[str], workdir: str, labels: Mapping[str, str], stats_port: int, epoch: int) -> bytes:
    base_cfg = dict(base.config.get("config") or {})
    created = _created(epoch)
    cfg: dict[str, Any] = {
        **{k: v for k, v in base_cfg.items() if k in ("User", "StopSignal", "Volumes")},
        "Env": [f"{k}={v}" for k, v in env],
        "Entrypoint": ENTRYPOINT,
        "Cmd": list(command),
        "WorkingDir": workdir,
        "Labels": {**(base_cfg.get("Labels") or {}), **labels},
    }
    if stats_port:
        cfg["ExposedPorts"] = {f"{stats_port}/tcp": {}}
    doc = {
        "architecture": base.config.get("architecture", "amd64"),
        "os": base.config.get("os", "linux"),
        "created": created,
        "config": cfg,
        "rootfs": {"type": "layers",
                   "diff_ids": [*base.config["rootfs"]["diff_ids"], *(t.diff_id for _, t in layers)]},
        "history": [*base.config.get("history", []),
                    *({"created": created, "created_by": f"noops image build: layer {name}"} for name, _ in layers)],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def image_id(config_bytes: bytes) -> str:
    return "sha256:" + hashlib.sha256(config_bytes).hexdigest()


def archive(*, config_bytes: bytes, base: Base, layers: Sequence[TarLayer], tags: Sequence[str], epoch: int) -> bytes:
    """A `docker load` archive: manifest.json, the config, every layer (the base's too: the engine
    skips those it has)."""
    all_layers = [*base.layers, *(t.data for t in layers)]
    names = [f"{hashlib.sha256(data).hexdigest()}/layer.tar" for data in all_layers]
    config_name = image_id(config_bytes).removeprefix("sha256:") + ".json"
    manifest = [{"Config": config_name, "RepoTags": list(tags), "Layers": names}]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), epoch, 0o644
            tar.addfile(info, io.BytesIO(data))
        add(config_name, config_bytes)
        for name, data in dict(zip(names, all_layers)).items():
            add(name, data)
        add("manifest.json", json.dumps(manifest).encode())
    return out.getvalue()
