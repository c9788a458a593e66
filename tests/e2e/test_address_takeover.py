"""A container cannot take another app's address, end to end: with the whole platform running, an
intruder container on the same L2 segment (root inside, Docker's defaults minus NET_RAW and
NET_ADMIN) tries to add the victim's address, take its MAC and answer ARP for it; all of it is
refused, the switch side still maps the victim's address to the victim's MAC, and HAProxy and the
nftables whitelist keep pointing at the victim alone."""
from __future__ import annotations


import pytest

from devtools import sinks as sink_procs
from services.registry.sinks import haproxy_config as hc
from services.registry.sinks.haproxy import runtime
from tests.e2e.helpers import containers, instances, running_count, web_spec
from tests.e2e.test_fanout import lb_port, nft_members
from tests.support.inside import neighbour_mac, sh
from tests.support.wait import eventually, holds

pytestmark = pytest.mark.e2e


async def lb_targets(platform, port: int) -> set[tuple[str, str, int]]:
    """(server, address, port) of the enabled servers of the app's HAProxy backend."""
    paths = sink_procs.haproxy_paths(platform.cfg.run_dir)
    state = hc.parse_servers_state(await runtime(paths.admin_socket, "show servers state"))
    return {(name, s.addr, s.port) for name, s in state.get(port, {}).items() if s.enabled}


async def one_running(c, app_id: str) -> dict | None:
    insts = await instances(c, app_id)
    return next(i for i in insts if i["state"] == "RUNNING") if running_count(insts, 1) else None


async def test_an_intruder_container_cannot_take_the_victims_address(platform, uid):
    victim_id, intruder_id = f"victim-{uid}", f"intruder-{uid}"
    async with platform.client() as c:
        try:
            for app_id in (victim_id, intruder_id):
                assert (await c.post("/v1/apps", json=web_spec(app_id, instances=1))).status_code == 201
            victim = await eventually(lambda: one_running(c, victim_id), timeout=60, what="the victim RUNNING")
            intruder = await eventually(lambda: one_running(c, intruder_id), timeout=60, what="the intruder RUNNING")
            port = await lb_port(c, victim_id)
            want = {(victim["id"], victim["ip"], 8080)}

            async def sinks_point_at_the_victim() -> bool:
                return await lb_targets(platform, port) == want and nft_members(platform, victim_id) == {victim["ip"]}
            await eventually(sinks_point_at_the_victim, timeout=30, what="HAProxy and nft on the victim")
            bridge = platform.cfg.net.bridge
            assert await neighbour_mac(bridge, victim["ip"]) == victim["mac"]

            prefix = platform.cfg.net.subnet.prefixlen
            for what, script in {
                "ip addr add": f"ip addr add {victim['ip']}/{prefix} dev eth0",
                "ip link set address": f"ip link set dev eth0 address {victim['mac']}",
                "arping -U (gratuitous ARP)": f"arping -U -c 3 -s {victim['ip']} -I eth0 {victim['ip']}",
                "arping -A (ARP reply)": f"arping -A -c 3 -s {victim['ip']} -I eth0 {victim['ip']}",
            }.items():
                code, out = await sh(intruder["container_id"], script)
                assert code != 0 and "operation not permitted" in out.lower(), f"{what}: exit {code}, {out!r}"

            # The switch side still knows the victim by its own MAC, and the sinks never move.
            assert await neighbour_mac(bridge, victim["ip"]) == victim["mac"]
            await holds(sinks_point_at_the_victim, seconds=3, what="HAProxy and nft on the victim")
            [now] = [i for i in await instances(c, victim_id) if i["state"] == "RUNNING"]
            assert (now["ip"], now["mac"]) == (victim["ip"], victim["mac"])
        finally:
            for app_id in (victim_id, intruder_id):
                await c.delete(f"/v1/apps/{app_id}")
            for app_id in (victim_id, intruder_id):
                await eventually(lambda: not containers(platform.cfg.cluster, app_id, all_states=False),
                                 timeout=90, what=f"{app_id} stopped")
