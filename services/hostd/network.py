"""How an instance gets its address: the one step a later issue swaps (macvlan + DHCP).

For now every container joins Docker's default bridge and keeps the address Docker gives it.
Both halves live here so the swap touches one module: what to ask at create time, and where to
read the address back from.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NETWORK = "bridge"


def host_config() -> dict[str, Any]:
    """The HostConfig keys that attach a new container to its network."""
    return {"NetworkMode": NETWORK}


def ip_of(network_settings: Mapping[str, Any]) -> str:
    """The instance address from an inspect's (or list entry's) NetworkSettings; '' if none yet."""
    networks = network_settings.get("Networks") or {}
    ip = (networks.get(NETWORK) or {}).get("IPAddress") or ""
    return ip or network_settings.get("IPAddress") or ""
