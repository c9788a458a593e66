"""Health checks run by a real hostd against real containers (busybox httpd on the simulated
L2 network): HTTP, TCP and command checks, transitions reported on the report subject, the kill
past the failure limit, and checks resumed after a hostd restart."""
from __future__ import annotations

import asyncio

import msgspec

from libs import messages
from tests.integration.hostd.hostd_harness import (  # noqa: F401  (fixtures)
    HostdUnderTest, docker, hostd, spec)
from tests.support.wait import eventually


def check(protocol: str, **kw: object) -> messages.HealthCheckSpec:
    base: dict[str, object] = {"name": f"{protocol.lower()} check", "port": 8080, "grace_period_s": 0,
                               "interval_s": 0.3, "timeout_s": 2, "max_consecutive_failures": 3}
    return messages.HealthCheckSpec(protocol=protocol, **{**base, **kw})  # type: ignore[arg-type]


def with_checks(*checks: messages.HealthCheckSpec) -> messages.ContainerSpec:
    return msgspec.structs.replace(spec(), health_checks=list(checks))


async def health_report(hostd: HostdUnderTest, instance: str, healthy: bool, *, after: int = 0,
                        timeout: float = 30) -> messages.IpReport:
    def found() -> messages.IpReport | None:
        return next((r for r in hostd.reports[after:] if r.instance == instance and r.state == "RUNNING"
                     and r.health and r.healthy is healthy), None)
    return await eventually(found, timeout=timeout, what=f"healthy={healthy} report for {instance}")


def health_reports(hostd: HostdUnderTest, instance: str) -> list[messages.IpReport]:
    return [r for r in hostd.reports if r.instance == instance and r.health]


# A command check that counts its own runs in a file, so a test can wait for "checked N times".
COUNTING = ["sh", "-c", "echo . >> /tmp/checks"]


async def checks_run(hostd: HostdUnderTest, instance: str) -> int:
    [c] = await hostd.containers(instance)
    proc = await asyncio.create_subprocess_exec("docker", "exec", c.id, "sh", "-c", "cat /tmp/checks 2>/dev/null",
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return out.count(b".")


async def test_passing_http_check_reports_healthy_once(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1", container=with_checks(check("HTTP", name="http /", path="/"),
                                                     check("COMMAND", name="command count", port=0, command=COUNTING,
                                                           interval_s=0.2)))
    running = await hostd.report("web-1", "RUNNING")
    assert running.healthy is None and running.health == ""  # the start itself carries no verdict
    r = await health_report(hostd, "web-1", True)
    assert r.health == "http /: status 200"
    assert (r.ip, r.mac, r.container_id) == (running.ip, running.mac, running.container_id)
    # Transitions only: later passing checks send nothing more.
    start = await checks_run(hostd, "web-1")
    await eventually(lambda: _at_least(hostd, "web-1", start + 5), timeout=15, what="five more checks")
    assert len(health_reports(hostd, "web-1")) == 1


async def _at_least(hostd: HostdUnderTest, instance: str, n: int) -> bool:
    return await checks_run(hostd, instance) >= n


async def test_failing_http_check_unhealthy_then_killed(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1", container=with_checks(check("HTTP", name="http /health", path="/health")))
    await hostd.report("web-1", "RUNNING")
    bad = await health_report(hostd, "web-1", False)
    assert bad.health == "http /health: status 404"
    failed = await hostd.report("web-1", "FAILED")
    assert failed.reason == "health check http /health failed 3 times: status 404"
    assert failed.container_id == bad.container_id
    await eventually(lambda: _none(hostd, "web-1"), timeout=10, what="the killed container removed")


async def _none(hostd: HostdUnderTest, instance: str) -> bool:
    return not await hostd.containers(instance)


async def test_tcp_and_command_checks(hostd: HostdUnderTest) -> None:
    await hostd.start()
    # No kill limit and a roomy timeout: on a loaded machine a docker exec can take seconds.
    await hostd.place("web-1", container=with_checks(
        check("TCP", name="tcp http", max_consecutive_failures=0, timeout_s=10),
        check("COMMAND", name="command wget", port=0, max_consecutive_failures=0, timeout_s=10,
              command=["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"])))
    r = await health_report(hostd, "web-1", True, timeout=60)
    assert r.health == "tcp http: connected"
    # A command that fails, with no kill limit: unhealthy with its exit code and output, never killed.
    await hostd.place("web-2", container=with_checks(
        check("COMMAND", name="command cat", port=0, command=["cat", "/nope"], max_consecutive_failures=0)))
    bad = await health_report(hostd, "web-2", False)
    assert bad.health.startswith("command cat: exit code 1: cat: can't open '/nope'"), bad.health
    # A TCP check on a port nobody listens on.
    await hostd.place("web-3", container=with_checks(check("TCP", name="tcp admin", port=9000,
                                                           max_consecutive_failures=0)))
    bad = await health_report(hostd, "web-3", False)
    assert bad.health == "tcp admin: connection refused"
    assert "FAILED" not in hostd.states("web-2") + hostd.states("web-3")


async def test_grace_period_holds_failures(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1", container=with_checks(
        check("COMMAND", name="command fail", port=0, command=["sh", "-c", "echo . >> /tmp/checks; false"],
              interval_s=0.2, grace_period_s=3600, max_consecutive_failures=1)))
    await hostd.report("web-1", "RUNNING")
    await eventually(lambda: _at_least(hostd, "web-1", 5), timeout=15, what="five failed checks")
    # In the grace period: no verdict, no kill.
    assert health_reports(hostd, "web-1") == [] and "FAILED" not in hostd.states("web-1")


async def test_checks_resume_after_restart_and_stop_with_the_instance(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1", container=with_checks(check("HTTP", name="http /", path="/")))
    await health_report(hostd, "web-1", True)
    await hostd.stop()
    n = len(hostd.reports)
    await hostd.start()
    # Adopted from its label: checked again, and the first verdict is announced again.
    r = await health_report(hostd, "web-1", True, after=n)
    assert r.health == "http /: status 200"
    n = len(hostd.reports)
    await hostd.place("web-1", action="stop", epoch=2)
    await hostd.report("web-1", "KILLED", after=n)
    assert [r.state for r in hostd.reports[n:] if r.instance == "web-1"] == ["KILLED"]
