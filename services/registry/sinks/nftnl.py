"""Set elements added and deleted over netlink, in one nftables transaction, without libnftables.

libnftables rebuilds its cache of every set of the table before each command (it needs the
set's key type to parse an element), so a call cost ~0.7 ms with 400 sets in the table, 3.2 ms
with 2,000 (bench/RESULTS.md): the whitelist sink's per-batch cost grew with the number of apps.
The elements of an ``ipv4_addr`` set need no parsing: four bytes.  So the changes of a batch
(``NftSink.update`` once the sets exist) are one nfnetlink batch on a socket of our own:

    BATCH_BEGIN, then per set: DELSETELEM (removed), NEWSETELEM (added), then BATCH_END

The kernel applies the batch atomically or not at all and answers each element message (ACK):
any error (a set that does not exist, an element to delete that is not there) fails the whole
call, and the sink rewrites the sets whole through libnftables, as before.
"""
from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable, Mapping

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_DATA_VALUE = 1
FAMILIES = {"inet": 1, "ip": 2, "ip6": 10}   # NFPROTO_*

# Larger batches go through libnftables (the batch is one send: it must fit the socket's buffer).
MAX_ELEMENTS = 20_000
MAX_BYTES = 1 << 20


class NftnlError(RuntimeError):
    pass


def _attr(kind: int, payload: bytes) -> bytes:
    head = struct.pack("=HH", 4 + len(payload), kind)
    return head + payload + b"\0" * (-len(payload) % 4)


def _nested(kind: int, parts: Iterable[bytes]) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(parts))


def _message(kind: int, flags: int, seq: int, family: int, res_id: int, attrs: bytes) -> bytes:
    body = struct.pack("=BBH", family, 0, socket.htons(res_id)) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def _elements(family: int, table: str, set_name: str, kind: int, ips: Iterable[str], seq: int) -> bytes:
    elems = [_nested(NFTA_LIST_ELEM, [_nested(NFTA_SET_ELEM_KEY, [_attr(NFTA_DATA_VALUE, socket.inet_pton(
        socket.AF_INET, ip))])]) for ip in ips]
    attrs = (_attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0") + _attr(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0")
             + _nested(NFTA_SET_ELEM_LIST_ELEMENTS, elems))
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE if kind == NFT_MSG_NEWSETELEM else 0)
    return _message((NFNL_SUBSYS_NFTABLES << 8) | kind, flags, seq, family, 0, attrs)


def batch(family: str, table: str, changes: Mapping[str, tuple[Iterable[str], Iterable[str]]], *,
          seq: int = 1) -> tuple[bytes, int]:
    """The netlink batch for set -> (added, removed) IPv4 addresses, and how many of its messages
    the kernel answers (pure).  Removals first, per set, like ``nft.render_changes``."""
    fam = FAMILIES[family]
    msgs = [_message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES, b"")]
    for name in sorted(changes):
        added, removed = (sorted(x) for x in changes[name])
        for kind, ips in ((NFT_MSG_DELSETELEM, removed), (NFT_MSG_NEWSETELEM, added)):
            if ips:
                msgs.append(_elements(fam, table, name, kind, ips, seq + len(msgs)))
    answered = len(msgs) - 1
    msgs.append(_message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + len(msgs), 0, NFNL_SUBSYS_NFTABLES, b""))
    return b"".join(msgs), answered


def apply(family: str, table: str, changes: Mapping[str, tuple[Iterable[str], Iterable[str]]], *,
          timeout_s: float = 5.0) -> None:
    """Send the batch on a socket of its own and wait for every answer; NftnlError on any error
    (then nothing of the batch was applied).  Blocking: a few system calls."""
    seq = int.from_bytes(os.urandom(3), "big") + 1
    data, answered = batch(family, table, changes, seq=seq)
    if not answered:
        return
    if len(data) > MAX_BYTES:
        raise NftnlError(f"batch of {len(data)} bytes: too large for one netlink message")
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as s:
        s.settimeout(timeout_s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max(len(data) * 2, 1 << 16))
        s.bind((0, 0))
        try:
            s.send(data)
            got, errors = 0, []
            while got < answered:
                buf = s.recv(1 << 16)
                off = 0
                while off + 16 <= len(buf):
                    length, kind, _flags, mseq, _pid = struct.unpack_from("=IHHII", buf, off)
                    if length < 16:
                        raise NftnlError("malformed netlink answer")
                    if kind == NLMSG_ERROR and seq < mseq < seq + answered + 1:
                        got += 1
                        (code,) = struct.unpack_from("=i", buf, off + 16)
                        if code:
                            errors.append(f"{os.strerror(-code)} (message {mseq - seq})")
                    off += (length + 3) & ~3
        except OSError as exc:   # a timeout included
            raise NftnlError(f"netlink batch failed: {exc}") from None
    if errors:
        raise NftnlError(f"nftables refused the batch: {'; '.join(errors[:3])}")
