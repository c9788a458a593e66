"""`make up` / `make down` / `make logs`: a small local noops cluster.

    python -m devtools.cluster up | down | status | logs

Everything lives under .run/ in the repo: PID files, logs, the NATS store.  The task log is
the PostgreSQL database `noops`, which `down` leaves in place.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from devtools import infra

HOSTD = "hostd"


@dataclass(frozen=True)
class ClusterConfig:
    run_dir: Path = infra.REPO / ".run"
    cluster: str = "local"
    db_name: str = "noops"
    nats_port: int = 4222
    nats_monitor_port: int = 8222
    gateway_port: int = 8700
    placer_port: int = 8701
    registry_port: int = 8702
    reconciler_port: int = 8703
    hosts: tuple[str, ...] = ("h1", "h2")
    hostd_base_port: int = 8711
    host_cpus: float = 2.0
    host_mem_mb: int = 4096
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def db_dsn(self) -> str:
        return f"postgresql://{infra.PG_ROLE}:{infra.PG_PASSWORD}@127.0.0.1:5432/{self.db_name}"

    def ports(self) -> dict[str, int]:
        out = {"gateway": self.gateway_port, "placer": self.placer_port,
               "registry": self.registry_port, "reconciler": self.reconciler_port}
        for i, h in enumerate(self.hosts):
            out[f"hostd-{h}"] = self.hostd_base_port + i
        return out

    def env(self, name: str) -> dict[str, str]:
        env = {
            "NOOPS_CLUSTER": self.cluster,
            "NOOPS_NATS_URL": self.nats_url,
            "NOOPS_DB_DSN": self.db_dsn,
            "NOOPS_GATEWAY_PORT": str(self.gateway_port),
            "NOOPS_PLACER_PORT": str(self.placer_port),
            "NOOPS_REGISTRY_PORT": str(self.registry_port),
            "NOOPS_RECONCILER_PORT": str(self.reconciler_port),
            **self.extra_env,
        }
        if name.startswith("hostd-"):
            env.update({"NOOPS_HOST_ID": name.removeprefix("hostd-"),
                        "NOOPS_HOSTD_PORT": str(self.ports()[name]),
                        "NOOPS_HOST_CPUS": str(self.host_cpus),
                        "NOOPS_HOST_MEM_MB": str(self.host_mem_mb)})
        return env

    def service_of(self, name: str) -> str:
        return HOSTD if name.startswith("hostd-") else name


def process_names(cfg: ClusterConfig) -> list[str]:
    return [*infra.SERVICES, *(f"hostd-{h}" for h in cfg.hosts)]


def start_process(cfg: ClusterConfig, name: str) -> int:
    return infra.start_service(cfg.run_dir, name, cfg.service_of(name), cfg.env(name))


def wait_healthy(cfg: ClusterConfig, names: list[str], timeout: float = 60.0) -> None:
    for name in names:
        port = cfg.ports()[name]
        infra.wait_until(lambda: infra.http_ok(f"http://127.0.0.1:{port}/healthz"), timeout, f"{name} /healthz")


def start_infra(cfg: ClusterConfig, *, fresh_db: bool = False) -> None:
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    infra.ensure_postgres()
    infra.ensure_database(cfg.db_name, fresh=fresh_db)
    infra.ensure_dockerd(cfg.run_dir)
    infra.ensure_base_image()
    infra.start_nats(cfg.run_dir, port=cfg.nats_port, monitor_port=cfg.nats_monitor_port)


def up(cfg: ClusterConfig) -> None:
    start_infra(cfg)
    names = process_names(cfg)
    for name in names:
        start_process(cfg, name)
    wait_healthy(cfg, names)
    print(f"noops is up: {len(cfg.hosts)} hosts ({', '.join(cfg.hosts)})")
    print(f"  gateway / web UI: http://127.0.0.1:{cfg.gateway_port}")
    print(f"  logs: make logs   (files in {cfg.run_dir / 'logs'})")
    print(f"  try:  curl -X POST http://127.0.0.1:{cfg.gateway_port}/v1/apps "
          "-H 'content-type: application/json' -d @examples/web.json")


def down(cfg: ClusterConfig) -> None:
    for name in reversed(process_names(cfg)):
        if infra.stop_pidfile(cfg.run_dir / f"{name}.pid"):
            print(f"stopped {name}")
    if infra.docker_ok():
        n = infra.remove_cluster_containers(cfg.cluster)
        if n:
            print(f"removed {n} containers")
    if infra.stop_pidfile(cfg.run_dir / "nats.pid"):
        print("stopped nats")
    # dockerd only if `up` started it (the PID file exists only then).
    if infra.stop_pidfile(cfg.run_dir / "dockerd.pid", timeout=30):
        print("stopped dockerd")
    print("noops is down (the task log in PostgreSQL database "
          f"'{cfg.db_name}' is kept; PostgreSQL itself keeps running)")


def status(cfg: ClusterConfig) -> int:
    bad = 0
    for name in ["nats", *process_names(cfg)]:
        pid = infra.read_pid(cfg.run_dir / f"{name}.pid")
        print(f"{name:12} {'running pid ' + str(pid) if pid else 'stopped'}")
        bad += pid is None
    return 1 if bad else 0


def logs(cfg: ClusterConfig, follow: bool) -> None:
    files = sorted(str(p) for p in (cfg.run_dir / "logs").glob("*.log"))
    if not files:
        print("no logs yet: run `make up`")
        return
    os.execvp("tail", ["tail", "-n", "50", *(["-F"] if follow else []), *files])


def run(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="noops-dev", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["up", "down", "status", "logs"])
    p.add_argument("-f", "--follow", action="store_true", help="with logs: keep following")
    args = p.parse_args(argv)
    cfg = ClusterConfig()
    try:
        if args.command == "up":
            up(cfg)
        elif args.command == "down":
            down(cfg)
        elif args.command == "status":
            sys.exit(status(cfg))
        else:
            logs(cfg, args.follow)
    except infra.InfraError as exc:
        print(f"noops: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
