"""The registry's screen of IP reports: every field held to the form hostd gives it."""
from __future__ import annotations

import pytest

from libs import messages
from libs.ranges import Ranges
from services.registry import screen as s

RANGES = Ranges.parse("198.18.0.0/20,h2=198.19.9.0/24")


def rep(**kw: object) -> messages.IpReport:
    base = dict(instance="web-0123456789ab", app="web", host="h1", epoch=1, state="RUNNING", container_id="c0" * 32,
                ip="198.18.0.17", mac="02:42:c6:12:00:11", parent="ns1-h1", reason="", health="http /: status 200",
                at=1.7e9, lease_expires=1.7e9 + 120)
    base.update(kw)
    return messages.IpReport(**base)  # type: ignore[arg-type]


INJECTIONS = ["\n", "\r\n", " ", ";", "\t", "\x00", "/", "\u2028"]
TOKEN_FIELDS = ["instance", "app", "host", "container_id", "mac", "ip", "parent"]


@pytest.mark.parametrize(("report", "reason", "field"), [
    pytest.param(rep(), None, "", id="hostd-shaped"),
    pytest.param(rep(ip="", mac="", container_id="", parent="", state="FAILED", reason="exited with code 1"),
                 None, "", id="failure-without-interface"),
    pytest.param(rep(host="h2", ip="198.19.9.5"), None, "", id="per-host-range"),
    pytest.param(rep(ip="198.19.9.5"), s.OUT_OF_RANGE, "ip", id="another-hosts-range"),
    pytest.param(rep(ip="198.18.16.1"), s.OUT_OF_RANGE, "ip", id="just-outside"),
    pytest.param(rep(ip="198.18.0.0"), s.OUT_OF_RANGE, "ip", id="network-address"),
    pytest.param(rep(ip="198.18.15.255"), s.OUT_OF_RANGE, "ip", id="broadcast-address"),
    pytest.param(rep(ip="127.0.0.1"), s.OUT_OF_RANGE, "ip", id="loopback"),
    pytest.param(rep(ip="224.0.0.1"), s.OUT_OF_RANGE, "ip", id="multicast"),
    pytest.param(rep(ip="198.18.0.017"), s.BAD_ADDRESS, "ip", id="leading-zero"),
    pytest.param(rep(ip="198.18.0.17/20"), s.BAD_ADDRESS, "ip", id="cidr-not-address"),
    pytest.param(rep(ip="backend.example"), s.BAD_ADDRESS, "ip", id="a-name"),
    pytest.param(rep(mac="03:42:c6:12:00:11"), s.BAD_MAC, "mac", id="multicast-mac"),
    pytest.param(rep(mac="ff:ff:ff:ff:ff:ff"), s.BAD_MAC, "mac", id="broadcast-mac"),
    pytest.param(rep(mac="00:00:00:00:00:00"), s.BAD_MAC, "mac", id="zero-mac"),
    pytest.param(rep(mac="02:42:c6:12:00"), s.BAD_MAC, "mac", id="five-pairs"),
    pytest.param(rep(mac="02-42-c6-12-00-11"), s.BAD_MAC, "mac", id="dashes"),
    pytest.param(rep(container_id="-rf"), s.BAD_CONTAINER_ID, "container_id", id="container-id-an-option"),
    pytest.param(rep(container_id="c" * 129), s.BAD_CONTAINER_ID, "container_id", id="container-id-too-long"),
    pytest.param(rep(container_id="hollow-web-1"), None, "", id="hollow-host-container-id"),
    pytest.param(rep(instance="Web-1"), s.BAD_ID, "instance", id="upper-case-instance"),
    pytest.param(rep(app="web" * 30), s.BAD_ID, "app", id="app-too-long"),
    pytest.param(rep(reason="x" * 3000), s.BAD_TEXT, "reason", id="reason-too-long"),
    pytest.param(rep(epoch=-1), s.BAD_NUMBER, "epoch", id="negative-epoch"),
    pytest.param(rep(at=float("nan")), s.BAD_NUMBER, "at", id="nan-time"),
    pytest.param(rep(lease_expires=float("inf")), s.BAD_NUMBER, "lease_expires", id="infinite-lease"),
    *[pytest.param(rep(**{f: getattr(rep(), f) + inj}), "any", f, id=f"{f}-{inj.encode('unicode_escape').decode()}")
      for f in TOKEN_FIELDS for inj in INJECTIONS],
    *[pytest.param(rep(**{f: "status 500" + inj + "add server p1/x 198.18.0.99:1"}), s.BAD_TEXT, f,
                   id=f"{f}-{inj.encode('unicode_escape').decode()}") for f in ("reason", "health")
      for inj in ("\n", "\r", "\x00", "\u2028")],
])
def test_screen(report: messages.IpReport, reason: str | None, field: str) -> None:
    got = s.screen(report, RANGES)
    if reason is None:
        assert got is None
        return
    assert got is not None and got.field == field
    assert reason == "any" or got.reason == reason
    assert "\n" not in got.value and len(got.value) <= 80   # safe to log


def test_spaces_are_fine_in_free_text() -> None:
    assert s.screen(rep(reason="exited with code 137", health="command wget -q: exit 1"), RANGES) is None


def test_no_range_configured_checks_form_only() -> None:
    assert s.screen(rep(ip="203.0.113.9"), Ranges()) is None
    assert s.screen(rep(ip="127.0.0.1"), Ranges()).reason == s.OUT_OF_RANGE
    assert s.screen(rep(ip="169.254.1.1"), Ranges()).reason == s.OUT_OF_RANGE


@pytest.mark.parametrize("text", ["198.18.0.1/20", "h1=nope", "H 1=198.18.0.0/20", "198.18.0.0/33"])
def test_bad_ranges_are_refused_with_the_entry(text: str) -> None:
    with pytest.raises(ValueError, match="198.18|nope|H 1"):
        Ranges.parse(text)


@pytest.mark.parametrize("ip", [
    "198.18.0.17", "198.18.0.0", "198.18.15.255", "198.18.16.0", "198.19.9.5", "0.0.0.0", "0.1.2.3",
    "127.0.0.1", "169.254.0.1", "169.253.255.255", "224.0.0.1", "239.255.255.255", "240.0.0.1",
    "255.255.255.255", "223.255.255.254", "203.0.113.1", "198.18.0.017", "01.2.3.4", "1.2.3", "1.2.3.4.5",
    "256.1.1.1", "1.2.3.4 ", " 1.2.3.4", "1.2.3.4\n", "١.2.3.4", "::1", "fe80::1", "2001:db8::1",
    "2001:DB8::1", "::ffff:198.18.0.1", "198.18.0.1%eth0", "", "x",
])
@pytest.mark.parametrize("ranges", [
    pytest.param(RANGES, id="configured"),
    pytest.param(Ranges.parse("198.18.0.0/31,198.18.0.8/32,2001:db8::/64"), id="tiny-and-v6"),
    pytest.param(Ranges(), id="none"),
])
def test_v4_fast_path_judges_as_ipaddress_does(ip: str, ranges: Ranges) -> None:
    nets = ranges.of("h1")
    assert s._address(ip, nets, ranges.configured) == s._address_any(ip, nets, ranges.configured)
