"""The whole platform as real processes (the same launcher `make up` uses), and the faults caused to it:
for the e2e tests and `make chaos` (bench/chaos.py)."""
from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass

import httpx

from devtools import infra
from devtools.cluster import ClusterConfig, process_names, start_process, stop_network, stop_sinks, wait_healthy


@dataclass
class Platform:
    cfg: ClusterConfig

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.gateway_port}"

    def client(self) -> httpx.AsyncClient:
        """A client of the gateway with the cluster's admin token."""
        return httpx.AsyncClient(base_url=self.url, timeout=10.0, headers=self.cfg.auth_headers())

    def start(self, name: str) -> None:
        start_process(self.cfg, name)
        wait_healthy(self.cfg, [name])

    def kill(self, name: str) -> None:
        """SIGKILL: no chance to clean up, as in a crash."""
        pidfile = self.cfg.run_dir / f"{name}.pid"
        pid = infra.read_pid(pidfile)
        assert pid is not None, f"{name} is not running"
        infra.stop_pid(pid, timeout=10, sig=signal.SIGKILL)
        pidfile.unlink(missing_ok=True)

    # ---- faults, caused for real (tests/e2e/test_faults.py, bench/chaos.py)

    def stop_nats(self, *, wipe: bool = False) -> None:
        """Stop the bus (SIGTERM, by its PID); ``wipe``: and lose its store, as a new node would."""
        assert infra.stop_pidfile(self.cfg.run_dir / "nats.pid", timeout=10), "NATS was not running"
        if wipe:
            shutil.rmtree(self.cfg.run_dir / "nats-store", ignore_errors=True)

    def start_nats(self) -> None:
        infra.start_nats(self.cfg.run_dir, port=self.cfg.nats_port, monitor_port=self.cfg.nats_monitor_port,
                         auth_hosts=self.cfg.hosts)

    def stop_postgres(self) -> None:
        infra.stop_postgres()

    def start_postgres(self) -> None:
        infra.ensure_postgres()

    def cut_host(self, host: str) -> None:
        """The simulated host's NIC loses its link: its containers become unreachable."""
        subprocess.run(["ip", "link", "set", self.cfg.net.port(host), "down"], check=True)

    def mend_host(self, host: str) -> None:
        subprocess.run(["ip", "link", "set", self.cfg.net.port(host), "up"], check=True)

    def log_text(self, name: str) -> str:
        return (self.cfg.run_dir / "logs" / f"{name}.log").read_text(errors="replace")

    def start_all(self) -> None:
        names = process_names(self.cfg)
        for name in names:
            start_process(self.cfg, name)
        wait_healthy(self.cfg, names)

    def stop_all(self) -> None:
        for name in process_names(self.cfg):
            infra.stop_pidfile(self.cfg.run_dir / f"{name}.pid", timeout=10)

    def remove(self) -> None:
        """A throw-away platform's end (bench/chaos.py, bench/compare.py): its processes (dockerd
        excepted), containers, sinks, network, database and run directory."""
        self.stop_all()
        for pidfile in self.cfg.run_dir.glob("*.pid"):
            if not pidfile.name.startswith("dockerd"):
                infra.stop_pidfile(pidfile, timeout=5)
        infra.remove_cluster_containers(self.cfg.cluster)
        stop_sinks(self.cfg)
        stop_network(self.cfg)
        infra.drop_database(self.cfg.db_name)
        shutil.rmtree(self.cfg.run_dir, ignore_errors=True)
