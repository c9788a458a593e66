"""IPv4 addresses in their one spelling (four decimal parts, no leading zeros), cheaply: every
report's address is judged (screen.py), and every server and set element a sink writes is
checked (sinks/haproxy_config.py, sinks/nft.py).  glibc's inet_pton is as strict as ``ipaddress``
there, at an eighth of its cost."""
from __future__ import annotations

import socket


def v4_int(ip: object) -> int | None:
    """``ip`` as an integer when it is an IPv4 address in its one spelling; None for anything
    else (IPv6, not a string, not an address)."""
    if not isinstance(ip, str):
        return None
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
    except (OSError, ValueError):   # ValueError: an embedded NUL
        return None
