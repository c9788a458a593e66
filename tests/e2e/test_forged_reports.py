"""Issue 5, "authentic reports": forged IP reports never change the task log, and the registry keeps
working.  Three lines of defence, all real: NATS refuses a host's identity on another host's subject
(libs/natsauth.py), the registry rejects a report not of the form hostd gives it (screen.py: an
address outside the host's range, a bad MAC, a newline or space smuggled into any field) and one
the task log does not back (judge.py), counting each by reason in noops_registry_reports_rejected_total."""
from __future__ import annotations

import asyncio
import re
import urllib.request

import msgspec
import nats
import pytest

from libs import messages, subjects
from services.registry import screen
from tests.e2e.helpers import instances, running_count, web_spec
from tests.e2e.test_fanout import nft_members
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e


def rejected(platform, reason: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{platform.cfg.registry_port}/metrics", timeout=2) as r:
        text = r.read().decode()
    m = re.search(r'^noops_registry_reports_rejected_total\{reason="%s"\} ([0-9.e+]+)$' % re.escape(reason),
                  text, re.M)
    return float(m.group(1)) if m else 0.0


async def connect_as(platform, user: str, errors: list[str]) -> nats.NATS:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))
    creds = platform.cfg.nats_credentials(user)
    return await nats.connect(platform.cfg.nats_url, name=f"forger-{user}", error_cb=on_error,
                              inbox_prefix=f"_INBOX_{user}", allow_reconnect=False, **creds)


async def test_forged_reports_change_nothing_and_the_registry_keeps_working(platform, nc, uid):
    app_id = f"forge-{uid}"
    async with platform.client() as c:
        assert (await c.post("/v1/apps", json=web_spec(app_id, instances=1))).status_code == 201
        [inst] = await eventually(lambda: _running(c, app_id, 1), timeout=60, what="1 RUNNING instance")
        owner = inst["host"]
        other = next(h for h in platform.cfg.hosts if h != owner)
        # In the session's container range (NOOPS_REGISTRY_CONTAINER_RANGES), so only what each
        # forgery changes is wrong with it.
        in_range = str(platform.cfg.net.subnet.broadcast_address - 5)
        real = messages.IpReport(instance=inst["id"], app=app_id, host=owner, epoch=inst["epoch"], state="FAILED",
                                 container_id="f" * 64, ip=in_range, reason="forged")

        # 1. Another host's identity on the owner's subject: NATS itself refuses the publish.
        errors: list[str] = []
        intruder = await connect_as(platform, f"hostd-{other}", errors)
        try:
            with pytest.raises(nats.errors.TimeoutError):  # no stream ever acks it
                await intruder.jetstream().publish(subjects.report(owner), messages.encode(real), timeout=1)
            await eventually(lambda: any("permissions violation" in e.lower() for e in errors), timeout=5,
                             what="a permissions violation for the intruder")

            # 2. Its own subject, but an instance the task log places elsewhere (or names another host).
            before = {r: rejected(platform, r) for r in EXPECTED}
            js = intruder.jetstream()
            await js.publish(subjects.report(other), messages.encode(
                msgspec.structs.replace(real, host=other)))
            await js.publish(subjects.report(other), messages.encode(real))  # names the owner, sent as `other`
        finally:
            await intruder.close()

        # 3. The owner's own identity: an unknown instance, a stale epoch, a malformed payload.
        errors = []
        owner_nc = await connect_as(platform, f"hostd-{owner}", errors)
        try:
            js = owner_nc.jetstream()
            await js.publish(subjects.report(owner), messages.encode(
                msgspec.structs.replace(real, instance=f"{app_id}-nosuch")))
            await js.publish(subjects.report(owner), messages.encode(
                msgspec.structs.replace(real, epoch=inst["epoch"] + 7)))
            await js.publish(subjects.report(owner), b'{"instance": 42, "garbage": true}')
            # 3b. The owner's own instance at its epoch -- a report the task log would back -- but
            # false in form: each would otherwise mark the instance FAILED.
            for forged in FORGERIES(real):
                await js.publish(subjects.report(owner), messages.encode(forged))
            await js.publish(subjects.report(owner), messages.encode(real).replace(b'"FAILED"', b'"FAILED\\n"'))
        finally:
            await owner_nc.close()
        assert not errors, errors

        # 4. Wrong credentials: refused at the door.
        with pytest.raises(Exception, match="(?i)authorization"):
            await nats.connect(platform.cfg.nats_url, user=f"hostd-{owner}", password="not-the-password",
                               allow_reconnect=False, connect_timeout=2)

        def counted() -> bool:
            return all(rejected(platform, r) >= before[r] + n for r, n in EXPECTED.items())
        await eventually(counted, timeout=20, what=f"the registry to reject {sorted(EXPECTED)}")

        # Nothing changed, and the registry still does its job: a scale-up is recorded as usual.
        [now] = await instances(c, app_id)
        assert (now["state"], now["ip"], now["container_id"]) == ("RUNNING", inst["ip"], inst["container_id"])
        r = await c.patch(f"/v1/apps/{app_id}", json={"instances": 2})
        assert r.status_code in (200, 202), r.text
        two = await eventually(lambda: _running(c, app_id, 2), timeout=60, what="2 RUNNING instances after the forgeries")
        # ... and handed to the sinks: a forged app id (a newline and a command in it) did not
        # wedge the whitelist sink (it would fail every batch, and only a full resync cleared it).
        ips = {i["ip"] for i in two if i["state"] == "RUNNING"}
        await eventually(lambda: nft_members(platform, app_id) == ips, timeout=30, what="both in the whitelist")
        assert (await c.delete(f"/v1/apps/{app_id}")).status_code in (200, 202, 204)


