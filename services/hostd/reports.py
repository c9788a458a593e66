"""Publishing IpReports to JetStream, de-duplicated by message id."""
from __future__ import annotations

import logging
from collections.abc import Callable

from nats.js import JetStreamContext

from libs import messages, retry, subjects
from services.hostd import metrics

log = logging.getLogger("noops.hostd.reports")


def msg_id(r: messages.IpReport) -> str:
    # The same fact reported twice (redelivered placement, re-adoption after a restart) gets the
    # same id, so JetStream drops the copy within its duplicate window.
    # A renewed DHCP lease is a new fact about the same state: its expiry is part of the id.
    # Health news is a transition, and the same verdict may come back later: its time is in the id.
    lease = f":{int(r.lease_expires)}" if r.lease_expires else ""
    news = f":health:{str(r.healthy).lower()}:{int(r.at * 1000)}" if r.health else ""
    return f"report:{r.instance}:{r.epoch}:{r.state}:{r.container_id}{lease}{news}"


class Reporter:
    def __init__(self, js: JetStreamContext, host: str, clock: Callable[[], float], *,
                 attempts: int = 3, policy: retry.Policy = retry.Policy(base_s=0.2, cap_s=1.0)) -> None:
        self._js = js
        self._host = host
        self._clock = clock
        self._subject = subjects.report(host)
        self._attempts = attempts
        self._policy = policy

    async def send(self, *, instance: str, app: str, epoch: int, state: messages.InstanceState,
                   container_id: str = "", ip: str = "", reason: str = "", mac: str = "", parent: str = "",
                   lease_expires: float = 0.0, healthy: bool | None = None, health: str = "") -> messages.IpReport:
        """Publish and wait for JetStream's ack; raise the last error after a few short retries."""
        report = messages.IpReport(instance=instance, app=app, host=self._host, epoch=epoch, state=state,
                                   container_id=container_id, ip=ip, reason=reason, at=self._clock(),
                                   mac=mac, parent=parent, lease_expires=lease_expires, healthy=healthy,
                                   health=health)
        data = messages.encode(report)
        headers = {"Nats-Msg-Id": msg_id(report)}
        for attempt in range(1, self._attempts + 1):
            try:
                await self._js.publish(self._subject, data, headers=headers)
                break
            except Exception as exc:  # nats raises several unrelated types for "not now"
                if attempt == self._attempts:
                    raise
                log.warning("report publish failed; retrying", extra={
                    "instance": instance, "state": state, "error": str(exc) or type(exc).__name__})
                await self._policy.sleep(attempt)
        metrics.REPORTS.labels(state).inc()
        log.info("reported", extra={"instance": instance, "epoch": epoch, "state": state,
                                    "container_id": container_id[:12], "ip": ip, "reason": reason,
                                    **({"healthy": healthy, "health": health} if health else {})})
        return report
