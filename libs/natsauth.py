"""Who may publish and subscribe what on NATS: one identity per service and per host.

The registry believes a report only if the task log places the instance on the reporting host,
and it learns the reporting host from the *subject*.  That is worth something only if nobody but
hostd ``h1`` can publish on ``noops.report.h1``: NATS enforces it, with these permissions.

    identity        publishes                                   subscribes
    gateway         noops.deploy.*                              noops.endpoints.*
                    ephemeral consumers of EVENTS, ENDPOINTS    (/v1/events, /v2/events: one per client)
    placer          noops.place.*                               noops.heartbeat.*
    registry        noops.endpoints.*  noops.deploy.*           noops.endpoints.*
                    noops.instance.* noops.deployment.* noops.host.* (change events, written by triggers)
                    (stream msg get: dead letters)              $JS.EVENT.ADVISORY.CONSUMER.{MAX_DELIVERIES,MSG_TERMINATED}.>
    reconciler      noops.inventory.* noops.sweep.* (requests)  noops.reconcile.now
                    noops.sinks.observe noops.sinks.repair (requests)
                    noops.deploy.*
    registry        (answers noops.sinks.observe / .repair)     noops.sinks.observe noops.sinks.repair
    gateway         noops.reconcile.now  noops.usage.* (requests)
    hostd-<host>    noops.report.<host>  noops.heartbeat.<host>  noops.inventory.<host> noops.sweep.<host>
                                                                noops.usage.<host> (replies only)
                    its own placements consumer, pinned to noops.place.<host>
    admin           everything (operators' tools, the test suite)

Every identity also gets what its JetStream use needs — and no more: the trusted services may
declare the streams; each consumer's owner may create (pinned to the consumer's filter where the
filter names one host), read, pull and ack *its* consumer.  Replies come to an inbox private to
the identity (``_INBOX_<user>.>``, set with ``inbox_prefix``), so nobody reads another's replies.

``server_config`` renders the ``authorization`` block of a nats-server configuration; the
development tooling (devtools/natsconf.py) writes it with generated passwords.  Pure: no I/O.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from libs import subjects

ADMIN = "admin"
SERVICES = ("gateway", "placer", "registry", "reconciler")
_JS_API = "$JS.API"


@dataclass(frozen=True)
class Identity:
    user: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False  # may answer requests sent to it (inventory), nothing else

    def permissions(self) -> dict[str, object]:
        out: dict[str, object] = {"publish": {"allow": list(self.publish)},
                                  "subscribe": {"allow": list(self.subscribe)}}
        if self.allow_responses:
            out["allow_responses"] = True
        return out


def inbox_prefix(user: str) -> str:
    """Where an identity's replies arrive (request/reply, JetStream acks of its publishes)."""
    return f"_INBOX_{user}"


def hostd_user(host: str) -> str:
    return f"hostd-{host}"


def _streams_admin() -> list[str]:
    """Declare and inspect the streams (``bus.ensure_streams``)."""
    return [f"{_JS_API}.STREAM.{op}.{s.name}" for s in subjects.STREAMS for op in ("CREATE", "UPDATE", "INFO")]


def _stream_msg_get() -> list[str]:
    """Read one stored message by sequence (a dead letter's payload)."""
    return [subjects.stream_msg_get(s.name, _JS_API) for s in subjects.STREAMS]


def event_readers() -> list[str]:
    """Create, pull from and delete ephemeral consumers of the streams /v1/events and /v2/events
    replay (one per client, no acks: AckPolicy none)."""
    out = []
    for s in (subjects.EVENTS, subjects.ENDPOINTS):
        out += [f"{_JS_API}.CONSUMER.CREATE.{s.name}", f"{_JS_API}.CONSUMER.MSG.NEXT.{s.name}.*",
                f"{_JS_API}.CONSUMER.DELETE.{s.name}.*"]
    return out


def consumer_permissions(consumer: subjects.Consumer) -> list[str]:
    """Create, inspect, pull from and acknowledge one durable consumer."""
    stream, name = consumer.stream.name, consumer.durable
    if consumer.pinned:
        # The filter is part of the API subject, so this identity cannot create a consumer of
        # the same name that reads other subjects (another host's placements).
        create = [f"{_JS_API}.CONSUMER.CREATE.{stream}.{name}.{consumer.filter_subject}"]
    else:
        create = [f"{_JS_API}.CONSUMER.DURABLE.CREATE.{stream}.{name}",
                  f"{_JS_API}.CONSUMER.CREATE.{stream}.{name}.>"]
    return [*create, f"{_JS_API}.CONSUMER.INFO.{stream}.{name}", f"{_JS_API}.CONSUMER.MSG.NEXT.{stream}.{name}",
            f"$JS.ACK.{stream}.{name}.>"]


