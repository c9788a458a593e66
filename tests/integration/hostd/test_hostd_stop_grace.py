"""How long a stop takes, on the real engine: a container that ignores SIGTERM gets its app's kill
grace (kept in its label, so a stop without the spec uses it too), not hostd's default; with the
engine's init as PID 1 (the default) the base image's httpd stops at once, and without it that
httpd ignores SIGTERM as PID 1 and waits for SIGKILL."""
from __future__ import annotations

import asyncio
import time

import msgspec

from tests.integration.hostd.hostd_harness import (  # noqa: F401  (fixtures)
    HTTPD, HostdUnderTest, docker, hostd, spec)
from tests.support.wait import eventually

HOST_DEFAULT_S = "20"   # hostd's NOOPS_STOP_TIMEOUT_S here: a stop that waits for it fails the test
IGNORES_TERM = ["sh", "-c", "trap '' TERM; exec " + " ".join(HTTPD)]   # SIG_IGN survives the exec


async def stop_seconds(hostd: HostdUnderTest, instance: str) -> float:
    """From the stop placement (which carries no grace: as a stale copy's or a sweep's) to KILLED."""
    await hostd.report(instance, "RUNNING")
    after = len(hostd.reports)
    t0 = time.monotonic()
    await hostd.place(instance, action="stop", epoch=2)
    await hostd.report(instance, "KILLED", after=after, timeout=40)
    took = time.monotonic() - t0
    assert not await hostd.containers(instance)
    return took


async def test_a_container_that_ignores_sigterm_gets_its_apps_grace(hostd: HostdUnderTest) -> None:
    await hostd.start(NOOPS_STOP_TIMEOUT_S=HOST_DEFAULT_S)
    await hostd.place("web-1", container=msgspec.structs.replace(spec(cmd=IGNORES_TERM), stop_timeout_s=2))
    took = await stop_seconds(hostd, "web-1")
    assert 1.9 <= took < 8, f"stopped after {took:.1f}s; the app's grace is 2 s, hostd's default {HOST_DEFAULT_S} s"


async def test_with_the_engines_init_the_base_httpd_stops_at_once(hostd: HostdUnderTest) -> None:
    await hostd.start(NOOPS_STOP_TIMEOUT_S=HOST_DEFAULT_S)
    await hostd.place("web-1")
    await hostd.report("web-1", "RUNNING")
    [c] = await hostd.containers("web-1")
    assert (await c.show())["HostConfig"]["Init"] is True
    took = await stop_seconds(hostd, "web-1")
    assert took < 3, f"httpd under tini took {took:.1f}s to stop"


async def test_without_init_the_base_httpd_as_pid_1_waits_for_sigkill(hostd: HostdUnderTest) -> None:
    await hostd.start(NOOPS_STOP_TIMEOUT_S=HOST_DEFAULT_S, NOOPS_HOSTD_INIT="false")
    await hostd.place("web-1", container=msgspec.structs.replace(spec(), stop_timeout_s=2))
    took = await stop_seconds(hostd, "web-1")
    assert 1.9 <= took < 8, f"stopped after {took:.1f}s; expected the 2 s grace (httpd as PID 1 ignores SIGTERM)"


# Notes a SIGTERM (forwarded by the engine's init) and carries on, so its stop lasts the whole grace.
NOTES_TERM = ["sh", "-c", "trap 'touch /tmp/term' TERM; while :; do sleep 0.2; done"]


async def test_stops_have_slots_of_their_own(hostd: HostdUnderTest) -> None:
    """With one slot for starts, three stops still run at once (NOOPS_HOSTD_STOP_CONCURRENCY):
    all three containers have their SIGTERM while none of the stops is over."""
    await hostd.start(NOOPS_HOSTD_CONCURRENCY="1", NOOPS_HOSTD_STOP_CONCURRENCY="3")
    names = ["web-1", "web-2", "web-3"]
    for name in names:
        await hostd.place(name, container=msgspec.structs.replace(spec(cmd=NOTES_TERM), stop_timeout_s=30))
    for name in names:
        await hostd.report(name, "RUNNING")
    for name in names:
        await hostd.place(name, action="stop", epoch=2)

    async def all_signalled() -> bool:
        for name in names:
            [c] = await hostd.containers(name)
            if (await c.show())["State"]["Status"] != "running":
                raise AssertionError(f"{name} ended before all three had their SIGTERM")
            probe = await asyncio.create_subprocess_exec("docker", "exec", c.id, "test", "-f", "/tmp/term")
            if await probe.wait() != 0:
                return False
        return True
    assert await eventually(all_signalled, timeout=20, what="a SIGTERM in each of the three containers")
    assert not [r for r in hostd.reports if r.state == "KILLED"]
