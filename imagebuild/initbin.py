"""noops-init, compiled for the image: `gcc -static -O2` of init/*.c (never a committed binary).
The same sources and compiler give the same bytes (no debug info, no paths, no dates), which the
image's reproducibility depends on."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from imagebuild.errors import BuildError

SOURCE = Path(__file__).parent / "init" / "noops-init.c"
FLAGS = ("-static", "-O2", "-s", "-Wall", "-Wextra", "-ffile-prefix-map=/=/")


def compile_init(*, timeout_s: float = 120.0) -> bytes:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BuildError("noops", str(SOURCE), "gcc is not installed (scripts/install.sh installs gcc and libc6-dev)")
    with tempfile.TemporaryDirectory(prefix="noops-init-") as tmp:
        out = Path(tmp) / "noops-init"
        sources = sorted(p.name for p in SOURCE.parent.glob("*.c"))
        done = subprocess.run([gcc, *FLAGS, "-o", str(out), *sources], cwd=SOURCE.parent,
                              capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise BuildError("noops", str(SOURCE), f"gcc failed: {done.stderr.strip()[-800:]}")
        return out.read_bytes()


def write_init(path: Path) -> Path:
    """noops-init compiled into ``path``, executable (for running it outside an image: tests, debugging)."""
    path.write_bytes(compile_init())
    path.chmod(0o755)
    return path
