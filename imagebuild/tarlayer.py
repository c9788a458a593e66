"""One image layer as a tar, byte for byte the same for the same files: entries sorted, owner
root, one fixed mtime, normalized modes, GNU format (no pax headers with access times).

Directories that a lower layer already has get no entry: an entry would replace that directory's
mode (the base's /tmp is 1777); the engine creates any other missing parent itself, but we write
them (0755) so the layer is complete on its own."""
from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from imagebuild.layers import File

# Directories noops-init's layer makes with another mode than 0755 (the app writes its counters there).
DIR_MODES = {"run/noops": 0o1777}


@dataclass(frozen=True)
class TarLayer:
    data: bytes

    @property
    def diff_id(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


def paths_of(tar_bytes: bytes) -> set[str]:
    """Every path (files and directories) a layer tar holds, normalized without ./ or /."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return {posixpath.normpath(m.name.lstrip("/")).removeprefix("./") for m in tar.getmembers()}


def _parents(path: str) -> Iterable[str]:
    parts = path.split("/")[:-1]
    return ("/".join(parts[: i + 1]) for i in range(len(parts)))


def build(files: Mapping[str, File], *, lower_paths: set[str], mtime: int, dirs: Iterable[str] = ()) -> TarLayer:
    """``dirs``: directories to make even when no file of this layer is in them."""
    wanted = [*files, *(d + "/" for d in dirs)]
    dirs = {d for p in wanted for d in _parents(p) if d not in lower_paths}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(dirs | set(files)):
            info = tarfile.TarInfo(path)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = mtime
            f = files.get(path)
            if f is None:
                info.type, info.mode = tarfile.DIRTYPE, DIR_MODES.get(path, 0o755)
                tar.addfile(info)
            elif f.link:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, f.link, 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = len(f.data), f.mode
                tar.addfile(info, io.BytesIO(f.data))
    return TarLayer(out.getvalue())
