"""Pure cores of the sinks: HAProxy commands and configuration, nft scripts, IPVS operations."""
from __future__ import annotations

from pathlib import Path

import pytest

from libs.messages import Endpoint
from services.registry.sinks import haproxy_config as hc
from services.registry.sinks import ipvs, nft
from services.registry.sinks.model import AppState, LbPort

ON, MAINT = 0, 0x01


@pytest.mark.parametrize("desired,observed,expected", [
    ({}, {}, []),
    ({"a": ("1.1.1.1", 80)}, {}, ["add server p9/a 1.1.1.1:80", "enable server p9/a"]),
    ({"a": ("1.1.1.1", 80)}, {"a": hc.Server("1.1.1.1", 80, ON)}, []),
    ({"a": ("1.1.1.1", 80)}, {"a": hc.Server("1.1.1.1", 80, MAINT)}, ["enable server p9/a"]),
    ({}, {"a": hc.Server("1.1.1.1", 80, ON)}, ["set server p9/a state maint", "del server p9/a"]),
    ({}, {"a": hc.Server("1.1.1.1", 80, MAINT)}, ["del server p9/a"]),
    ({"a": ("2.2.2.2", 80)}, {"a": hc.Server("1.1.1.1", 80, ON)},
     ["set server p9/a state maint", "del server p9/a", "add server p9/a 2.2.2.2:80", "enable server p9/a"]),
    ({}, {"Manual_1": hc.Server("1.1.1.1", 80, ON)}, ["set server p9/Manual_1 state maint", "del server p9/Manual_1"]),
], ids=["nothing", "add", "same", "re-enable", "remove", "remove-in-maint", "address-moved",
        "a-server-added-by-hand-is-removed"])
def test_plan_backend(desired, observed, expected):
    assert hc.plan_backend(9, desired, observed) == expected


INJECTIONS = ["\n", "\r", ";", " ", "\t", "\x00", "/", "#"]


@pytest.mark.parametrize("desired,observed", [
    *[pytest.param({f"web-1{i}show info": ("1.1.1.1", 80)}, {}, id=f"name-{i.encode('unicode_escape').decode()}")
      for i in INJECTIONS],
    *[pytest.param({"web-1": (f"1.1.1.1{i}del server p9/x", 80)}, {}, id=f"address-{i.encode('unicode_escape').decode()}")
      for i in INJECTIONS],
    *[pytest.param({}, {f"a{i}b": hc.Server("1.1.1.1", 80, ON)}, id=f"observed-name-{i.encode('unicode_escape').decode()}")
      for i in INJECTIONS],
    pytest.param({"web-1": ("1.1.1.1", "80;shutdown sessions")}, {}, id="port-a-string"),
    pytest.param({"web-1": ("1.1.1.1", 0)}, {}, id="port-zero"),
    pytest.param({"web-1": ("1.1.1.1", 70000)}, {}, id="port-too-big"),
    pytest.param({"web-1": ("1.1.1.1", True)}, {}, id="port-a-bool"),
    pytest.param({"web-1": ("1.1.1.01", 80)}, {}, id="address-leading-zero"),
    pytest.param({"web-1": ("::1", 80)}, {}, id="address-ipv6"),
    pytest.param({"Web-1": ("1.1.1.1", 80)}, {}, id="name-upper-case"),
    pytest.param({"": ("1.1.1.1", 80)}, {}, id="name-empty"),
])
def test_no_command_is_built_from_an_unchecked_piece(desired, observed):
    with pytest.raises(hc.CommandError, match="HAProxy"):
        hc.plan_backend(9, desired, observed)


@pytest.mark.parametrize("servers,fronts", [
    pytest.param({18001: {"web-1\n    server evil": ("1.1.1.1", 80)}}, [hc.Frontend(18001, "127.0.0.1", "web", "http")],
                 id="server-line-injection"),
    pytest.param({}, [hc.Frontend(18001, "127.0.0.1\nlisten evil", "web", "http")], id="bind-injection"),
    pytest.param({}, [hc.Frontend(18001, "127.0.0.1", "web\nlisten evil", "http")], id="comment-injection"),
    pytest.param({18001: {"web-1": ("1.1.1.1 backup", 80)}}, [hc.Frontend(18001, "127.0.0.1", "web", "http")],
                 id="server-option-injection"),
])
def test_render_refuses_injection(servers, fronts):
    with pytest.raises(hc.CommandError):
        hc.render(hc.Paths(Path("/x")), fronts, servers)


