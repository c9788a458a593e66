"""Refuse development defaults on a reachable address.  `make up` runs everything on loopback with
a generated database password and generated NATS passwords; a service pointed at another
machine's PostgreSQL with the development password, or at another machine's NATS without
credentials, is a misconfiguration that would leave the task log or the bus open to anyone on
the network.  Pure: the caller reads the password file and acts on the answer.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import unquote, urlsplit

# Passwords that exist only in development tooling and documentation examples.
DEV_DB_PASSWORDS = frozenset({"noops", "postgres", "password"})


def is_loopback(host: str) -> bool:
    """A host name or address that never leaves this machine (a Unix socket path counts)."""
    host = host.strip().strip("[]")
    if not host or host.startswith("/") or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hosts(url: str) -> list[str]:
    """Every host of a URL list: NATS takes ``nats://a:4222,nats://b:4222``; libpq takes
    ``postgresql://u@a:5432,b:5432/db`` and ``?host=/run/postgresql``."""
    out: list[str] = []
    for part in url.split(","):
        part = part.strip()
        if not part:
            continue
        if "://" not in part:           # the later hosts of a libpq multi-host DSN: "b:5432/db"
            part = "x://" + part
        parts = urlsplit(part)
        netloc = parts.netloc.rpartition("@")[2]
        host = netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 or "]" in netloc else netloc
        out.append(unquote(host))
        for kv in parts.query.split("&"):
            key, _, value = kv.partition("=")
            if key == "host":
                out.extend(unquote(value).split(","))
    return out


def _password(dsn: str) -> str:
    netloc = urlsplit(dsn.split(",")[0]).netloc
    userinfo = netloc.rpartition("@")[0]
    return unquote(userinfo.partition(":")[2]) if ":" in userinfo else ""


def insecure_defaults(*, db_dsn: str, db_password: str, nats_url: str, nats_user: str,
                      uses_db: bool = True) -> list[str]:
    """What is wrong, one sentence each (empty: nothing)."""
    problems = []
    if uses_db:
        password = db_password or _password(db_dsn)
        remote = [h for h in _hosts(db_dsn) if not is_loopback(h)]
        if remote and password in DEV_DB_PASSWORDS:
            problems.append(f"the database at {remote[0]} is reached with the development password: give the "
                            "role a generated password and pass it in NOOPS_DB_PASSWORD_FILE")
    remote = [h for h in _hosts(nats_url) if not is_loopback(h)]
    if remote and not nats_user:
        problems.append(f"NATS at {remote[0]} is reached without credentials: set NOOPS_NATS_USER and "
                        "NOOPS_NATS_PASSWORD_FILE (libs/natsauth.py lists each service's identity)")
    return problems
