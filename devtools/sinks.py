"""The systems the registry fans out to, for `make up` and the tests: HAProxy (master-worker,
with its Runtime API and master sockets), Prometheus (HTTP service discovery from the gateway),
and the nftables table.  Processes are tracked by PID file like everything in devtools/infra.py.

    haproxy -W -S <dir>/master.sock -f <dir>/haproxy.cfg     # the registry rewrites haproxy.cfg
    prometheus --config.file <run>/prometheus/prometheus.yml  # http_sd_configs -> gateway
"""
from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path

from devtools import infra
from services.registry.sinks.haproxy_config import Paths, render


def haproxy_paths(run_dir: Path) -> Paths:
    return Paths(run_dir / "haproxy")


def _haproxy_answers(paths: Paths) -> bool:
    import socket
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(str(paths.admin_socket))
            s.sendall(b"show info\n")
            s.shutdown(socket.SHUT_WR)
            return b"Pid:" in s.recv(65536)
    except OSError:
        return False


def start_haproxy(run_dir: Path, *, name: str = "haproxy") -> Paths:
    """Start HAProxy in master-worker mode unless its PID file names a live one.  A missing
    configuration is written empty (no frontend): the registry writes the real one."""
    paths = haproxy_paths(run_dir)
    pidfile = run_dir / f"{name}.pid"
    if infra.read_pid(pidfile) is None:
        if not shutil.which("haproxy"):
            raise infra.InfraError("haproxy is not installed (apt-get install haproxy)")
        paths.dir.mkdir(parents=True, exist_ok=True)
        if not paths.config.exists():
            paths.config.write_text(render(paths, [], {}))
        for sock in (paths.admin_socket, paths.master_socket):
            sock.unlink(missing_ok=True)   # left by a killed HAProxy; no live one owns it (PID file)
        infra.spawn(["haproxy", "-W", "-S", f"{paths.master_socket},mode,600", "-f", str(paths.config)],
                    pidfile=pidfile, logfile=run_dir / "logs" / f"{name}.log")
    infra.wait_until(lambda: _haproxy_answers(paths), 30, "HAProxy's admin socket")
    return paths


def stop_haproxy(run_dir: Path, *, name: str = "haproxy") -> bool:
    """Master and workers: when this returns, nothing answers on HAProxy's sockets or ports."""
    return infra.stop_pidfile(run_dir / f"{name}.pid", timeout=10, group=True)


def prometheus_config(sd_url: str, *, refresh_s: float = 5.0, scrape_s: float = 15.0,
                      token_file: Path | None = None) -> str:
    """``token_file``: a gateway token (viewer is enough) Prometheus sends to the discovery listing."""
    auth = (f"        authorization:\n          type: Bearer\n          credentials_file: {token_file}\n"
            if token_file is not None else "")
    return (f"global:\n  scrape_interval: {scrape_s:g}s\n  evaluation_interval: {scrape_s:g}s\n"
            f"scrape_configs:\n  - job_name: noops\n    http_sd_configs:\n"
            f"      - url: {sd_url}\n        refresh_interval: {refresh_s:g}s\n{auth}")


def start_prometheus(run_dir: Path, *, port: int, sd_url: str, refresh_s: float = 5.0,
                     name: str = "prometheus", token_file: Path | None = None) -> str:
    """Prometheus on 127.0.0.1:<port>, discovering targets from the gateway; returns its URL."""
    pidfile = run_dir / f"{name}.pid"
    home = run_dir / name
    if infra.read_pid(pidfile) is None:
        if not shutil.which("prometheus"):
            raise infra.InfraError("prometheus is not installed (apt-get install prometheus)")
        home.mkdir(parents=True, exist_ok=True)
        (home / "prometheus.yml").write_text(prometheus_config(sd_url, refresh_s=refresh_s, token_file=token_file))
        infra.spawn(["prometheus", f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
                     f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d"],
                    pidfile=pidfile, logfile=run_dir / "logs" / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    infra.wait_until(lambda: infra.http_ok(f"{url}/-/ready"), 60, "Prometheus to be ready")
    return url


def stop_prometheus(run_dir: Path, *, name: str = "prometheus") -> bool:
    return infra.stop_pidfile(run_dir / f"{name}.pid", timeout=10)


def delete_nft_table(table: str, family: str = "inet") -> bool:
    if not shutil.which("nft"):
        return False
    return subprocess.run(["nft", "delete", "table", family, table], capture_output=True).returncode == 0


def prometheus_targets(url: str) -> list[dict]:
    import json
    with urllib.request.urlopen(f"{url}/api/v1/targets?state=active", timeout=2) as r:
        return json.load(r)["data"]["activeTargets"]
