"""Every NATS subject, JetStream stream and consumer noops uses: the one home for names.

Flow (arrows are subjects):

    gateway --noops.deploy.<app>--> placer           (JetStream DEPLOY, work queue)
    placer  --noops.place.<host>--> hostd <host>     (JetStream PLACEMENTS, one consumer per host)
    hostd   --noops.report.<host>--> registry        (JetStream REPORTS, work queue)
    registry --noops.endpoints.<app>--> anyone       (JetStream ENDPOINTS, kept 1 day)
    task log --noops.instance.<app>-->   anyone       (JetStream EVENTS: change events, docs/events.md;
             --noops.deployment.<app>-->              written by PostgreSQL triggers into the outbox,
             --noops.host.<host>-->                   migration 0015, published by the registry's relay)
    hostd   --noops.heartbeat.<host>--> placer       (core NATS, lossy by design: the next one follows)
    reconciler --noops.inventory.<host>--> hostd     (core NATS request/reply)
    reconciler --noops.sweep.<host>--> hostd         (core NATS request/reply: remove orphans, leaks)
    gateway --noops.usage.<host>--> hostd            (core NATS request/reply: CPU and memory per instance)
    reconciler --noops.sinks.observe--> registry     (core NATS request/reply: what each sink holds)
    reconciler --noops.sinks.repair--> registry      (core NATS request/reply: re-converge these apps)
    gateway --noops.reconcile.now--> reconciler      (core NATS: run a round now)

Who may publish and subscribe to which of these is in libs/natsauth.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig

ROOT = "noops"
# App and host ids become subject tokens, so they are restricted to this alphabet.
MAX_TOKEN = 63
TOKEN_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# An instance id is never a subject token, but it is its app's id, "-" and 12 hex digits: bounded
# the same way (the alphabet, at most 63 + 13 characters).
MAX_INSTANCE_ID = MAX_TOKEN + 13
INSTANCE_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,74}[a-z0-9])?$")


def _token(value: str, what: str) -> str:
    if not TOKEN_RE.fullmatch(value):  # match() would let a trailing newline through ($)
        raise ValueError(f"{what} {value!r} is not a valid id (lowercase letters, digits and '-', at most 63)")
    return value


def deploy(app: str) -> str:
    return f"{ROOT}.deploy.{_token(app, 'app')}"


def place(host: str) -> str:
    return f"{ROOT}.place.{_token(host, 'host')}"


def report(host: str) -> str:
    return f"{ROOT}.report.{_token(host, 'host')}"


def heartbeat(host: str) -> str:
    return f"{ROOT}.heartbeat.{_token(host, 'host')}"


def inventory(host: str) -> str:
    return f"{ROOT}.inventory.{_token(host, 'host')}"


def endpoints(app: str) -> str:
    return f"{ROOT}.endpoints.{_token(app, 'app')}"


def instance_events(app: str) -> str:
    """Instance changes of one app (messages.InstanceEvents).  The outbox rows are written by
    migration 0015's triggers, which build the same subject."""
    return f"{ROOT}.instance.{_token(app, 'app')}"


def deployment_events(app: str) -> str:
    return f"{ROOT}.deployment.{_token(app, 'app')}"


def host_events(host: str) -> str:
    return f"{ROOT}.host.{_token(host, 'host')}"


def event_kind(subject: str) -> str:
    """The kind of a change-event subject: noops.instance.<app> -> instance."""
    return subject.split(".")[1]


def sweep(host: str) -> str:
    return f"{ROOT}.sweep.{_token(host, 'host')}"


def usage(host: str) -> str:
    return f"{ROOT}.usage.{_token(host, 'host')}"


DEPLOY_ALL = f"{ROOT}.deploy.*"
PLACE_ALL = f"{ROOT}.place.*"
REPORT_ALL = f"{ROOT}.report.*"
HEARTBEAT_ALL = f"{ROOT}.heartbeat.*"
INVENTORY_ALL = f"{ROOT}.inventory.*"
ENDPOINTS_ALL = f"{ROOT}.endpoints.*"
SWEEP_ALL = f"{ROOT}.sweep.*"
USAGE_ALL = f"{ROOT}.usage.*"
INSTANCE_EVENTS_ALL = f"{ROOT}.instance.*"
DEPLOYMENT_EVENTS_ALL = f"{ROOT}.deployment.*"
HOST_EVENTS_ALL = f"{ROOT}.host.*"
EVENTS_ALL = (INSTANCE_EVENTS_ALL, DEPLOYMENT_EVENTS_ALL, HOST_EVENTS_ALL)
SINKS_OBSERVE = f"{ROOT}.sinks.observe"
SINKS_REPAIR = f"{ROOT}.sinks.repair"
RECONCILE_NOW = f"{ROOT}.reconcile.now"


