"""Who may publish and subscribe what (libs/natsauth.py): the tables NATS enforces."""
from __future__ import annotations

import json

import pytest

from libs import natsauth, outbox, subjects


def _matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: `*` one token, `>` one or more trailing tokens."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def allowed(patterns: tuple[str, ...], subject: str) -> bool:
    return any(_matches(p, subject) for p in patterns)


H1 = natsauth.hostd("h1")


@pytest.mark.parametrize("subject, ok", [
    (subjects.report("h1"), True),
    (subjects.heartbeat("h1"), True),
    (subjects.report("h2"), False),
    (subjects.heartbeat("h2"), False),
    (subjects.place("h1"), False),          # placements come from the placer only
    (subjects.deploy("web"), False),
    (subjects.endpoints("web"), False),
    (subjects.usage("h1"), False),          # it answers usage requests, it asks none
    ("$JS.API.CONSUMER.CREATE.NOOPS_PLACEMENTS.hostd-h1.noops.place.h1", True),
    ("$JS.API.CONSUMER.CREATE.NOOPS_PLACEMENTS.hostd-h1.noops.place.h2", False),
    ("$JS.API.CONSUMER.DURABLE.CREATE.NOOPS_PLACEMENTS.hostd-h1", False),  # would not pin the filter
    ("$JS.API.CONSUMER.MSG.NEXT.NOOPS_PLACEMENTS.hostd-h1", True),
    ("$JS.API.CONSUMER.MSG.NEXT.NOOPS_PLACEMENTS.hostd-h2", False),
    ("$JS.API.STREAM.CREATE.NOOPS_REPORTS", False),
    ("$JS.API.STREAM.PURGE.NOOPS_REPORTS", False),
    ("$JS.ACK.NOOPS_PLACEMENTS.hostd-h1.1.2.3.4.5", True),
    ("$JS.ACK.NOOPS_PLACEMENTS.hostd-h2.1.2.3.4.5", False),
], ids=lambda v: str(v))
def test_a_host_publishes_only_its_own_subjects(subject: str, ok: bool) -> None:
    assert allowed(H1.publish, subject) is ok


@pytest.mark.parametrize("subject, ok", [
    (subjects.inventory("h1"), True), (subjects.inventory("h2"), False), (subjects.place("h1"), False),
    (subjects.usage("h1"), True), (subjects.usage("h2"), False), (subjects.USAGE_ALL, False),
    (subjects.report("h2"), False), ("_INBOX_hostd-h1.abc.1", True), ("_INBOX.abc", False),
    ("_INBOX_hostd-h2.abc", False)], ids=lambda v: str(v))
def test_a_host_subscribes_only_to_its_own_requests_and_inbox(subject: str, ok: bool) -> None:
    assert allowed(H1.subscribe, subject) is ok


@pytest.mark.parametrize("service, publishes, refused", [
    ("gateway", [subjects.deploy("web"), subjects.usage("h1"), subjects.usage("h2"), "$JS.API.CONSUMER.CREATE.NOOPS_EVENTS",
                 "$JS.API.CONSUMER.MSG.NEXT.NOOPS_EVENTS.abc", "$JS.API.CONSUMER.DELETE.NOOPS_ENDPOINTS.abc"],
     [subjects.place("h1"), subjects.report("h1"), subjects.instance_events("web"), subjects.host_events("h1"),
      "$JS.API.CONSUMER.DELETE.NOOPS_PLACEMENTS.hostd-h1", "$JS.API.CONSUMER.MSG.NEXT.NOOPS_DEPLOY.placer"]),
    ("placer", [subjects.place("h1"), "$JS.API.CONSUMER.MSG.NEXT.NOOPS_DEPLOY.placer"],
     [subjects.report("h1"), subjects.heartbeat("h1"), subjects.usage("h1"), "$JS.API.CONSUMER.MSG.NEXT.NOOPS_REPORTS.registry"]),
    ("registry", [subjects.endpoints("web"), subjects.deploy("web"), "$JS.ACK.NOOPS_REPORTS.registry.1.2.3.4.5",
                  subjects.instance_events("web"), subjects.deployment_events("web"), subjects.host_events("h1")],
     [subjects.report("h1"), subjects.place("h1")]),
    ("reconciler", [subjects.inventory("h1"), subjects.deploy("web")],
     [subjects.place("h1"), subjects.report("h1"), subjects.usage("h1")]),
], ids=["gateway", "placer", "registry", "reconciler"])
def test_services_have_what_they_need_and_no_more(service: str, publishes: list[str], refused: list[str]) -> None:
    ident = natsauth.service(service)
    assert all(allowed(ident.publish, s) for s in publishes)
    assert not any(allowed(ident.publish, s) for s in refused)
    assert all(allowed(ident.publish, f"$JS.API.STREAM.CREATE.{s.name}") for s in subjects.STREAMS)


