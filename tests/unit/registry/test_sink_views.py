"""Pure conversions of read-back sink state into the reconciler's views, and which repairs are taken."""
from __future__ import annotations

import json

import pytest

from libs import messages
from services.registry import sinkwatch
from services.registry.sinks import haproxy_config as hc
from services.registry.sinks import ipvs, nft

ON, MAINT, DRAIN, INHERITED_MAINT = 0, 0x01, 0x08, 0x02

# `show servers state` lines: be_id be_name srv_id srv_name srv_addr op admin ... (srv_port is field 18)
STATE_HEADER = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...\n"


def state_line(backend: str, name: str, addr: str, admin: int, port: int) -> str:
    return f"3 {backend} 1 {name} {addr} 2 {admin} 1 1 10 1 0 2 0 0 0 0 - {port} - 0 0 - - 0"


@pytest.mark.parametrize("backends,servers,expected", [
    ({}, {}, {}),
    ({9}, {}, {"9": []}),
    ({9}, {9: {"b": hc.Server("198.18.0.2", 80, ON), "a": hc.Server("198.18.0.1", 81, ON)}},
     {"9": ["a 198.18.0.1:81", "b 198.18.0.2:80"]}),
    ({9}, {9: {"a": hc.Server("198.18.0.1", 80, MAINT)}}, {"9": []}),
    ({9}, {9: {"a": hc.Server("198.18.0.1", 80, DRAIN)}}, {"9": []}),
    ({9}, {9: {"a": hc.Server("198.18.0.1", 80, INHERITED_MAINT)}}, {"9": []}),
    ({10, 9}, {9: {"x": hc.Server("198.18.7.7", 80, ON)}}, {"9": ["x 198.18.7.7:80"], "10": []}),
    (set(), {9: {"a": hc.Server("198.18.0.1", 80, ON)}}, {"9": ["a 198.18.0.1:80"]}),
], ids=["nothing", "empty-backend", "sorted-by-name", "maint-left-out", "drain-left-out",
        "inherited-maint-left-out", "hand-added-shown-spare-empty", "servers-without-backend-line"])
def test_haproxy_view(backends, servers, expected):
    got = hc.view_groups(backends, servers)
    assert got == expected
    assert list(got) == sorted(got, key=int)


def test_haproxy_view_from_runtime_answers():
    text = STATE_HEADER + "\n".join([state_line("p9", "web-1", "198.18.0.1", ON, 8080),
                                     state_line("p9", "web-2", "198.18.0.2", MAINT, 8080),
                                     state_line("stats", "s", "198.18.0.3", ON, 1)]) + "\n"
    backends = hc.parse_backends("# name\np9\np10\nstats\n")
    assert hc.view_groups(backends, hc.parse_servers_state(text)) == {"9": ["web-1 198.18.0.1:8080"], "10": []}


@pytest.mark.parametrize("elem,expected", [
    ("198.18.0.1", "198.18.0.1"),
    ({"prefix": {"addr": "198.18.1.0", "len": 24}}, "198.18.1.0/24"),
    ({"range": ["198.18.2.1", "198.18.2.9"]}, "198.18.2.1-198.18.2.9"),
    ({"elem": {"val": "198.18.0.5", "timeout": 30}}, "198.18.0.5"),
    ({"elem": {"val": {"prefix": {"addr": "198.18.4.0", "len": 30}}, "comment": "x"}}, "198.18.4.0/30"),
    ({"concat": ["198.18.0.1", 80]}, '{"concat": ["198.18.0.1", 80]}'),
], ids=["address", "prefix", "range", "with-options", "prefix-with-options", "unknown-form-shown-as-json"])
def test_nft_element_text(elem, expected):
    assert nft.element_text(elem) == expected


@pytest.mark.parametrize("listing,expected", [
    ({"nftables": []}, {}),
    ({"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "inet", "name": "noops"}}]}, {}),
    ({"nftables": [{"set": {"name": "app_web", "elem": ["198.18.0.9", "198.18.0.1"]}},
                   {"set": {"name": "app_api"}}]},
     {"api": [], "web": ["198.18.0.1", "198.18.0.9"]}),
    ({"nftables": [{"set": {"name": "other", "elem": ["198.18.0.1"]}},
                   {"chain": {"name": "app_x"}}]}, {}),
    ({"nftables": "garbage"}, {}),
], ids=["empty", "table-without-sets", "sets-sorted-empty-kept", "foreign-set-and-chain-ignored", "malformed"])
def test_nft_view(listing, expected):
    got = nft.view_groups(json.loads(json.dumps(listing)))
    assert got == expected
    assert list(got) == sorted(got)


@pytest.mark.parametrize("observed,expected", [
    ({}, {}),
    ({ipvs.VService("198.18.0.100", 30001): frozenset({ipvs.Real("198.18.1.2", 80), ipvs.Real("198.18.1.1", 8080)})},
     {"198.18.0.100:30001": ["198.18.1.1:8080", "198.18.1.2:80"]}),
    ({ipvs.VService("198.18.0.100", 30002): frozenset()}, {"198.18.0.100:30002": []}),
], ids=["empty", "reals-sorted", "service-without-reals"])
def test_ipvs_view(observed, expected):
    assert ipvs.view_groups(observed) == expected


@pytest.mark.parametrize("repairs,expected,refused", [
    ({}, {}, []),
    ({"haproxy": ["web", "api", "web"]}, {"haproxy": ["api", "web"]}, []),
    ({"bogus": ["web"], "nft": ["web"]}, {"nft": ["web"]}, ["sink 'bogus'"]),
    ({"nft": ["web", "Web", "a\nadd table x", ""]}, {"nft": ["web"]}, ["app ''", "app 'Web'", "app 'a\\nadd table x'"]),
    ({"nft": []}, {}, []),
    ({"ipvs": ["web"]}, {}, ["sink 'ipvs'"]),
], ids=["nothing", "deduplicated-sorted", "unknown-sink-refused", "malformed-app-refused", "no-apps",
        "disabled-sink-refused"])
def test_repair_accepted(repairs, expected, refused):
    assert sinkwatch.accepted(messages.SinksRepair(repairs=repairs), {"haproxy", "nft"}) == (expected, refused)
