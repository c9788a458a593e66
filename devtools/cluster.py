"""`make up` / `make down` / `make logs`: a small local noops cluster.

    python -m devtools.cluster up | down | status | logs

Everything lives under .run/ in the repo: PID files, logs, the NATS store.  The task log is
the PostgreSQL database `noops`, which `down` leaves in place.  The gateway's first tokens are in
.noops/ (mode 0600): `admin-token` for you, `prometheus-token` (viewer) for Prometheus' discovery.
"""
from __future__ import annotations

import argparse
import asyncio
import atexit
import concurrent.futures
import dataclasses
import os
import zlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from devtools import infra, natsconf, simnet
from devtools import sinks as sink_procs
from services.gateway import bootstrap

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
    lease_s: int = 3600          # DHCP lease on the simulated network
    lease_t1_s: int = 0          # 0: half the lease
    prometheus_port: int = 8790  # `make up` only; tests start their own Prometheus
    @property
    def secrets_dir(self) -> Path:
        """Where the gateway tokens made at start are (services/gateway/bootstrap.py): `local`
        keeps them in the repo's .noops/; a throw-away cluster (tests, benchmarks) in its run dir."""
        return infra.REPO / ".noops" if self.cluster == "local" else self.run_dir / "noops-tokens"

    @property
    def admin_token_file(self) -> Path:
        return self.secrets_dir / "admin-token"

    @property
    def prometheus_token_file(self) -> Path:
        return self.secrets_dir / "prometheus-token"

    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    def auth_headers(self) -> dict[str, str]:
        """What every HTTP client of this cluster's gateway sends (devtools, bench, tests)."""
        return {"Authorization": f"Bearer {self.admin_token()}"}

    @property
    def lb_ports(self) -> str:
        """HAProxy frontend ports.  `local`: 18000-18999; any other cluster (a test session) gets
        100 ports in 20000-29999 chosen by its name, below the kernel's ephemeral range (where
        free_port() picks), so two sessions and a `make up` cluster do not collide."""
        if self.cluster == "local":
            return "18000-18999"
        base = 20000 + (zlib.crc32(self.cluster.encode()) % 100) * 100
        return f"{base}-{base + 99}"

    @property
    def nft_table(self) -> str:
        return "noops" if self.cluster == "local" else f"noops_{self.cluster}"

    @property
    def net(self) -> simnet.SimNet:
        """The simulated L2 network; its numbering follows the cluster name (`local` → 198.18.0.0/20)."""
        return simnet.SimNet(index=simnet.index_for(self.cluster), run_dir=self.run_dir,
                             lease_s=self.lease_s, t1_s=self.lease_t1_s)

    @property
    def volume_dir(self) -> Path:
        return self.run_dir / "volumes"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def db_dsn(self) -> str:
        """With the password, for in-process clients (tests, tools); services get the password file."""
        return infra.pg_dsn(self.db_name)

    def nats_credentials(self, user: str = "admin") -> dict[str, str]:
        """``user=`` / ``password=`` for ``bus.connect`` as that identity (empty without auth)."""
        user, password = natsconf.credentials(self.run_dir, user)
        return {"user": user, "password": password}

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
            "NOOPS_DB_DSN": infra.pg_dsn(self.db_name, with_password=False),
            "NOOPS_DB_PASSWORD_FILE": str(infra.PG_PASSWORD_FILE),
            "NOOPS_GATEWAY_PORT": str(self.gateway_port),
            "NOOPS_PLACER_PORT": str(self.placer_port),
            "NOOPS_REGISTRY_PORT": str(self.registry_port),
            "NOOPS_RECONCILER_PORT": str(self.reconciler_port),
            "NOOPS_HAPROXY_DIR": str(sink_procs.haproxy_paths(self.run_dir).dir),
            "NOOPS_LB_PORTS": self.lb_ports,
            "NOOPS_NFT_TABLE": self.nft_table,
            # Every host's containers are on the one simulated segment (DHCP and pool halves).
            "NOOPS_REGISTRY_CONTAINER_RANGES": str(self.net.subnet),
            # Process names are NATS identities: gateway, placer, ..., hostd-<host>.
            **natsconf.env(self.run_dir, name),
            **self.extra_env,
        }
        if name.startswith("hostd-"):
            env.update({"NOOPS_HOST_ID": name.removeprefix("hostd-"),
                        "NOOPS_HOSTD_PORT": str(self.ports()[name]),
                        "NOOPS_HOST_CPUS": str(self.host_cpus),
                        "NOOPS_HOST_MEM_MB": str(self.host_mem_mb),
                        "NOOPS_HOSTD_LOOP_DIR": str(self.volume_dir),
                        "NOOPS_HOSTD_STATE_DIR": str(self.run_dir / "hostd-state"),
                        **self.net.hostd_env(name.removeprefix("hostd-"))})
        return env

    def service_of(self, name: str) -> str:
        return HOSTD if name.startswith("hostd-") else name


def process_names(cfg: ClusterConfig) -> list[str]:
    return [*infra.SERVICES, *(f"hostd-{h}" for h in cfg.hosts)]


def start_process(cfg: ClusterConfig, name: str) -> int:
    if name.startswith("hostd-"):  # a host that joined after start: its NATS identity first
        infra.ensure_nats_identities(cfg.run_dir, [name.removeprefix("hostd-")], monitor_port=cfg.nats_monitor_port)
    if name == "registry":
        _delete_nft_table_at_exit(cfg)
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
    infra.start_nats(cfg.run_dir, port=cfg.nats_port, monitor_port=cfg.nats_monitor_port, auth_hosts=cfg.hosts)
    start_network(cfg)
    start_sinks(cfg)
    ensure_tokens(cfg)