def service(name: str) -> Identity:
    """The identity of one of the central services."""
    inbox = f"{inbox_prefix(name)}.>"
    if name == "gateway":
        return Identity(name, (subjects.DEPLOY_ALL, subjects.RECONCILE_NOW, subjects.USAGE_ALL, *_streams_admin(),
                               *event_readers()),
                        (subjects.ENDPOINTS_ALL, inbox))
    if name == "placer":
        return Identity(name, (subjects.PLACE_ALL, *_streams_admin(),
                               *consumer_permissions(subjects.PLACER)),
                        (subjects.HEARTBEAT_ALL, inbox))
    if name == "registry":
        # The registry also records dead letters of every consumer (libs/deadletters.py): it hears
        # the server's advisories and reads the message they name back from its stream.
        return Identity(name, (subjects.ENDPOINTS_ALL, subjects.DEPLOY_ALL, *subjects.EVENTS_ALL, *_streams_admin(),
                               *consumer_permissions(subjects.REGISTRY), *_stream_msg_get()),
                        (subjects.ENDPOINTS_ALL, *subjects.DEAD_LETTER_ADVISORIES, subjects.SINKS_OBSERVE,
                         subjects.SINKS_REPAIR, inbox), allow_responses=True)
    if name == "reconciler":
        return Identity(name, (subjects.INVENTORY_ALL, subjects.SWEEP_ALL, subjects.SINKS_OBSERVE,
                               subjects.SINKS_REPAIR, subjects.DEPLOY_ALL, *_streams_admin()),
                        (subjects.RECONCILE_NOW, inbox))
    raise ValueError(f"unknown service {name!r} (one of {', '.join(SERVICES)})")


def hostd(host: str) -> Identity:
    """A host's agent: its own reports, heartbeats, placements and inventory, sweep and usage requests only."""
    user = hostd_user(host)
    return Identity(user,
                    (subjects.report(host), subjects.heartbeat(host),
                     *consumer_permissions(subjects.hostd_consumer(host))),
                    (subjects.inventory(host), subjects.sweep(host), subjects.usage(host), f"{inbox_prefix(user)}.>"),
                    allow_responses=True)


def admin() -> Identity:
    return Identity(ADMIN, (">",), (">",))


def identities(hosts: Iterable[str]) -> list[Identity]:
    return [admin(), *(service(s) for s in SERVICES), *(hostd(h) for h in sorted(set(hosts)))]


def server_config(idents: Iterable[Identity], passwords: Mapping[str, str]) -> str:
    """The ``authorization`` block for nats-server: each identity with its password and permissions.

    Values are written as JSON strings, which the NATS configuration format reads as quoted strings
    (subjects such as ``$JS.API...`` would otherwise be taken for variable references)."""
    lines = ["authorization {", "  users = ["]
    for ident in idents:
        entry = {"user": ident.user, "password": passwords[ident.user], "permissions": ident.permissions()}
        lines.append("    " + json.dumps(entry))
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


# Which service's outbox relay publishes which rows (libs/outbox.py), whoever wrote them: one owner
# per subject keeps a subject's messages in order.  Endpoint announcements are written by the
# registry, the placer (host DOWN) and the reconciler (containers gone), published by the registry;
# so are the change events, which PostgreSQL writes wherever the change is made (migration 0015).
_RELAYS = {
    "gateway": (subjects.DEPLOY_ALL,),
    "placer": (subjects.PLACE_ALL,),
    "registry": (subjects.ENDPOINTS_ALL, subjects.DEPLOY_ALL, *subjects.EVENTS_ALL),
    "reconciler": (subjects.DEPLOY_ALL,),
}


def relay_subjects(name: str) -> tuple[str, ...]:
    """The outbox rows this service's relay publishes (always within what it may publish)."""
    return _RELAYS[name]


def relay_owners(kind: str) -> tuple[str, ...]:
    """The services whose relay publishes outbox rows of this kind (``noops.<kind>.*``), in the
    order of the table above: the first is the one that answers a notification of rows written by
    a service that does not publish them itself (libs/outbox.py)."""
    return tuple(name for name, patterns in _RELAYS.items()
                 if any(p.split(".")[1:2] == [kind] for p in patterns))
