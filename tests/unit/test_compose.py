"""docker-compose.yml (local development on a machine that can pull images) is valid."""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_is_valid():
    out = subprocess.run(["docker-compose", "-f", str(REPO / "docker-compose.yml"), "config", "--services"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    services = set(out.stdout.split())
    assert {"nats", "postgres", "gateway", "placer", "registry", "reconciler", "hostd-h1", "hostd-h2"} <= services
