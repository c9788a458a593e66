"""Local infrastructure for `make up` and the test suite: PostgreSQL, dockerd, NATS, the base
image, and service processes.  Everything started here is tracked by PID file so that `make down`
and test teardown end exactly what they started, nothing else."""
from __future__ import annotations

import contextlib
import glob
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools import natsconf

REPO = Path(__file__).resolve().parent.parent
DOCKER_BIP = "198.19.255.1/24"  # dockerd's default bridge, inside 198.18.0.0/15 (see README)
PG_ROLE = "noops"
# The noops role's password, generated once per machine (the role is the machine's, shared by a
# `make up` cluster and test sessions): outside this file no password exists in the source.
PG_PASSWORD_FILE = Path("/var/lib/noops/pg-password")


class InfraError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"noops: {msg}", file=sys.stderr, flush=True)


def wait_until(cond, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if result:
            return result
        if time.monotonic() > deadline:
            raise InfraError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports.  Every socket stays bound until all are picked: ports
    picked one at a time can repeat (the kernel may hand out a port just released), and a NATS
    whose client port was its monitor's failed a whole CI run."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


# ---------------------------------------------------------------- processes by PID file

def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def spawn(argv: list[str], *, pidfile: Path, logfile: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start a long-running process in its own session, output to logfile, PID to pidfile."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)
    pidfile.write_text(str(proc.pid))
    return proc.pid


def stop_pid(pid: int, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (spawn() makes each started process a group leader)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                out.append(int(d.name))
    return out


def stop_pidfile(pidfile: Path, timeout: float = 10.0, *, group: bool = False) -> bool:
    """Stop the process named by ``pidfile``; with ``group``, also whatever is left of the process
    group spawn() made for it (e.g. HAProxy's workers, which outlive a master for a while)."""
    pid = read_pid(pidfile)
    if pid is not None:
        stop_pid(pid, timeout)
        if group:
            for member in group_members(pid):
                stop_pid(member, timeout)
    pidfile.unlink(missing_ok=True)
    return pid is not None


# ---------------------------------------------------------------- PostgreSQL (Debian cluster)

def _pg_version() -> str:
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not versions:
        raise InfraError("PostgreSQL is not installed (apt-get install postgresql)")
    return versions[-1].split("/")[4]


def _psql(sql: str, db: str = "postgres") -> str:
    out = subprocess.run(["su", "postgres", "-c", f"psql -v ON_ERROR_STOP=1 -d {db} -Atc \"{sql}\""],
                         capture_output=True, text=True, cwd="/")
    if out.returncode != 0:
        raise InfraError(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def ensure_postgres(port: int = 5432) -> None:
    """Start Debian's cluster (create it if missing) and the noops role, which may create databases."""
    version = _pg_version()
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    if f"{version} main" not in listing.replace("  ", " "):
        log(f"creating PostgreSQL {version} cluster 'main'")
        subprocess.run(["pg_createcluster", version, "main", "-p", str(port)], check=True, capture_output=True)
        listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    if "online" not in next((ln for ln in listing.splitlines() if ln.split()[:2] == [version, "main"]), ""):
        log(f"starting PostgreSQL {version}")
        subprocess.run(["pg_ctlcluster", version, "main", "start"], check=True)
    wait_until(lambda: port_open(port), 30, "PostgreSQL to listen")
    password = pg_password()
    verb = "ALTER" if _psql(f"SELECT 1 FROM pg_roles WHERE rolname='{PG_ROLE}'") == "1" else "CREATE"
    # ALTER too: a machine set up before passwords were generated moves to its generated one.
    _psql(f"{verb} ROLE {PG_ROLE} LOGIN CREATEDB PASSWORD '{password}'")


def pg_password() -> str:
    """This machine's generated password of the noops role (made on first use, mode 0600)."""
    try:
        return PG_PASSWORD_FILE.read_text().strip()
    except FileNotFoundError:
        pass
    PG_PASSWORD_FILE.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = secrets.token_hex(24)  # hex: nothing to quote in SQL or in a DSN
    try:   # O_EXCL: two sessions starting at once agree on the first one written
        fd = os.open(PG_PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return PG_PASSWORD_FILE.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


def pg_dsn(name: str, *, with_password: bool = True) -> str:
    auth = f"{PG_ROLE}:{pg_password()}" if with_password else PG_ROLE
    return f"postgresql://{auth}@127.0.0.1:5432/{name}"


def stop_postgres() -> None:
    """Stop Debian's cluster (fast: open sessions are ended, as in a crash or a failover).  For
    fault tests; every database on the cluster goes away with it."""
    subprocess.run(["pg_ctlcluster", _pg_version(), "main", "stop", "-m", "fast"], check=True, capture_output=True)


def ensure_database(name: str, *, fresh: bool = False) -> str:
    if fresh:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    if _psql(f"SELECT 1 FROM pg_database WHERE datname='{name}'") != "1":
        _psql(f"CREATE DATABASE {name} OWNER {PG_ROLE}")
    return pg_dsn(name)


def drop_database(name: str) -> None:
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---------------------------------------------------------------- Docker engine

# How long `docker info` may take.  Docker 20.10's libnetwork can deadlock under many containers
# created and removed at once (moby/moby#46661, fixed after Debian's 20.10.24): every API call then
# hangs, and a test session waiting on it hung until pytest's timeout, then every later module.
DOCKER_INFO_TIMEOUT_S = 30.0
DOCKER_CONTAINERD_PID = Path("/var/run/docker/containerd/containerd.pid")   # the containerd dockerd starts


def _docker_answer() -> str:
    """"ok", "refused" (not running, or not yet) or "wedged" (no answer within the timeout)."""
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=DOCKER_INFO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "wedged"
    return "ok" if done.returncode == 0 else "refused"


def docker_ok() -> bool:
    """The engine answers (not when it refuses or is wedged)."""
    return _docker_answer() == "ok"


def _our_dockerds() -> list[int]:
    """dockerd processes started by ensure_dockerd (their --pidfile is a noops run directory's
    dockerd.engine.pid); a dockerd of the system's or anyone else's is never among them."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"dockerd") and any(a.endswith(b"/dockerd.engine.pid") for a in argv):
                found.append(int(d.name))
    return found


def ensure_dockerd(run_dir: Path) -> bool:
    """Start dockerd unless one answers already; one of ours that no longer answers (wedged) is
    stopped and started again.  Returns True when this call started it."""
    answer = _docker_answer()
    if answer == "ok":
        check_docker_bridge()
        return False
    if answer == "wedged":
        ours = _our_dockerds()
        if not ours:
            raise InfraError(f"dockerd does not answer `docker info` within {DOCKER_INFO_TIMEOUT_S:.0f} s and was not "
                             "started by noops: restart it (systemctl restart docker)")
        for pid in ours:
            log(f"dockerd {pid} (started by noops) does not answer within {DOCKER_INFO_TIMEOUT_S:.0f} s; restarting it")
            stop_pid(pid, 10)
        # Its containerd (started by it) goes too, before the next dockerd looks: one still shutting
        # down was taken for running, and the new dockerd waited for it in vain.
        containerd = read_pid(DOCKER_CONTAINERD_PID)
        if containerd is not None:
            stop_pid(containerd, 10)
        # A killed containerd can linger as a zombie (its parent gone, not reaped yet), which the
        # next dockerd takes for a live one by its PID file: without the file it starts its own.
        DOCKER_CONTAINERD_PID.unlink(missing_ok=True)
    if not shutil.which("dockerd"):
        raise InfraError("dockerd is not installed (apt-get install docker.io)")
    log(f"starting dockerd (bridge {DOCKER_BIP})")
    spawn(["dockerd", "--bip", DOCKER_BIP, "--pidfile", str(run_dir / "dockerd.engine.pid")],
          pidfile=run_dir / "dockerd.pid", logfile=run_dir / "logs" / "dockerd.log")
    wait_until(docker_ok, 60, "dockerd to answer")
    return True


def check_docker_bridge() -> None:
    """Containers on Docker's default bridge get its addresses; noops numbers its networks inside
    198.18.0.0/15 only, so an engine configured otherwise is refused with the fix spelled out."""
    out = subprocess.run(["docker", "network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"],
                         capture_output=True, text=True)
    subnets = out.stdout.split()
    allowed = ipaddress.ip_network("198.18.0.0/15")
    bad = [s for s in subnets if not ipaddress.ip_network(s, strict=False).subnet_of(allowed)]
    if out.returncode == 0 and bad:
        raise InfraError(f"the running dockerd's bridge is {', '.join(bad)}; noops needs it inside 198.18.0.0/15. "
                         f"Restart dockerd with --bip {DOCKER_BIP} (or set \"bip\" in /etc/docker/daemon.json).")


def ensure_base_image() -> None:
    subprocess.run(["bash", str(REPO / "scripts" / "build-base-image.sh")], check=True)


def remove_cluster_containers(cluster: str) -> int:
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=noops.cluster={cluster}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
    return len(ids)


# ---------------------------------------------------------------- NATS

@dataclass(frozen=True)
class NatsServer:
    port: int
    monitor_port: int

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


def start_nats(run_dir: Path, *, port: int, monitor_port: int, name: str = "nats",
               auth_hosts: Sequence[str] | None = None) -> NatsServer:
    """NATS with JetStream on 127.0.0.1.  With ``auth_hosts`` (make up, the tests) it requires a
    user per identity with the permissions of libs/natsauth.py (devtools/natsconf.py); without
    (benchmarks) anyone may do anything."""
    pidfile = run_dir / f"{name}.pid"
    store = run_dir / f"{name}-store"
    if read_pid(pidfile) is None:
        if not shutil.which("nats-server"):
            raise InfraError("nats-server is not installed (apt-get install nats-server)")
        store.mkdir(parents=True, exist_ok=True)
        if auth_hosts is None:
            argv = ["nats-server", "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor_port)]
        else:
            natsconf.ensure_identities(run_dir, auth_hosts)
            conf = natsconf.write_server_config(run_dir, port=port, monitor_port=monitor_port, store=store)
            argv = ["nats-server", "-c", str(conf)]
        spawn(argv, pidfile=pidfile, logfile=run_dir / "logs" / f"{name}.log")
    elif auth_hosts is not None:
        ensure_nats_identities(run_dir, auth_hosts, monitor_port=monitor_port, name=name)
    server = NatsServer(port, monitor_port)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true"), 30, "NATS")
    return server


def ensure_nats_identities(run_dir: Path, hosts: Sequence[str], *, monitor_port: int, name: str = "nats") -> None:
    """Give these hosts their NATS identities; a running server reloads (clients stay connected)."""
    if not natsconf.enabled(run_dir) or not natsconf.ensure_identities(run_dir, hosts):
        return
    pid = read_pid(run_dir / f"{name}.pid")
    if pid is None:
        return  # read at the next start
    before = natsconf.config_load_time(monitor_port)
    natsconf.reload(pid)
    wait_until(lambda: natsconf.config_load_time(monitor_port) != before, 10, "NATS to reload its configuration")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return 200 <= r.status < 300
    except OSError:
        return False


# ---------------------------------------------------------------- noops services

SERVICES = ("gateway", "placer", "registry", "reconciler")


def service_argv(service: str) -> list[str]:
    return [sys.executable, "-m", f"services.{service}"]


def start_service(run_dir: Path, name: str, service: str, env: dict[str, str]) -> int:
    pidfile = run_dir / f"{name}.pid"
    pid = read_pid(pidfile)
    if pid is not None:
        return pid
    return spawn(service_argv(service), pidfile=pidfile, logfile=run_dir / "logs" / f"{name}.log",
                 env={**os.environ, **env}, cwd=REPO)
