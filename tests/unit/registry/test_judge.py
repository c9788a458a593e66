import pytest

from libs.messages import IpReport
from services.registry import judge as j
from services.registry.judge import Row, judge


def row(**kw):
    base = dict(id="web-1", app="web", host="h1", epoch=1, state="STARTING", desired="RUNNING", ip="", container_id="c1")
    return Row(**{**base, **kw})


def rep(**kw):
    base = dict(instance="web-1", app="web", host="h1", epoch=1, state="RUNNING", container_id="c1", ip="198.19.255.2")
    return IpReport(**{**base, **kw})


@pytest.mark.parametrize("report,subject_host,task_row,accepted,reason,changed", [
    pytest.param(rep(), "h1", row(), True, "", True, id="starting-to-running"),
    pytest.param(rep(), "h2", row(), False, j.HOST_MISMATCH, False, id="published-on-other-host-subject"),
    pytest.param(rep(), "h1", None, False, j.UNKNOWN_INSTANCE, False, id="unknown-instance"),
    pytest.param(rep(host="h2"), "h2", row(), False, j.WRONG_HOST, False, id="placed-elsewhere"),
    pytest.param(rep(app="db"), "h1", row(), False, j.WRONG_APP, False, id="other-app"),
    pytest.param(rep(epoch=0), "h1", row(), False, j.STALE_EPOCH, False, id="stale-epoch"),
    pytest.param(rep(state="STARTING"), "h1", row(state="RUNNING", ip="198.19.255.2"), True, "", False,
                 id="late-starting-ignored"),
    pytest.param(rep(), "h1", row(state="RUNNING", ip="198.19.255.2"), True, "", False, id="duplicate"),
    pytest.param(rep(state="RUNNING"), "h1", row(state="KILLED"), True, "", False, id="after-terminal-ignored"),
    pytest.param(rep(state="FAILED", reason="OOMKilled"), "h1", row(state="RUNNING"), True, "", True, id="failure"),
    pytest.param(rep(healthy=True, health="http /: status 200"), "h1", row(state="RUNNING", ip="198.19.255.2"),
                 True, "", True, id="health-only-news-is-a-change"),
    pytest.param(rep(healthy=True, health="http /: status 200"), "h1",
                 row(state="RUNNING", ip="198.19.255.2", healthy=True, health="http /: status 200"), True, "", False,
                 id="same-health-duplicate"),
    pytest.param(rep(), "h1", row(state="RUNNING", ip="198.19.255.2", healthy=False, health="x"), True, "", False,
                 id="no-health-news-keeps-health"),
    pytest.param(rep(state="STARTING", healthy=True, health="x"), "h1", row(state="RUNNING", ip="198.19.255.2"),
                 True, "", False, id="late-starting-with-health-ignored"),
    pytest.param(rep(healthy=True, health="http /: status 200", at=10.0), "h1",
                 row(state="RUNNING", ip="198.19.255.2", healthy=False, health="http /: status 500", health_at=12.0),
                 True, "", False, id="older-verdict-arriving-late-loses"),
    pytest.param(rep(healthy=True, health="http /: status 200", at=13.0), "h1",
                 row(state="RUNNING", ip="198.19.255.2", healthy=False, health="http /: status 500", health_at=12.0),
                 True, "", True, id="newer-verdict-wins"),
])
def test_judge(report, subject_host, task_row, accepted, reason, changed):
    v = judge(report, subject_host, task_row)
    assert (v.accepted, v.reason, v.changed) == (accepted, reason, changed)


@pytest.mark.parametrize(("state", "healthy", "has_checks", "serving"), [
    pytest.param("RUNNING", None, False, True, id="running-without-checks"),
    pytest.param("RUNNING", None, True, False, id="checks-not-yet-passed"),
    pytest.param("RUNNING", True, True, True, id="healthy"),
    pytest.param("RUNNING", False, True, False, id="unhealthy"),
    pytest.param("STARTING", True, True, False, id="not-running"),
    pytest.param("FAILED", True, False, False, id="ended"),
])
def test_in_service(state, healthy, has_checks, serving):
    assert j.in_service(state, healthy, has_checks) is serving


@pytest.mark.parametrize(("ip", "accepted"), [
    pytest.param("198.18.8.3", True, id="the-reserved-address"),
    pytest.param("198.18.8.4", False, id="another-address"),
    pytest.param("", True, id="no-address-yet"),
])
def test_pool_reports_must_carry_the_reserved_address(ip: str, accepted: bool) -> None:
    v = judge(rep(ip=ip), "h1", row(address="198.18.8.3/20"))
    assert v.accepted is accepted and v.reason == ("" if accepted else j.NOT_RESERVED)