# JetStream's own advisories (published by the server): a message delivered max_deliver times
# without an ack, and a message a consumer terminated.  Tokens after the prefix: <stream>.<consumer>.
ADVISORY_MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"
ADVISORY_MSG_TERMINATED = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>"
DEAD_LETTER_ADVISORIES = (ADVISORY_MAX_DELIVERIES, ADVISORY_MSG_TERMINATED)


def stream_msg_get(stream: str, api_prefix: str = "$JS.API") -> str:
    """The API subject that reads one stored message of a stream by sequence (non-direct get)."""
    return f"{api_prefix}.STREAM.MSG.GET.{stream}"


def host_of(subject: str) -> str:
    """The host token of a per-host subject (report, heartbeat...)."""
    return subject.rsplit(".", 1)[-1]


def app_of(subject: str) -> str:
    """The app token of a per-app subject (deploy, endpoints...)."""
    return subject.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Stream:
    name: str
    subjects: tuple[str, ...]
    retention: RetentionPolicy
    max_age_s: float = 0.0
    max_msgs: int = 0             # 0: no bound (limits retention drops the oldest past a bound)
    max_bytes: int = 0

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            retention=self.retention,
            storage=StorageType.FILE,
            max_age=self.max_age_s or None,
            max_msgs=self.max_msgs or None,
            max_bytes=self.max_bytes or None,
            # Publishers set Nats-Msg-Id; a re-publish within this window (an outbox relay
            # that crashed after publishing but before deleting its row) is dropped by the server.
            duplicate_window=600.0,
        )


DEPLOY = Stream("NOOPS_DEPLOY", (DEPLOY_ALL,), RetentionPolicy.WORK_QUEUE)
PLACEMENTS = Stream("NOOPS_PLACEMENTS", (PLACE_ALL,), RetentionPolicy.WORK_QUEUE)
REPORTS = Stream("NOOPS_REPORTS", (REPORT_ALL,), RetentionPolicy.WORK_QUEUE)
ENDPOINTS = Stream("NOOPS_ENDPOINTS", (ENDPOINTS_ALL,), RetentionPolicy.LIMITS, max_age_s=86400.0)
# Change events (docs/events.md): a day of history, and at most this many messages and bytes,
# the oldest dropped first.  A message holds at most 64 changes of one app (~60 KB at worst).
EVENTS = Stream("NOOPS_EVENTS", EVENTS_ALL, RetentionPolicy.LIMITS, max_age_s=86400.0,
                max_msgs=1_000_000, max_bytes=512 * 1024 * 1024)
STREAMS = (DEPLOY, PLACEMENTS, REPORTS, ENDPOINTS, EVENTS)


@dataclass(frozen=True)
class Consumer:
    stream: Stream
    durable: str
    filter_subject: str
    ack_wait_s: float = 30.0

    @property
    def pinned(self) -> bool:
        """A filter without wildcards (one host's placements) is created through the API subject
        that names it, so NATS permissions can pin the consumer to it (libs/natsauth.py)."""
        return "*" not in self.filter_subject and ">" not in self.filter_subject

    def config(self, *, max_deliver: int = 10) -> ConsumerConfig:
        """``max_deliver`` (NOOPS_MAX_DELIVER): after that many deliveries the server gives up on a
        message (a MAX_DELIVERIES advisory, recorded as a dead letter); pull_loop terminates one
        whose handler kept raising before that."""
        return ConsumerConfig(
            name=self.durable if self.pinned else None,
            durable_name=self.durable,
            filter_subject=self.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_ack_pending=10000,
            max_deliver=max_deliver,
        )


PLACER = Consumer(DEPLOY, "placer", DEPLOY_ALL)
REGISTRY = Consumer(REPORTS, "registry", REPORT_ALL)


def hostd_consumer(host: str) -> Consumer:
    # Short: a hostd killed mid-batch (an upgrade, a crash) gets the placements it had fetched
    # back this soon after it restarts.  A slow batch (containers created under load) is kept
    # from a second delivery by pull_loop's in-progress beats, not by a long ack wait.
    return Consumer(PLACEMENTS, f"hostd-{_token(host, 'host')}", place(host), ack_wait_s=15.0)
