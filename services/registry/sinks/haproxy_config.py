"""Pure parts of the HAProxy sink: the configuration file, the Runtime API commands that take a
backend from what it holds to what it should hold, and parsers of HAProxy's answers.

Every piece joined into a command or a configuration line is checked where the line is built
(``name``, ``server_ref``, ``target``, ``_port``): a server name we create is an instance id (a
strict token), one we refer to is a HAProxy identifier, an address goes through ``v4.v4_int``, a
port is an int in 1-65535.  Anything else raises ``CommandError``: a space, ``;`` or a newline
would otherwise be a second argument, a second command or a second configuration line.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from services.registry.v4 import v4_int

# srv_admin_state bits (HAProxy's SRV_ADMF_*): forced maint, inherited maint, config maint,
# forced drain, inherited drain, resolution maint.  Any of them: not taking new traffic.
_ADMIN_OFF = 0x01 | 0x02 | 0x04 | 0x08 | 0x10 | 0x20

# Names of the servers the sink creates: instance ids (services/placer/commit.py).
SERVER_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,126}[a-z0-9])?")
# Names the sink refers to (read back from HAProxy): HAProxy's own identifier characters.
HAPROXY_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_TOKEN_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")   # app ids and port names (comments)


class CommandError(ValueError):
    """A value that may not be joined into a HAProxy command or configuration line."""


def _port(port: object) -> int:
    if type(port) is not int or not 1 <= port <= 65535:
        raise CommandError(f"HAProxy: port {port!r:.40} is not an integer in 1-65535")
    return port


def _address(ip: object) -> str:
    if v4_int(ip) is None:   # one spelling only (registry/v4.py), paid for every server added
        raise CommandError(f"HAProxy: {ip!r:.60} is not an IPv4 address")
    return ip   # type: ignore[return-value]  (a str: v4_int said so)


def _bind(host: object) -> str:
    return "*" if host == "*" else _address(host)


def target(ip: object, port: object) -> str:
    """``ip:port`` of a server, both checked."""
    return f"{_address(ip)}:{_port(port)}"


def server_ref(port: object, name: str) -> str:
    """``p<port>/<name>`` for a server HAProxy holds (or is about to)."""
    if not isinstance(name, str) or not HAPROXY_NAME_RE.fullmatch(name):
        raise CommandError(f"HAProxy: {name!r:.60} is not a server name")
    return f"{backend_name(port)}/{name}"


@dataclass(frozen=True)
class Paths:
    """Everything of one HAProxy instance lives in one directory (its own per cluster)."""
    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / "haproxy.cfg"

    @property
    def admin_socket(self) -> Path:
        return self.dir / "admin.sock"

    @property
    def master_socket(self) -> Path:
        return self.dir / "master.sock"


@dataclass(frozen=True)
class Frontend:
    port: int
    bind_host: str
    app: str = ""         # "" = a spare slot, ready for the next app without a reload
    port_name: str = ""


class Server(msgspec.Struct, frozen=True, gc=False):
    """Not tracked by Python's garbage collector (plain values, no cycle can pass through it):
    the sink caches one per server, and full collections walking tens of thousands of them
    paused the registry for tens of milliseconds."""
    addr: str
    port: int
    admin_state: int = 0

    @property
    def enabled(self) -> bool:
        return not self.admin_state & _ADMIN_OFF


def backend_name(port: object) -> str:
    return f"p{_port(port)}"


def port_of_backend(name: str) -> int | None:
    m = re.fullmatch(r"p(\d+)", name)
    return int(m.group(1)) if m else None


def server_name(instance: str) -> str:
    """The server of an instance is named after it; an id of another form is refused, never
    rewritten (two ids could otherwise become one name)."""
    if not isinstance(instance, str) or not SERVER_NAME_RE.fullmatch(instance):
        raise CommandError(f"HAProxy: instance id {instance!r:.60} is not a token (a-z, 0-9, '-')")
    return instance


def check_args(interval_s: float) -> str:
    """A server's own health check: a TCP connect every ``interval_s``, down after 2 failures in a
    row, up again after 1 success.  A lost host answers nothing, so each failing check lasts its
    connect timeout, which HAProxy takes as min(timeout connect, inter): two of them and the
    gaps between take about 4 intervals."""
    if interval_s <= 0:
        return ""
    return f" check inter {max(int(interval_s * 1000), 100)}ms fall 2 rise 1"


def render(paths: Paths, frontends: Iterable[Frontend], servers: Mapping[int, Mapping[str, tuple[str, int]]], *,
           connect_timeout_s: float = 2.0, check_interval_s: float = 0.0) -> str:
    """The whole configuration.  TCP mode: any service, not only HTTP.  Servers are written in too,
    so a reload starts the new worker with the current set (no window without servers)."""
    lines = [
        "# Written by the noops registry (services/registry/sinks/haproxy.py); edits are overwritten.",
        "global",
        # expose-fd listeners: the master hands the listening sockets to the new worker on reload,
        # so no connection is refused while it starts.
        f"    stats socket {paths.admin_socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        "defaults",
        "    mode tcp",
        f"    timeout connect {int(connect_timeout_s * 1000)}ms",
        "    timeout client 60s",
        "    timeout server 60s",
        "    option redispatch",
        "    retries 2",
        "",
    ]
    for fe in sorted(frontends, key=lambda f: f.port):
        be = backend_name(fe.port)
        if fe.app and not (_TOKEN_RE.fullmatch(fe.app) and _TOKEN_RE.fullmatch(fe.port_name)):
            raise CommandError(f"HAProxy: app {fe.app!r:.60} port {fe.port_name!r:.40} are not tokens")
        label = f"app {fe.app} port {fe.port_name}" if fe.app else "spare"
        lines += [f"# {label}", f"frontend f{fe.port}", f"    bind {_bind(fe.bind_host)}:{_port(fe.port)}",
                  f"    default_backend {be}", f"backend {be}", "    balance roundrobin"]
        for name, (ip, port) in sorted(servers.get(fe.port, {}).items()):
            lines.append(f"    server {server_name(name)} {target(ip, port)}{check_args(check_interval_s)}")
        lines.append("")
    return "\n".join(lines) + "\n"


def plan_backend(port: int, desired: Mapping[str, tuple[str, int]], observed: Mapping[str, Server], *,
                 check_interval_s: float = 0.0) -> list[str]:
    """Runtime API commands taking backend ``p<port>`` from ``observed`` to ``desired`` (pure).

    Order matters: a leaving server goes to maintenance first (no new connection reaches it), and
    only then is deleted (HAProxy refuses to delete a server that is not in maintenance).  A new
    server is created in maintenance and enabled after.  The ``del server`` may be refused while
    connections drain; the sink retries it later.
    """
    # Instance ids are the server names (server_name refuses, never rewrites); a name is checked
    # where it goes into a command: checking and sorting the whole set per batch grew with the app.
    cmds: list[str] = []
    # Servers already as desired and enabled need nothing (most of them, in a batch).
    unsettled = [n for n, srv in observed.items() if not (srv.enabled and (srv.addr, srv.port) == desired.get(n))]
    for name in sorted(unsettled):
        srv = observed[name]
        ref = server_ref(port, name)
        wanted = desired.get(name)
        if wanted is not None and (srv.addr, srv.port) == wanted:
            cmds.append(f"enable server {ref}")   # in maintenance: enabled again
            continue
        if srv.enabled:
            cmds.append(f"set server {ref} state maint")
        cmds.append(f"del server {ref}")
    new = [k for k, v in desired.items() if (o := observed.get(k)) is None or (o.addr, o.port) != v]
    for name in sorted(new):
        ip, p = desired[name]
        ref = server_ref(port, server_name(name))
        # A server added at run time starts with its checks off: "enable health" turns them on.
        check = check_args(check_interval_s)
        cmds += [f"add server {ref} {target(ip, p)}{check}"]
        cmds += [f"enable health {ref}"] if check else []
        cmds += [f"enable server {ref}"]
    return cmds


def parse_servers_state(text: str) -> dict[int, dict[str, Server]]:
    """``show servers state`` -> port -> server name -> Server (only noops backends ``p<port>``)."""
    out: dict[int, dict[str, Server]] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 19 or line.startswith("#") or not f[0].isdigit():
            continue
        port = port_of_backend(f[1])
        if port is None:
            continue
        out.setdefault(port, {})[f[3]] = Server(f[4], int(f[18]), int(f[6]))
    return out


def parse_backends(text: str) -> set[int]:
    """``show backend`` -> the ports of the noops backends the running worker has."""
    return {p for p in (port_of_backend(ln.strip()) for ln in text.splitlines()) if p is not None}


def view_groups(backends: Iterable[int], servers: Mapping[int, Mapping[str, Server]]) -> dict[str, list[str]]:
    """What HAProxy serves, as the reconciler compares it (pure): ``"<port>"`` -> sorted
    ``"<server> <ip>:<port>"`` per noops backend, leaving out servers not taking new traffic (in
    maintenance or drain: a leaving server drains in maintenance).  A backend without servers is
    listed empty."""
    out: dict[str, list[str]] = {str(p): [] for p in backends}
    for port, by_name in servers.items():
        out.setdefault(str(port), []).extend(f"{n} {s.addr}:{s.port}" for n, s in by_name.items() if s.enabled)
    return {k: sorted(v) for k, v in sorted(out.items(), key=lambda kv: int(kv[0]))}


def parse_pid(show_info: str) -> int | None:
    m = re.search(r"^Pid:\s*(\d+)", show_info, re.MULTILINE)
    return int(m.group(1)) if m else None


def ok_answer(cmd: str, answer: str) -> bool:
    """Whether HAProxy accepted a command (it answers errors as text, never with a status)."""
    a = answer.strip()
    if cmd.startswith("add server"):
        return "New server registered" in a
    if cmd.startswith("del server"):
        return "Server deleted" in a
    return a == ""
