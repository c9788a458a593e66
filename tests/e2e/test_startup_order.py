"""A service started before its dependencies waits with a clear log line, not a traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from devtools import infra
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e


def _start(tmp_path, name: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    log = tmp_path / f"{name}.log"
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", f"services.{name}"], stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "NOOPS_LOG_FORMAT": "text", **env}, cwd=infra.REPO)
    return proc, str(log)


@pytest.mark.parametrize("service,env,needle", [
    pytest.param("placer", {"NOOPS_DB_DSN": "postgresql://noops:noops@127.0.0.1:{dead}/noops"},
                 "waiting for PostgreSQL", id="placer-before-postgres"),
    pytest.param("hostd", {"NOOPS_NATS_URL": "nats://127.0.0.1:{dead}", "NOOPS_HOST_ID": "hwait"},
                 "waiting for NATS", id="hostd-before-nats"),
])
async def test_waits_for_dependencies(tmp_path, cluster_cfg, service, env, needle):
    dead, port = infra.free_ports(2)
    env = {k: v.format(dead=dead) for k, v in env.items()}
    env.update({"NOOPS_PLACER_PORT": str(port), "NOOPS_HOSTD_PORT": str(port),
                "NOOPS_CLUSTER": cluster_cfg.cluster})
    env.setdefault("NOOPS_NATS_URL", cluster_cfg.nats_url)
    env.setdefault("NOOPS_DB_DSN", cluster_cfg.db_dsn)
    proc, log = _start(tmp_path, service, env)
    try:
        text = await eventually(lambda: (t := open(log).read()).count(needle) >= 2 and t, timeout=30,
                                what=f"two '{needle}' lines")
        assert proc.poll() is None, "the service must keep waiting, not exit"
        assert "Traceback" not in text
        # It answers /healthz meanwhile, saying it is not ready.
        assert not infra.http_ok(f"http://127.0.0.1:{port}/healthz")
    finally:
        proc.terminate()
        proc.wait(timeout=15)
