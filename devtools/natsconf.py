"""The local NATS server's configuration with authentication: one generated password per identity.

    <run_dir>/nats.conf            listen address, monitoring, JetStream store, `include nats-auth.conf`
    <run_dir>/nats-auth.conf       users and their permissions (libs/natsauth.py), mode 0600
    <run_dir>/nats-auth/<user>     each identity's password, mode 0600: the file a service is given
                                   in NOOPS_NATS_PASSWORD_FILE (never the password itself in its env)

A host that joins later (a test's extra hostd) gets its identity with ``ensure_identities`` and the
running server reloads its configuration (SIGHUP): no client is disconnected.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from libs import natsauth


def auth_dir(run_dir: Path) -> Path:
    return run_dir / "nats-auth"


def password_file(run_dir: Path, user: str) -> Path:
    return auth_dir(run_dir) / user


def enabled(run_dir: Path) -> bool:
    """Whether this run directory's NATS runs with authentication (benchmarks start it without)."""
    return (run_dir / "nats-auth.conf").exists()


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def known_hosts(run_dir: Path) -> list[str]:
    prefix = natsauth.hostd_user("")
    d = auth_dir(run_dir)
    return sorted(p.name.removeprefix(prefix) for p in d.glob(f"{prefix}*")) if d.exists() else []


def ensure_identities(run_dir: Path, hosts: Iterable[str]) -> bool:
    """Passwords for every identity (services, admin, these hosts and those known before) and the
    authorization file; True when the file changed (a running server must reload)."""
    d = auth_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    idents = natsauth.identities([*known_hosts(run_dir), *hosts])
    passwords = {}
    for ident in idents:
        f = password_file(run_dir, ident.user)
        if not f.exists():
            _write_private(f, secrets.token_urlsafe(24))
        passwords[ident.user] = f.read_text().strip()
    text = natsauth.server_config(idents, passwords)
    conf = run_dir / "nats-auth.conf"
    if conf.exists() and conf.read_text() == text:
        return False
    _write_private(conf, text)
    return True


def write_server_config(run_dir: Path, *, port: int, monitor_port: int, store: Path) -> Path:
    conf = run_dir / "nats.conf"
    conf.write_text("\n".join([
        "# Written by devtools/natsconf.py; regenerated on every start.",
        f"listen: {json.dumps(f'127.0.0.1:{port}')}",
        f"http: {json.dumps(f'127.0.0.1:{monitor_port}')}",
        f"jetstream {{ store_dir: {json.dumps(str(store))} }}",
        'include "nats-auth.conf"', ""]))
    return conf


def config_load_time(monitor_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/varz", timeout=2) as r:
        return str(json.load(r).get("config_load_time", ""))


def reload(pid: int) -> None:
    os.kill(pid, signal.SIGHUP)


def env(run_dir: Path, user: str) -> dict[str, str]:
    """What a process needs to connect as ``user`` (empty when the server runs without auth)."""
    if not enabled(run_dir):
        return {}
    return {"NOOPS_NATS_USER": user, "NOOPS_NATS_PASSWORD_FILE": str(password_file(run_dir, user))}


def credentials(run_dir: Path, user: str = natsauth.ADMIN) -> tuple[str, str]:
    """(user, password) for in-process clients (tests, tools); ("", "") without auth."""
    if not enabled(run_dir):
        return "", ""
    return user, password_file(run_dir, user).read_text().strip()
