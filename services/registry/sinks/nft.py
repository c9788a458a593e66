"""Whitelist sink: one nftables set per app, holding the app's container IPs, in a table noops owns.

A protected service admits only an app's containers with a rule it owns, e.g.

    nft add chain inet noops mysql_in '{ type filter hook input priority 0; }'
    nft add rule inet noops mysql_in tcp dport 3306 ip saddr != @app_web drop

Sets of apps that left are flushed, never deleted: a rule may reference them, and an empty set
admits nobody (the safe answer).  Each batch is one nftables transaction (atomic), through
libnftables in this process (libnft.py) or an ``nft -f -``; in this process, once the sets exist,
their changes go over netlink without libnftables (nftnl.py: its cache made each call cost more
the more apps there were).
The registry's sink writes the table on its own host; an agent on a protected host runs the
same ``NftSink`` fed from ``noops.endpoints.*`` (see services/registry/README.md).
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence

from libs import messages, subjects
from services.registry.sinks import libnft, nftnl
from services.registry.sinks.model import Desired
from services.registry.v4 import v4_int

SET_PREFIX = "app_"


class NftError(RuntimeError):
    pass


def set_name(app: str) -> str:
    """The set of an app; an id not of the task log's form is refused, never written into a script."""
    if not subjects.TOKEN_RE.fullmatch(app):
        raise NftError(f"refused to name a set after {app!r:.80}: not an app id")
    return f"{SET_PREFIX}{app}"


def _v4(ips: Iterable[str]) -> list[str]:
    """The IPv4 addresses among ``ips`` (registry/v4.py), sorted; anything else (IPv6, not an
    address) left out."""
    return sorted(ip for ip in ips if v4_int(ip) is not None)


def render(family: str, table: str, apps: Mapping[str, Iterable[str]], *, also_flush: Sequence[str] = ()) -> str:
    """The nft script making each app's set hold exactly its IPs (pure).  ``also_flush``: apps
    whose sets exist but are no longer desired."""
    lines = [f"add table {family} {table}"]
    for app in sorted(apps):
        name = set_name(app)
        lines.append(f"add set {family} {table} {name} {{ type ipv4_addr; }}")
        lines.append(f"flush set {family} {table} {name}")
        ips = _v4(apps[app])
        if ips:
            lines.append(f"add element {family} {table} {name} {{ {', '.join(ips)} }}")
    for app in sorted(set(also_flush) - set(apps)):
        lines.append(f"flush set {family} {table} {set_name(app)}")
    return "\n".join(lines) + "\n"


def render_changes(family: str, table: str, changes: Mapping[str, tuple[Iterable[str], Iterable[str]]]) -> str:
    """Script adding and deleting only what changed per app: app -> (added, removed) (pure).
    Deleting an element that is not there fails the whole transaction, which the sink answers by
    rewriting the sets whole (``render``)."""
    lines = []
    for app in sorted(changes):
        added, removed = (_v4(x) for x in changes[app])
        if removed:
            lines.append(f"delete element {family} {table} {set_name(app)} {{ {', '.join(removed)} }}")
        if added:
            lines.append(f"add element {family} {table} {set_name(app)} {{ {', '.join(added)} }}")
    return "\n".join(lines) + "\n" if lines else ""


def element_text(elem: object) -> str:
    """One set element of ``nft -j`` output as text (pure): an address as is, a prefix as
    ``a/len``, a range as ``a-b``; an element with options (``{"elem": {"val": ...}}``) as its value."""
    if isinstance(elem, str):
        return elem
    if isinstance(elem, dict):
        if "elem" in elem and isinstance(elem["elem"], dict):
            return element_text(elem["elem"].get("val"))
        if "prefix" in elem and isinstance(elem["prefix"], dict):
            return f"{element_text(elem['prefix'].get('addr'))}/{elem['prefix'].get('len')}"
        if "range" in elem and isinstance(elem["range"], list):
            return "-".join(element_text(e) for e in elem["range"])
    return json.dumps(elem, sort_keys=True)   # a form noops never writes: shown, so it reads as drift


def view_groups(listing: Mapping[str, object]) -> dict[str, list[str]]:
    """``nft -j list table`` output -> app -> sorted elements of its set ``app_<app>`` (pure)."""
    out: dict[str, list[str]] = {}
    items = listing.get("nftables", [])
    for item in items if isinstance(items, list) else []:
        s = item.get("set") if isinstance(item, dict) else None
        if isinstance(s, dict) and str(s.get("name", "")).startswith(SET_PREFIX):
            out[s["name"][len(SET_PREFIX):]] = sorted(element_text(e) for e in s.get("elem", []))
    return dict(sorted(out.items()))


def _size(diffs: Mapping[str, tuple[frozenset[str], frozenset[str]]]) -> int:
    return sum(len(added) + len(removed) for added, removed in diffs.values())