@pytest.mark.parametrize("cmd", ["show info\nshutdown frontend f1", "show info; shutdown frontend f1", "a\rb"])
async def test_the_socket_refuses_a_second_command(tmp_path, cmd):
    from services.registry.sinks import haproxy
    with pytest.raises(haproxy.HAProxyError, match="another command"):
        await haproxy.runtime(tmp_path / "none.sock", cmd)
    with pytest.raises(haproxy.HAProxyError, match="another command"):
        await haproxy.runtime_batch(tmp_path / "none.sock", ["show info", cmd])


def test_servers_are_added_with_their_own_health_check():
    assert hc.plan_backend(9, {"a": ("1.1.1.1", 80)}, {}, check_interval_s=0.5) == [
        "add server p9/a 1.1.1.1:80 check inter 500ms fall 2 rise 1", "enable health p9/a", "enable server p9/a"]
    text = hc.render(hc.Paths(Path("/x")), [hc.Frontend(18001, "127.0.0.1", "web", "http")],
                     {18001: {"web-1": ("198.18.0.5", 8080)}}, check_interval_s=1.0)
    assert "    server web-1 198.18.0.5:8080 check inter 1000ms fall 2 rise 1" in text


def test_render_has_frontends_servers_and_sockets():
    paths = hc.Paths(Path("/x"))
    text = hc.render(paths, [hc.Frontend(18001, "127.0.0.1", "web", "http"), hc.Frontend(18002, "127.0.0.1")],
                     {18001: {"web-1": ("198.18.0.5", 8080)}})
    assert "stats socket /x/admin.sock mode 600 level admin expose-fd listeners" in text
    assert "bind 127.0.0.1:18001" in text and "bind 127.0.0.1:18002" in text
    assert "    server web-1 198.18.0.5:8080" in text
    assert "# app web port http" in text and "# spare" in text


def test_parse_servers_state_and_backends():
    state = ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...\n"
             "3 p18001 1 i1 127.0.0.1 2 0 1 1 0 1 0 0 0 0 0 0 - 18500 - 0 0 - - 0\n"
             "3 p18001 2 i2 127.0.0.2 0 1 1 1 0 1 0 0 0 0 0 0 - 18501 - 0 0 - - 0\n"
             "4 other 1 z 127.0.0.3 2 0 1 1 0 1 0 0 0 0 0 0 - 1 - 0 0 - - 0\n")
    got = hc.parse_servers_state(state)
    assert got == {18001: {"i1": hc.Server("127.0.0.1", 18500, 0), "i2": hc.Server("127.0.0.2", 18501, 1)}}
    assert got[18001]["i1"].enabled and not got[18001]["i2"].enabled
    assert hc.parse_backends("# name\nMASTER\np18001\nstats\np18002\n") == {18001, 18002}
    assert hc.parse_pid("Name: HAProxy\nPid: 4242\n") == 4242


@pytest.mark.parametrize("cmd,answer,ok", [
    ("add server p1/a 1.1.1.1:1", "New server registered.\n", True),
    ("add server p1/a 1.1.1.1:1", "Already exists a server with the same name in backend.\n", False),
    ("del server p1/a", "\nServer deleted.\n", True),
    ("del server p1/a", "Server still has connections attached to it, cannot remove it.", False),
    ("enable server p1/a", "\n", True),
    ("enable server p1/a", "No such server.\n", False),
], ids=["add-ok", "add-dup", "del-ok", "del-busy", "enable-ok", "enable-missing"])
def test_ok_answer(cmd, answer, ok):
    assert hc.ok_answer(cmd, answer) is ok


def test_nft_render_makes_each_set_exact():
    script = nft.render("inet", "t", {"web": ["198.18.0.3", "198.18.0.2", "fe80::1", "bogus"], "db": []},
                        also_flush=["gone", "web"])
    assert script.splitlines() == [
        "add table inet t",
        "add set inet t app_db { type ipv4_addr; }", "flush set inet t app_db",
        "add set inet t app_web { type ipv4_addr; }", "flush set inet t app_web",
        "add element inet t app_web { 198.18.0.2, 198.18.0.3 }",
        "flush set inet t app_gone",
    ]


def _app(app: str, port: int, *targets: tuple[str, str, int]) -> AppState:
    return AppState(app, tuple(Endpoint(instance=i, host="h", ip=ip, ports={"http": p}) for i, ip, p in targets),
                    {"http": LbPort("127.0.0.1", port)})


V = "198.18.0.1"
S1, S2 = ipvs.VService(V, 18001), ipvs.VService(V, 18002)
R1, R2 = ipvs.Real("198.18.1.1", 80), ipvs.Real("198.18.1.2", 80)


