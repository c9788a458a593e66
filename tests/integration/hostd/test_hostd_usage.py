"""hostd's usage responder on the session's real NATS, under the host's own identity, asked by
the gateway's identity: the last round's CPU cores (from the last two rounds), memory and
readiness per instance; a round without an instance drops it; a malformed request gets no answer;
and NATS lets a host hear only its own usage subject (libs/natsauth.py)."""
from __future__ import annotations

import nats
import nats.errors
import pytest

from devtools.cluster import ClusterConfig
from libs import messages, subjects
from services.hostd.usage import serve_usage
from tests.support.usage import body, connect_as, hostd_usage, record


async def ask(gw: nats.NATS, host: str, data: bytes | None = None) -> messages.Usage:
    msg = await gw.request(subjects.usage(host), data if data is not None else messages.encode(messages.UsageRequest()),
                           timeout=2)
    return messages.decode(msg.data, messages.Usage)


async def test_the_host_answers_its_last_round(cluster_cfg: ClusterConfig, uid: str) -> None:
    host = f"use-{uid}"
    rounds = [(1000.0, {"web-1": ("web", body(1.0, 8 << 20)), "api-1": ("api", body(0.5, 1 << 20, ready=0))}),
              (1010.0, {"web-1": ("web", body(3.5, 9 << 20)), "api-1": ("api", body(0.5, 1 << 20, ready=0))})]
    gw = await connect_as(cluster_cfg, "gateway", f"gateway-usage-{uid}")
    try:
        async with hostd_usage(cluster_cfg, host, rounds) as book:
            got = await ask(gw, host)
            assert got.host == host and not got.truncated
            assert [(u.instance, u.app, u.cpu_cores, u.cpu_seconds, u.memory_bytes, u.ready, u.at) for u in got.items] == [
                ("api-1", "api", 0.0, 0.5, 1 << 20, False, 1010.0),
                ("web-1", "web", pytest.approx(0.25), 3.5, 9 << 20, True, 1010.0)]

            record(book, [(1020.0, {"web-1": ("web", body(4.0, 9 << 20))})])   # api-1 did not answer
            assert [(u.instance, u.cpu_cores) for u in (await ask(gw, host)).items] == [("web-1", pytest.approx(0.05))]

            # A request that is not a UsageRequest is refused: no answer, the asker times out.
            with pytest.raises(nats.errors.TimeoutError):
                await gw.request(subjects.usage(host), b'{"kind": "other"}', timeout=0.3)
            assert (await ask(gw, host)).items   # and the next one is answered
    finally:
        await gw.close()


async def test_a_host_cannot_hear_another_hosts_usage_requests(cluster_cfg: ClusterConfig, uid: str) -> None:
    mine, other = f"use-{uid}", f"useother-{uid}"
    gw = await connect_as(cluster_cfg, "gateway", f"gateway-usage-{uid}")
    try:
        async with hostd_usage(cluster_cfg, mine) as book:
            # hostd-<mine> subscribing to <other>'s subject: the server refuses the subscription.
            nc = await connect_as(cluster_cfg, f"hostd-{mine}", f"hostd-usage-spy-{uid}")
            try:
                await serve_usage(nc, host=other, book=book)
                await nc.flush()
                with pytest.raises(nats.errors.NoRespondersError):
                    await gw.request(subjects.usage(other), messages.encode(messages.UsageRequest()), timeout=2)
            finally:
                await nc.close()
            assert (await ask(gw, mine)) == messages.Usage(host=mine, items=[])   # its own: answered, empty book
    finally:
        await gw.close()
