"""The kernel-filtered link dump (services/hostd/linkdump.py) against iproute2 in a namespace of
the test's own: the same macvlans, with their parents, and nothing of another kind."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from devtools import infra


def _ip(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def ns():
    name = f"nold{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_the_macvlans_of_a_namespace_and_their_parents(ns):
    _ip(ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
    for k in range(30):                      # links of another kind, which the dump must leave out
        _ip(ns, "link", "add", f"br{k}", "type", "bridge")
    for name, parent in (("nxa", "p0"), ("nxb", "p0"), ("nxc", "p1")):
        _ip(ns, "link", "add", name, "link", parent, "type", "macvlan", "mode", "bridge")
    index = {link["ifname"]: link["ifindex"] for link in json.loads(_ip(ns, "-j", "link", "show"))}
    expected = sorted((link["ifname"], link["ifindex"], index[link["link"]])
                      for link in json.loads(_ip(ns, "-j", "-d", "link", "show", "type", "macvlan")))
    assert len(expected) == 3
    got = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c",
         "import json; from services.hostd.linkdump import links_of_kind; "
         "print(json.dumps([[l.name, l.index, l.parent] for l in links_of_kind('macvlan')]))"],
        check=True, capture_output=True, text=True, cwd=infra.REPO).stdout
    assert sorted(tuple(x) for x in json.loads(got)) == expected