class NftSink:
    name = "nft"

    def __init__(self, table: str, *, family: str = "inet", argv: Sequence[str] | None = None) -> None:
        # Default: libnftables in this process (libnft.py), or the ``nft`` command where the
        # library is missing.  ``argv`` runs that command instead (tests prefix ``ip netns exec
        # <ns>`` to keep everything in a namespace).
        self.table, self.family = table, family
        lib = libnft.load() if argv is None else None
        self._lib = libnft.LibNft(lib) if lib is not None else None
        self.argv = tuple(argv or ("nft",))
        # What each set holds after our last successful write; cleared on any failure, and then
        # sets are rewritten whole.  Small diffs keep a busy app's update cheap.
        self._held: dict[str, frozenset[str]] = {}

    async def _nft(self, *args: str, script: str | None = None) -> str:
        if self._lib is not None:
            try:
                return await self._lib.run(args, script)
            except libnft.LibNftError as exc:
                raise NftError(f"nft {' '.join(args)} failed: {exc}") from None
        proc = await asyncio.create_subprocess_exec(*self.argv, *args, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(script.encode() if script is not None else None)
        if proc.returncode != 0:
            raise NftError(f"nft {' '.join(args)} failed: {err.decode().strip()[:500]}")
        return out.decode()

    async def existing_apps(self) -> set[str]:
        try:
            out = await self._nft("-j", "list", "table", self.family, self.table)
        except NftError:
            return set()   # no table yet
        apps = set()
        for item in json.loads(out).get("nftables", []):
            name = item.get("set", {}).get("name", "")
            if name.startswith(SET_PREFIX):
                apps.add(name[len(SET_PREFIX):])
        return apps

    async def members(self, app: str) -> set[str]:
        out = await self._nft("-j", "list", "set", self.family, self.table, set_name(app))
        for item in json.loads(out).get("nftables", []):
            if "set" in item:
                return {e for e in item["set"].get("elem", []) if isinstance(e, str)}
        return set()

    async def observe(self) -> messages.SinkView:
        """The sets as the kernel holds them (``nft -j list table``), not ``_held``.  No table yet:
        it holds nothing."""
        try:
            out = await self._nft("-j", "list", "table", self.family, self.table)
        except NftError as exc:
            if "No such file or directory" in str(exc):
                return messages.SinkView(sink=self.name, ok=True)
            raise
        return messages.SinkView(sink=self.name, ok=True, groups=view_groups(json.loads(out)))

    def forget(self, apps: Iterable[str]) -> None:
        # Unknown to ``update`` now: their sets are rewritten whole (flush + add), not diffed.
        for app in apps:
            self._held.pop(app, None)

    async def apply_full(self, desired: Desired) -> None:
        self._held = {}
        stale = await self.existing_apps()
        want = {a: s.ips() for a, s in desired.items()}
        await self._nft("-f", "-", script=render(self.family, self.table, want, also_flush=sorted(stale)))
        self._held = {a: frozenset(_v4(ips)) for a, ips in want.items()}

    async def update(self, changes: Desired) -> None:
        # Only addresses not held yet are parsed (_v4): what a set holds was checked when written,
        # and parsing a busy app's whole set per batch was most of this sink's own cost.
        want: dict[str, frozenset[str]] = {}
        fresh: dict[str, frozenset[str]] = {}
        diffs: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        for a, s in changes.items():
            ips, held = s.ips(), self._held.get(a)
            if held is None:
                want[a] = fresh[a] = frozenset(_v4(ips))
                continue
            added, removed = frozenset(_v4(ips - held)), held - ips
            want[a] = (held - removed) | added
            if added or removed:
                diffs[a] = (added, removed)
        try:
            if self._lib is not None and not fresh and _size(diffs) <= nftnl.MAX_ELEMENTS:
                # The sets exist: their changes over netlink, without libnftables' cache of
                # every set of the table (nftnl.py).  Same transaction, same failure path.
                try:
                    nftnl.apply(self.family, self.table, {set_name(a): d for a, d in diffs.items() if d[0] or d[1]})
                except nftnl.NftnlError as exc:
                    raise NftError(f"set changes over netlink failed: {exc}") from None
            else:
                script = (render(self.family, self.table, fresh) if fresh else "") + \
                    render_changes(self.family, self.table, diffs)
                if script:
                    await self._nft("-f", "-", script=script)
        except NftError:
            self._held = {}
            raise
        self._held.update(want)

    async def close(self) -> None:
        if self._lib is not None:
            self._lib.close()
            self._lib = None

    async def delete_table(self) -> None:
        """For tests and `make down`: remove the whole table (and any rule in it)."""
        try:
            await self._nft("delete", "table", self.family, self.table)
        except NftError:
            pass
