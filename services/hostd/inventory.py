"""Inventory: answer the reconciler's request with what this host holds, right now.

Containers come from the engine (listed by this host's labels), volumes from the volume driver
(a directory listing for loop images, one ``lvs`` for LVM), leases from the lease journal and
the live attachments, interfaces from one netlink dump of the root namespace.  Nothing enters a
container's namespace: eth0 and its tc rule live there and vanish with it, so they cannot leak
on the host and are not listed.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs import messages, subjects
from services.hostd.containers import ContainerInfo
from services.hostd.network import Network
from services.hostd.runtime import ContainerRuntime
from services.hostd.volumes import VolumeDriver

log = logging.getLogger("noops.hostd.inventory")


@dataclass(frozen=True)
class Held:
    """What the host holds besides containers (instances with a volume or lease; link names)."""
    volumes: Iterable[str] = ()
    leases: Iterable[str] = ()
    interfaces: Iterable[str] = ()
    ips: dict[str, str] = field(default_factory=dict)   # instance -> the address hostd gave it


def inventory_of(host: str, found: list[ContainerInfo], held: Held = Held()) -> messages.Inventory:
    """Docker knows no address with networking off: a running container's comes from ``held.ips``."""
    return messages.Inventory(
        host=host,
        items=[messages.InventoryItem(instance=c.instance, app=c.app, container_id=c.id, state=c.state,
                                      ip=c.ip or (held.ips.get(c.instance, "") if c.running else ""),
                                      epoch=c.epoch)
               for c in found],
        volumes=sorted(held.volumes), leases=sorted(held.leases), interfaces=sorted(held.interfaces))


async def _or_nothing(what: str, read: Callable[[], Awaitable[list[str]]]) -> list[str]:
    """A part that cannot be read is reported empty (and logged): the reconciler only acts on
    what is reported, so an empty list costs a round of cleanup, never a wrong removal."""
    try:
        return await read()
    except Exception as exc:
        log.warning("inventory part not read", extra={"part": what, "error": str(exc) or type(exc).__name__})
        return []


async def held_by(network: Network, volumes: VolumeDriver) -> Held:
    async def leases() -> list[str]:
        return network.leased()
    return Held(volumes=await _or_nothing("volumes", volumes.list),
                leases=await _or_nothing("leases", leases),
                interfaces=await _or_nothing("interfaces", network.strays),
                ips={inst: att.ip for inst, att in network.attached.items()})


async def serve_inventory(nc: NATS, runtime: ContainerRuntime, *, host: str, owner: dict[str, str],
                          network: Network, volumes: VolumeDriver) -> Subscription:
    """Subscribe; the caller unsubscribes at shutdown."""

    async def on_request(msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            found = await runtime.list(owner)
        except Exception as exc:
            # No answer rather than a wrong (empty) one: the requester times out and asks again.
            log.warning("inventory not answered: docker does not answer", extra={"error": str(exc)})
            return
        await msg.respond(messages.encode(inventory_of(host, found, await held_by(network, volumes))))

    return await nc.subscribe(subjects.inventory(host), cb=on_request)
