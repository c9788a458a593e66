"""The registry's first look at an IP report, before the task log or any sink sees it (pure).

hostd's reports are the platform's source of container addresses: HAProxy servers, nftables
whitelists and the API are built from them.  A host's credentials can be stolen, so a report is
held to the form hostd itself produces, field by field: ids are tokens, the address is one
address (canonical spelling) inside that host's container range, the MAC is six hex pairs and
unicast, the container id is one word, free text has no control characters, and numbers are finite.
Anything else is rejected with a named reason (a metric label: a few fixed values) and the field
it was found in (for the log), so nothing from a report reaches a command or a file unchecked.
"""
from __future__ import annotations

import functools
import ipaddress
import math
import re
from dataclasses import dataclass

from libs.messages import IpReport
from libs.ranges import Network, Ranges
from libs.subjects import TOKEN_RE
from services.registry.v4 import v4_int

BAD_ID = "malformed id"
BAD_ADDRESS = "malformed address"
OUT_OF_RANGE = "address outside the host's container range"
BAD_MAC = "malformed or non-unicast MAC"
BAD_CONTAINER_ID = "malformed container id"
BAD_TEXT = "control characters or oversized text"
BAD_NUMBER = "number out of range"

# Instance ids are the app id (a token), '-' and a suffix (services/placer/commit.py).
INSTANCE_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,126}[a-z0-9])?")
MAC_RE = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
# Docker's are 64 hex digits; the form is looser for the benchmarks' hollow hosts, never looser
# than one word of safe characters.
CONTAINER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")     # IFNAMSIZ - 1; no '/', no space
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")  # newlines and every other control character
MAX_TEXT = 2048                                        # reason, health


@dataclass(frozen=True)
class Rejection:
    reason: str   # one of the constants above (the metric's label)
    field: str    # which field, for the log
    value: str    # what it held, shortened and escaped, for the log


def _shown(value: object) -> str:
    return repr(value)[:80]


def screen(report: IpReport, ranges: Ranges) -> Rejection | None:
    """None when the report has the form hostd gives it, else the first thing wrong with it."""
    for name in ("host", "app"):
        if not TOKEN_RE.fullmatch(getattr(report, name)):
            return Rejection(BAD_ID, name, _shown(getattr(report, name)))
    if not INSTANCE_RE.fullmatch(report.instance):
        return Rejection(BAD_ID, "instance", _shown(report.instance))
    if report.container_id and not CONTAINER_ID_RE.fullmatch(report.container_id):
        return Rejection(BAD_CONTAINER_ID, "container_id", _shown(report.container_id))
    if report.mac and not unicast_mac(report.mac):
        return Rejection(BAD_MAC, "mac", _shown(report.mac))
    if report.parent and not IFNAME_RE.fullmatch(report.parent):
        return Rejection(BAD_TEXT, "parent", _shown(report.parent))
    for name in ("reason", "health"):
        text = getattr(report, name)
        if len(text) > MAX_TEXT or _CONTROL.search(text):
            return Rejection(BAD_TEXT, name, _shown(text))
    if report.epoch < 0:
        return Rejection(BAD_NUMBER, "epoch", _shown(report.epoch))
    for name in ("at", "lease_expires"):
        value = getattr(report, name)
        if not math.isfinite(value) or value < 0:
            return Rejection(BAD_NUMBER, name, _shown(value))
    if report.ip:
        return _address(report.ip, ranges.of(report.host), ranges.configured)
    return None


def unicast_mac(mac: str) -> bool:
    """Six lower-case hex pairs (the kernel's spelling), not multicast/broadcast, not all zeros."""
    return bool(MAC_RE.fullmatch(mac)) and not int(mac[:2], 16) & 1 and mac != "00:00:00:00:00:00"


# An IPv4 address in its one spelling (v4.py): the reports' usual case, judged on integers.
# ipaddress costs ~4 us a report (parsing, then each is_* property tests network membership with
# objects), a visible share of the registry at 100,000 reports.


@functools.lru_cache(maxsize=1024)
def _v4_bounds(net: Network) -> tuple[int, int, bool]:
    """First and last address of an IPv4 network, and whether those two are its own
    (network, broadcast) rather than usable ones (/31 and /32 have no such addresses)."""
    return int(net.network_address), int(net.broadcast_address), net.prefixlen < 31


def _address(ip: str, nets: tuple[Network, ...], configured: bool) -> Rejection | None:
    n = v4_int(ip)
    if n is None:
        return _address_any(ip, nets, configured)   # IPv6, or not an address at all
    a, b = n >> 24, n >> 16 & 0xFF
    # ipaddress's is_multicast (224/4), is_reserved (240/4), is_loopback (127/8),
    # is_link_local (169.254/16) and is_unspecified (0.0.0.0).
    if a >= 224 or a == 127 or (a == 169 and b == 254) or n == 0:
        return Rejection(OUT_OF_RANGE, "ip", _shown(ip))
    if not configured:
        return None
    for net in nets:
        if net.version != 4:
            continue
        lo, hi, edges = _v4_bounds(net)
        if lo <= n <= hi and not (edges and n in (lo, hi)):
            return None
    return Rejection(OUT_OF_RANGE, "ip", _shown(ip))


def _address_any(ip: str, nets: tuple[Network, ...], configured: bool) -> Rejection | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return Rejection(BAD_ADDRESS, "ip", _shown(ip))
    if str(addr) != ip:   # one spelling only: no leading zeros, no upper-case IPv6, no scope
        return Rejection(BAD_ADDRESS, "ip", _shown(ip))
    if addr.is_multicast or addr.is_loopback or addr.is_unspecified or addr.is_link_local or addr.is_reserved:
        return Rejection(OUT_OF_RANGE, "ip", _shown(ip))
    if not configured:
        return None
    for net in nets:
        edge = net.version == 4 and net.prefixlen < 31 and addr in (net.network_address, net.broadcast_address)
        if addr in net and not edge:
            return None
    return Rejection(OUT_OF_RANGE, "ip", _shown(ip))
