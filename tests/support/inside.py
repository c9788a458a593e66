"""Looking at containers from inside (docker exec) and at the switch from the host side."""
from __future__ import annotations

import asyncio
import json


async def sh(container_id: str, script: str, *, user: str = "") -> tuple[int, str]:
    """Run ``script`` in the container (as its own user unless ``user``); exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        "docker", "exec", *(["-u", user] if user else []), container_id, "sh", "-c", script,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(errors="replace")


async def neighbour_mac(bridge: str, ip: str, port: int = 8080) -> str:
    """The switch side's (root namespace's) ARP entry for ``ip`` on ``bridge``, after a TCP
    connection to ``ip:port`` (so the entry is fresh: the kernel resolved it for this traffic)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 3)
        writer.close()
    except (OSError, asyncio.TimeoutError):
        pass   # the entry says what the kernel learnt meanwhile, if anything
    show = await asyncio.create_subprocess_exec("ip", "-j", "neigh", "show", ip, "dev", bridge,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await show.communicate()
    return next((n.get("lladdr", "") for n in json.loads(out or b"[]")), "")