def test_ipvs_desired_table():
    got = ipvs.desired_table({"web": _app("web", 18001, ("w1", "198.18.1.1", 80), ("w2", "198.18.1.2", 80))}, V)
    assert got == {S1: frozenset({R1, R2})}


@pytest.mark.parametrize("observed,desired,scope,kinds", [
    ({}, {S1: frozenset({R1})}, None, [("add_service", S1, None), ("add_dest", S1, R1)]),
    ({S1: frozenset({R1})}, {S1: frozenset({R2})}, None, [("add_dest", S1, R2), ("del_dest", S1, R1)]),
    ({S1: frozenset({R1}), S2: frozenset()}, {S1: frozenset({R1})}, None, [("del_service", S2, None)]),
    ({S1: frozenset({R1}), S2: frozenset()}, {S1: frozenset()}, {S1}, [("del_dest", S1, R1)]),
    ({S1: frozenset({R1})}, {S1: frozenset({R1})}, None, []),
], ids=["new-service", "swap-dest", "full-removes-stray", "scoped-keeps-others", "no-op"])
def test_ipvs_plan(observed, desired, scope, kinds):
    assert [(o.kind, o.service, o.real) for o in ipvs.plan(observed, desired, scope=scope)] == kinds


@pytest.mark.skipif(not ipvs.available(), reason="this kernel has no IPVS (/proc/net/ip_vs missing); "
                    "the netlink part of IpvsSink runs only where it exists")
async def test_ipvs_kernel_roundtrip():  # pragma: no cover - needs IPVS
    sink = ipvs.IpvsSink("198.18.255.254")
    try:
        await sink.apply_full({"web": _app("web", 18001, ("w1", "198.18.1.1", 80))})
        assert sink._observed() == {ipvs.VService("198.18.255.254", 18001): frozenset({R1})}
        await sink.apply_full({})
        assert sink._observed() == {}
    finally:
        await sink.close()


def test_nft_render_changes_touches_only_the_difference():
    script = nft.render_changes("inet", "t", {"web": (["198.18.0.9"], ["198.18.0.2"]), "db": ([], [])})
    assert script.splitlines() == ["delete element inet t app_web { 198.18.0.2 }",
                                   "add element inet t app_web { 198.18.0.9 }"]
    assert nft.render_changes("inet", "t", {"db": ([], [])}) == ""


@pytest.mark.parametrize("ip,kept", [
    ("198.18.0.2", True), ("0.0.0.0", True), ("255.255.255.255", True),
    ("198.18.0.02", False), ("198.18.0", False), ("198.18.0.2.1", False), ("256.1.1.1", False),
    ("198.18.0.2 ", False), ("198.18.0.2\n", False), ("198.18.0.2\x00", False), ("0x1.2.3.4", False),
    ("::1", False), ("::ffff:198.18.0.2", False), ("198.18.0.0/24", False), ("", False),
], ids=lambda v: repr(v) if isinstance(v, str) else str(v))
def test_nft_keeps_only_ipv4_addresses_in_their_one_spelling(ip, kept):
    assert nft._v4([ip]) == ([ip] if kept else [])
    if kept:
        assert hc.target(ip, 80) == f"{ip}:80"
    else:
        with pytest.raises(hc.CommandError):
            hc.target(ip, 80)


def test_nftnl_batch_is_begin_removals_additions_end():
    import struct
    from services.registry.sinks import nftnl
    data, answered = nftnl.batch("inet", "t", {"app_b": (["198.18.0.3"], []), "app_a": (["198.18.0.1"], ["198.18.0.2"]),
                                               "app_c": ([], [])}, seq=7)
    kinds, seqs, off = [], [], 0
    while off < len(data):
        length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
        kinds.append(kind & 0xff if kind >> 8 == nftnl.NFNL_SUBSYS_NFTABLES else kind)
        seqs.append(seq)
        off += length
    assert off == len(data) and answered == 3
    assert kinds == [nftnl.NFNL_MSG_BATCH_BEGIN, nftnl.NFT_MSG_DELSETELEM, nftnl.NFT_MSG_NEWSETELEM,
                     nftnl.NFT_MSG_NEWSETELEM, nftnl.NFNL_MSG_BATCH_END]   # app_a, then app_b; app_c has nothing
    assert seqs == [7, 8, 9, 10, 11]
    assert nftnl.batch("inet", "t", {"app_a": ([], [])})[1] == 0
