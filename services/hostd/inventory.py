"""Inventory: answer the reconciler's request with what the engine has for this host, right now."""
from __future__ import annotations

import logging
from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs import messages, subjects
from services.hostd.containers import ContainerInfo
from services.hostd.runtime import ContainerRuntime

log = logging.getLogger("noops.hostd.inventory")


def inventory_of(host: str, found: list[ContainerInfo],
                 ip_of: Callable[[str], str] = lambda instance: "") -> messages.Inventory:
    """``ip_of(instance)``: the address hostd gave the instance (Docker knows none with networking off)."""
    return messages.Inventory(host=host, items=[
        messages.InventoryItem(instance=c.instance, app=c.app, container_id=c.id, state=c.state,
                               ip=c.ip or (ip_of(c.instance) if c.running else ""))
        for c in found])


async def serve_inventory(nc: NATS, runtime: ContainerRuntime, *, host: str, owner: dict[str, str],
                          ip_of: Callable[[str], str] = lambda instance: "") -> Subscription:
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
        await msg.respond(messages.encode(inventory_of(host, found, ip_of)))

    return await nc.subscribe(subjects.inventory(host), cb=on_request)
