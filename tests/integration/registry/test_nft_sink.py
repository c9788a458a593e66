"""The whitelist sink against real nftables, in network namespaces this test creates (numbered in
198.18.0.0/15): a protected listener admits the app's container IP and refuses another."""
from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from libs.messages import Endpoint
from services.registry.sinks.model import AppState
from services.registry.sinks.nft import NftError, NftSink, set_name
from tests.support.wait import eventually

PORT = 7777


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


@pytest.fixture
def lab() -> Iterator[dict[str, str]]:
    """srv <-veth-> c1 (198.18.254.2, the app's container) and srv <-veth-> c2 (198.18.254.6, not)."""
    tag = uuid.uuid4().hex[:6]
    ns = {"srv": f"nt-s-{tag}", "c1": f"nt-a-{tag}", "c2": f"nt-b-{tag}"}
    listener = None
    try:
        for n in ns.values():
            sh("ip", "netns", "add", n)
        for i, (client, srv_ip, cli_ip) in enumerate((("c1", "198.18.254.1", "198.18.254.2"),
                                                      ("c2", "198.18.254.5", "198.18.254.6"))):
            s_if, c_if = f"s{i}-{tag}", f"c{i}-{tag}"
            sh("ip", "link", "add", s_if, "netns", ns["srv"], "type", "veth", "peer", "name", c_if, "netns", ns[client])
            sh("ip", "-n", ns["srv"], "addr", "add", f"{srv_ip}/30", "dev", s_if)
            sh("ip", "-n", ns[client], "addr", "add", f"{cli_ip}/30", "dev", c_if)
            sh("ip", "-n", ns["srv"], "link", "set", s_if, "up")
            sh("ip", "-n", ns[client], "link", "set", c_if, "up")
        sh("ip", "-n", ns["srv"], "link", "set", "lo", "up")
        listener = subprocess.Popen(["ip", "netns", "exec", ns["srv"], "python3", "-c",
                                     "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                                     f"s.bind(('0.0.0.0',{PORT}));s.listen(16)\n"
                                     "while True:\n c,_=s.accept();c.sendall(b'hello');c.close()"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield ns
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for n in ns.values():
            sh("ip", "netns", "del", n, check=False)   # takes its veths and its nft tables with it


async def connect(ns: str, ip: str) -> str:
    """What a client in ``ns`` reads from the protected port: b'hello' or the error."""
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, "python3", "-c",
        "import socket,sys\ns=socket.create_connection(sys.argv[1:3] and (sys.argv[1], int(sys.argv[2])), timeout=2)\n"
        "print(s.recv(16).decode())", ip, str(PORT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return out.decode().strip() or err.decode().strip().splitlines()[-1]


async def _is_hello(reply) -> bool:
    return await reply == "hello"


def web(*ips: str) -> dict[str, AppState]:
    return {"web": AppState("web", tuple(Endpoint(instance=f"web-{i}", host="h1", ip=ip, ports={})
                                         for i, ip in enumerate(ips)))}


async def test_only_the_apps_containers_are_admitted(lab):
    table = "noops_test"
    await eventually(lambda: _is_hello(connect(lab["c1"], "198.18.254.1")), timeout=10, what="listener up")
    sink = NftSink(table, argv=("ip", "netns", "exec", lab["srv"], "nft"))
    await sink.apply_full(web("198.18.254.2"))
    # The protected service's own rule: only members of the app's set may connect.
    sh("ip", "netns", "exec", lab["srv"], "nft",
       f"add chain inet {table} protect {{ type filter hook input priority 0; policy accept; }}")
    sh("ip", "netns", "exec", lab["srv"], "nft",
       f"add rule inet {table} protect tcp dport {PORT} ip saddr != @{set_name('web')} reject with tcp reset")
    assert await sink.members("web") == {"198.18.254.2"}
    assert await connect(lab["c1"], "198.18.254.1") == "hello"
    assert "refused" in (await connect(lab["c2"], "198.18.254.5")).lower()

    # The set follows the in-service set: c2's IP comes in, c1's goes out.
    await sink.update(web("198.18.254.6"))
    assert await connect(lab["c2"], "198.18.254.5") == "hello"
    assert "refused" in (await connect(lab["c1"], "198.18.254.1")).lower()

    # Someone else emptied the set behind the sink's back: the next diff fails, the sink forgets what
    # it believed, and the retry rewrites the set whole.
    sh("ip", "netns", "exec", lab["srv"], "nft", f"flush set inet {table} {set_name('web')}")
    with pytest.raises(NftError):
        await sink.update(web("198.18.254.2"))
    await sink.update(web("198.18.254.2"))
    assert await sink.members("web") == {"198.18.254.2"}

    # An app that left is emptied (set kept: the rule references it), and apply_full is idempotent.
    await sink.apply_full({})
    assert await sink.members("web") == set()
    await sink.apply_full({})
    assert "refused" in (await connect(lab["c2"], "198.18.254.5")).lower()


async def test_in_process_libnftables_writes_the_same_sets():
    """The registry's default runner: libnftables in the process (no nft command).  In the root
    namespace, in a table of this test's own, removed at the end."""
    table = f"noops_t{uuid.uuid4().hex[:6]}"
    sink = NftSink(table)
    assert sink._lib is not None, "libnftables is installed with nftables"
    try:
        await sink.apply_full(web("198.18.254.2", "198.18.254.3"))
        await sink.update(web("198.18.254.3", "198.18.254.9"))   # a diff: one out, one in
        listed = sh("nft", "list", "set", "inet", table, set_name("web")).stdout
        assert "198.18.254.9" in listed and "198.18.254.3" in listed and "198.18.254.2" not in listed
        assert await sink.members("web") == {"198.18.254.3", "198.18.254.9"}
        assert await sink.existing_apps() == {"web"}
        sh("nft", "flush", "set", "inet", table, set_name("web"))     # behind the sink's back
        with pytest.raises(NftError, match="failed"):
            await sink.update(web("198.18.254.2"))
        await sink.update(web("198.18.254.2"))                        # rewritten whole
        assert await sink.members("web") == {"198.18.254.2"}
    finally:
        await sink.delete_table()
        await sink.close()
    assert sh("nft", "list", "table", "inet", table, check=False).returncode != 0


async def test_set_changes_over_netlink_are_one_transaction():
    """nftnl.py, the in-process path for changes of sets that exist: every set's additions and
    removals in one batch, applied whole or (one removal of an element that is not there) not at all."""
    from services.registry.sinks import nftnl
    table = f"noops_t{uuid.uuid4().hex[:6]}"
    sink = NftSink(table)
    two = {**web("198.18.254.2"), "db": AppState("db", (Endpoint(instance="db-0", host="h1", ip="198.18.254.20",
                                                                 ports={}),))}
    try:
        await sink.apply_full(two)
        nftnl.apply("inet", table, {set_name("web"): (["198.18.254.3", "198.18.254.4"], ["198.18.254.2"]),
                                    set_name("db"): (["198.18.254.21"], [])})
        assert await sink.members("web") == {"198.18.254.3", "198.18.254.4"}
        assert await sink.members("db") == {"198.18.254.20", "198.18.254.21"}
        with pytest.raises(nftnl.NftnlError, match="No such file"):
            nftnl.apply("inet", table, {set_name("db"): (["198.18.254.22"], []),
                                        set_name("web"): ([], ["198.18.254.99"])})
        assert await sink.members("db") == {"198.18.254.20", "198.18.254.21"}   # nothing of it applied
        with pytest.raises(nftnl.NftnlError):
            nftnl.apply("inet", table, {"app_nosuchset": (["198.18.254.5"], [])})
    finally:
        await sink.delete_table()
        await sink.close()
    assert sh("nft", "list", "table", "inet", table, check=False).returncode != 0