def ensure_tokens(cfg: ClusterConfig) -> None:
    """The admin token and Prometheus' viewer token, in files; reused while still valid.  Callable
    from inside an event loop too (bench/chaos.py): then the bootstrap runs on a loop of its own
    in a worker thread."""
    def bootstrap_now() -> None:
        asyncio.run(bootstrap.ensure_cluster_tokens(cfg.db_dsn, cfg.secrets_dir))
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        bootstrap_now()
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(bootstrap_now).result()


def start_sinks(cfg: ClusterConfig) -> None:
    """HAProxy for the registry's LB sink.  The nftables table is the registry's to create; a test
    session's table is removed when the session's process exits."""
    sink_procs.start_haproxy(cfg.run_dir)
    _delete_nft_table_at_exit(cfg)


_NFT_CLEANUPS: set[str] = set()


def _delete_nft_table_at_exit(cfg: ClusterConfig) -> None:
    """A throw-away cluster (tests, benchmarks) must not leave its whitelist table behind: the
    launching process removes it when it exits.  `make down` removes the local one."""
    if cfg.cluster != "local" and cfg.nft_table not in _NFT_CLEANUPS:
        _NFT_CLEANUPS.add(cfg.nft_table)
        atexit.register(sink_procs.delete_nft_table, cfg.nft_table)


def stop_sinks(cfg: ClusterConfig) -> list[str]:
    stopped = [n for n, stop in (("prometheus", sink_procs.stop_prometheus), ("haproxy", sink_procs.stop_haproxy))
               if stop(cfg.run_dir)]
    sink_procs.delete_nft_table(cfg.nft_table)
    return stopped


def start_network(cfg: ClusterConfig) -> None:
    """The switch, its DHCP server and one NIC per host (after dockerd: DOCKER-USER must exist)."""
    simnet.up(cfg.net)
    for h in cfg.hosts:
        simnet.add_host(cfg.net, h)


def stop_network(cfg: ClusterConfig, extra_hosts: tuple[str, ...] = ()) -> None:
    """Undo start_network and unmount leftover volumes; run after the cluster's containers are gone."""
    simnet.remove_volumes(cfg.volume_dir)
    simnet.down(cfg.net, [*cfg.hosts, *extra_hosts])


def up(cfg: ClusterConfig) -> None:
    # The reconciler compares Prometheus' targets with the in-service set (the tests' clusters
    # run no Prometheus of their own, so only `make up` sets this).
    cfg = dataclasses.replace(cfg, extra_env={
        "NOOPS_RECONCILER_PROMETHEUS_URL": f"http://127.0.0.1:{cfg.prometheus_port}", **cfg.extra_env})
    start_infra(cfg)
    names = process_names(cfg)
    for name in names:
        start_process(cfg, name)
    wait_healthy(cfg, names)
    prom = sink_procs.start_prometheus(cfg.run_dir, port=cfg.prometheus_port,
                                       sd_url=f"http://127.0.0.1:{cfg.gateway_port}/v1/discovery/prometheus",
                                       token_file=cfg.prometheus_token_file)
    print(f"noops is up: {len(cfg.hosts)} hosts ({', '.join(cfg.hosts)})")
    print(f"  load balancer: HAProxy frontends on 127.0.0.1:{cfg.lb_ports} (see each app's \"lb\"); "
          f"whitelists: nft table inet {cfg.nft_table}")
    print(f"  Prometheus: {prom} (targets from /v1/discovery/prometheus)")
    print(f"  gateway / web UI: http://127.0.0.1:{cfg.gateway_port}; admin token in {cfg.admin_token_file} "
          "(send it as 'Authorization: Bearer <token>'; the web UI asks for it)")
    print(f"  containers: {cfg.net.subnet} on switch {cfg.net.bridge} (gateway {cfg.net.gateway}, DHCP by dnsmasq)")
    print(f"  logs: make logs   (files in {cfg.run_dir / 'logs'})")
    print(f"  NATS: {cfg.nats_url}, one identity per service and host; operators: user admin, "
          f"password in {natsconf.password_file(cfg.run_dir, 'admin')}")
    print(f"  try:  curl -X POST http://127.0.0.1:{cfg.gateway_port}/v1/apps "
          f"-H \"Authorization: Bearer $(cat {cfg.admin_token_file})\" "
          "-H 'content-type: application/json' -d @examples/web.json")


def down(cfg: ClusterConfig) -> None:
    for name in reversed(process_names(cfg)):
        if infra.stop_pidfile(cfg.run_dir / f"{name}.pid"):
            print(f"stopped {name}")
    if infra.docker_ok():
        n = infra.remove_cluster_containers(cfg.cluster)
        if n:
            print(f"removed {n} containers")
    for name in stop_sinks(cfg):
        print(f"stopped {name}")
    stop_network(cfg)
    print(f"removed the simulated network {cfg.net.bridge} ({cfg.net.subnet})")
    if infra.stop_pidfile(cfg.run_dir / "nats.pid"):
        print("stopped nats")
    # dockerd only if `up` started it (the PID file exists only then).
    if infra.stop_pidfile(cfg.run_dir / "dockerd.pid", timeout=30):
        print("stopped dockerd")
    print("noops is down (the task log in PostgreSQL database "
          f"'{cfg.db_name}' is kept; PostgreSQL itself keeps running)")


def status(cfg: ClusterConfig) -> int:
    bad = 0
    for name in ["nats", "haproxy", "prometheus", *process_names(cfg)]:
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
