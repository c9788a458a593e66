"""Container address ranges per host, as the operator configures them (a registry setting):
what the registry holds hostd's IP reports to (services/registry/screen.py)."""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from libs.subjects import TOKEN_RE

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Ranges:
    """Container address ranges: ``anywhere`` apply to every host, ``per_host`` to one more.
    Empty throughout: no range is configured and only the address's form is checked."""
    anywhere: tuple[Network, ...] = ()
    per_host: Mapping[str, tuple[Network, ...]] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.anywhere or self.per_host)

    def of(self, host: str) -> tuple[Network, ...]:
        return self.anywhere + tuple(self.per_host.get(host, ()))

    @classmethod
    def parse(cls, text: str) -> "Ranges":
        """``198.18.0.0/20`` (every host) or ``h1=198.18.0.0/24`` (that host), comma separated.
        Raises ValueError naming the bad entry."""
        anywhere: list[Network] = []
        per_host: dict[str, list[Network]] = {}
        for entry in filter(None, (e.strip() for e in text.split(","))):
            host, sep, cidr = entry.rpartition("=")
            if sep and not TOKEN_RE.fullmatch(host.strip()):
                raise ValueError(f"{entry!r}: {host!r} is not a host id")
            try:
                net = ipaddress.ip_network(cidr.strip(), strict=True)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not a network like 198.18.0.0/20: {exc}") from None
            (per_host.setdefault(host.strip(), []) if sep else anywhere).append(net)
        return cls(tuple(anywhere), {h: tuple(n) for h, n in per_host.items()})