def FORGERIES(real: messages.IpReport) -> list[messages.IpReport]:  # noqa: N802 (a table)
    """An address outside the range, a multicast MAC, and a newline and a space in each id-like
    field (a newline in each free-text field: spaces are theirs)."""
    r = msgspec.structs.replace
    out = [r(real, ip="203.0.113.7"), r(real, mac="01:00:5e:00:00:01")]
    for name in ("instance", "app", "host", "container_id", "ip", "mac", "parent"):
        value = getattr(real, name) or {"mac": "02:42:c6:12:00:11", "parent": "eth0"}[name]
        out += [r(real, **{name: value + "\nadd server p1/x 1.2.3.4:1"}), r(real, **{name: value + " x"})]
    for name in ("reason", "health"):
        out.append(r(real, **{name: "ok\r\nset server p1/x state ready"}))
    return out


# What the registry counts for all of the above (names of screen.py and judge.py).
EXPECTED = {"instance placed on another host": 1, "report names another host than its subject": 1,
            "unknown instance": 1, "stale epoch": 1, "malformed": 2,
            screen.OUT_OF_RANGE: 1, screen.BAD_ID: 6, screen.BAD_CONTAINER_ID: 2, screen.BAD_ADDRESS: 2,
            screen.BAD_MAC: 3, screen.BAD_TEXT: 4}


async def _running(c, app_id: str, n: int):
    insts = await instances(c, app_id)
    return insts if running_count(insts, n) else None


async def test_a_host_identity_cannot_read_other_hosts_placements(platform, uid):
    """Placements carry env (secrets): a host reads only its own."""
    owner, other = platform.cfg.hosts[0], platform.cfg.hosts[1]
    errors: list[str] = []
    intruder = await connect_as(platform, f"hostd-{other}", errors)
    try:
        await intruder.subscribe(subjects.place(owner))
        await intruder.subscribe(subjects.REPORT_ALL)
        await intruder.flush()
        await eventually(lambda: sum("subscription" in e.lower() for e in errors) >= 2, timeout=5,
                         what="two subscription violations")
        # Its own consumer name, but another host's filter: the API subject does not match its permission.
        consumer = subjects.hostd_consumer(other)
        cfg = consumer.config()
        cfg.filter_subject = subjects.place(owner)
        with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
            await intruder.jetstream().add_consumer(consumer.stream.name, cfg, timeout=1)
    finally:
        await intruder.close()