def test_only_the_registry_records_dead_letters() -> None:
    """The registry hears the server's advisories about every consumer's dead letters and reads
    the messages they name back; no other identity (hostd least of all) may."""
    advisories = ["$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.NOOPS_PLACEMENTS.hostd-h1",
                  "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.NOOPS_DEPLOY.placer"]
    gets = [f"$JS.API.STREAM.MSG.GET.{s.name}" for s in subjects.STREAMS]
    registry = natsauth.service("registry")
    assert all(allowed(registry.subscribe, a) for a in advisories)
    assert all(allowed(registry.publish, g) for g in gets)
    assert not allowed(registry.publish, "$JS.API.STREAM.MSG.DELETE.NOOPS_REPORTS")
    assert not allowed(registry.subscribe, "$JS.EVENT.ADVISORY.STREAM.CREATED.NOOPS_REPORTS")
    for other in [*(natsauth.service(s) for s in natsauth.SERVICES if s != "registry"), H1]:
        assert not any(allowed(other.subscribe, a) for a in advisories)
        assert not any(allowed(other.publish, g) for g in gets)


def test_no_one_but_the_admin_may_publish_reports_of_any_host() -> None:
    others = [natsauth.service(s) for s in natsauth.SERVICES]
    assert not any(allowed(i.publish, subjects.report("h9")) for i in [*others, H1])
    assert allowed(natsauth.admin().publish, subjects.report("h9"))


def test_unknown_service_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown service 'billing'"):
        natsauth.service("billing")


def test_relays_take_only_rows_their_identity_may_publish() -> None:
    assert natsauth.relay_subjects("gateway") == (subjects.DEPLOY_ALL,)
    assert natsauth.relay_subjects("placer") == (subjects.PLACE_ALL,)
    for name in natsauth.SERVICES:  # a relay publishes only what its identity may
        assert set(natsauth.relay_subjects(name)) <= set(natsauth.service(name).publish)
    owners = [s for name in natsauth.SERVICES for s in natsauth.relay_subjects(name)]
    for ordered in (subjects.PLACE_ALL, subjects.ENDPOINTS_ALL, *subjects.EVENTS_ALL):  # one owner each: no race on order
        assert owners.count(ordered) == 1
    assert outbox.claim_kinds(["noops.deploy.*", "noops.place.>", "noops.deploy.*"]) == ["deploy", "place"]
    assert outbox.claim_kinds([">"]) is None
    for name in natsauth.SERVICES:
        outbox.claim_kinds(natsauth.relay_subjects(name))   # every relay's subjects have a kind
    with pytest.raises(ValueError):
        outbox.claim_kinds(["noops.*.x"])


def test_server_config_lists_every_identity_with_its_password() -> None:
    idents = natsauth.identities(["h2", "h1", "h1"])
    text = natsauth.server_config(idents, {i.user: f"pw-{i.user}" for i in idents})
    users = [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]
    assert [u["user"] for u in users] == ["admin", "gateway", "placer", "registry", "reconciler", "hostd-h1", "hostd-h2"]
    assert users[5]["password"] == "pw-hostd-h1" and users[5]["permissions"]["allow_responses"] is True


def test_only_the_gateway_asks_hosts_for_usage_and_only_the_host_hears_it() -> None:
    """The cluster map's CPU and memory columns: GET /v1/hosts/{host}/usage asks noops.usage.<host>."""
    askers = [s for s in natsauth.SERVICES if allowed(natsauth.service(s).publish, subjects.usage("h1"))]
    assert askers == ["gateway"]
    hearers = [i.user for i in natsauth.identities(["h1", "h2"]) if allowed(i.subscribe, subjects.usage("h1"))]
    assert hearers == ["admin", "hostd-h1"]
    assert H1.allow_responses
