"""A service refuses development defaults on a reachable address; the gateway serves HTTPS when
given a certificate.  Real processes, started as an operator would start them."""
from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from devtools import infra
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

# Inside the test numbering (198.18.0.0/15) and never contacted: the service must refuse first.
UNREACHED = "198.19.254.254"


def _start(log: Path, name: str, env: dict[str, str]) -> subprocess.Popen:
    out = open(log, "wb")
    return subprocess.Popen([sys.executable, "-m", f"services.{name}"], stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "NOOPS_LOG_FORMAT": "text", **env}, cwd=infra.REPO)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize("service,env,needles", [
    pytest.param("gateway", {"NOOPS_DB_DSN": f"postgresql://noops:noops@{UNREACHED}:5432/noops"},
                 ["database at " + UNREACHED], id="gateway-remote-db-dev-password"),
    pytest.param("placer", {"NOOPS_NATS_URL": f"nats://{UNREACHED}:4222", "NOOPS_NATS_USER": ""},
                 ["NATS at " + UNREACHED], id="placer-remote-nats-no-credentials"),
    pytest.param("hostd", {"NOOPS_NATS_URL": f"nats://{UNREACHED}:4222", "NOOPS_NATS_USER": "", "NOOPS_HOST_ID": "hx"},
                 ["NATS at " + UNREACHED], id="hostd-remote-nats-no-credentials"),
    pytest.param("gateway", {"NOOPS_GATEWAY_TLS_CERT_FILE": "/nonexistent.crt"},
                 ["NOOPS_GATEWAY_TLS_KEY_FILE go together"], id="gateway-cert-without-key"),
])
def test_refuses_to_start(tmp_path, cluster_cfg, service, env, needles):
    port = str(infra.free_port())
    base = {"NOOPS_GATEWAY_PORT": port, "NOOPS_PLACER_PORT": port, "NOOPS_HOSTD_PORT": port,
            "NOOPS_CLUSTER": cluster_cfg.cluster, "NOOPS_DB_DSN": cluster_cfg.db_dsn,
            "NOOPS_NATS_URL": cluster_cfg.nats_url}
    log = tmp_path / f"{service}.log"
    proc = _start(log, service, {**base, **env})
    try:
        assert proc.wait(timeout=30) == 2
    finally:
        _stop(proc)
    text = log.read_text()
    for needle in needles:
        assert needle in text, text
    assert "Traceback" not in text, text


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    crt, key = tmp_path / "gw.crt", tmp_path / "gw.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=noops-test",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return crt, key


async def test_gateway_serves_https(tmp_path, cluster_cfg):
    crt, key = _self_signed(tmp_path)
    port = infra.free_port()
    env = {**cluster_cfg.env("gateway"), "NOOPS_GATEWAY_PORT": str(port),
           "NOOPS_GATEWAY_TLS_CERT_FILE": str(crt), "NOOPS_GATEWAY_TLS_KEY_FILE": str(key)}
    log = tmp_path / "gateway.log"
    proc = _start(log, "gateway", env)
    try:
        trusted = ssl.create_default_context(cafile=str(crt))
        async with httpx.AsyncClient(verify=trusted, timeout=2) as client:
            async def healthy() -> bool:
                assert proc.poll() is None, log.read_text()
                try:
                    return (await client.get(f"https://127.0.0.1:{port}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False
            await eventually(healthy, timeout=30, what="the gateway answering over HTTPS")
        # Plain HTTP on the same port gets no answer an HTTP client accepts.
        async with httpx.AsyncClient(timeout=2) as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get(f"http://127.0.0.1:{port}/healthz")
        # A client that does not trust the certificate is refused by TLS itself.
        async with httpx.AsyncClient(timeout=2) as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get(f"https://127.0.0.1:{port}/healthz")
    finally:
        _stop(proc)
    assert "scheme=https" in log.read_text() or "https" in log.read_text()
