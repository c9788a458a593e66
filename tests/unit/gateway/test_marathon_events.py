"""Which Marathon events one look at an app yields (services/gateway/marathon/events.py), and
that every frame stays under the documented limit and decodes as marathon-python decodes it."""
from __future__ import annotations

import collections
import collections.abc
import json

import pytest

from services.gateway.marathon import events

NOW = "2026-12-01T12:00:00.000000Z"
A = "prod--web"


def task(n: int, state: str = "TASK_RUNNING", alive: bool | None = None, ip: str = "198.18.0.1") -> events.Task:
    return events.Task(f"{A}-{n:012x}", state, alive, "h1", ip, (80,), NOW)


def view(*tasks: events.Task, live: bool = True, dep: tuple[str, str] | None = None, version: int = 1
         ) -> events.AppView:
    d = None if dep is None else events.Deployment(dep[0], dep[1], NOW, 1)
    return events.AppView(A, live, {t.id: t for t in tasks}, d, version, NOW)


def kinds(before: events.AppView | None, after: events.AppView, ended: dict[str, str] | None = None) -> list[tuple]:
    out = []
    for t, p in events.diff(before, after, ended=ended or {}, now=NOW):
        out.append((t, p.get("taskStatus", p.get("alive", p.get("id", p.get("uri", ""))))))
    return out


@pytest.mark.parametrize("before,after,ended,want", [
    (None, view(task(1)), {}, [("status_update_event", "TASK_RUNNING")]),
    (None, view(), {}, []),
    (view(task(1)), view(task(1)), {}, []),
    (view(task(1, "TASK_STAGING")), view(task(1)), {}, [("status_update_event", "TASK_RUNNING")]),
    (view(task(1)), view(task(1, "TASK_KILLING")), {}, [("status_update_event", "TASK_KILLING")]),
    (view(task(1)), view(), {}, [("status_update_event", "TASK_KILLED")]),
    (view(task(1)), view(), {f"{A}-{1:012x}": "TASK_FAILED"}, [("status_update_event", "TASK_FAILED")]),
    (view(task(1, ip="")), view(task(1)), {}, [("status_update_event", "TASK_RUNNING")]),
    (view(task(1)), view(task(1, alive=True)), {}, [("health_status_changed_event", True)]),
    (view(task(1, alive=True)), view(task(1, alive=False)), {},
     [("health_status_changed_event", False), ("failed_health_check_event", "")]),
    (view(), view(dep=(f"{A}.2", "running")), {}, [("deployment_info", "")]),
    (view(dep=(f"{A}.2", "running")), view(dep=(f"{A}.2", "succeeded")), {},
     [("deployment_step_success", ""), ("deployment_success", f"{A}.2")]),
    (view(dep=(f"{A}.2", "running")), view(dep=(f"{A}.2", "failed")), {},
     [("deployment_step_failure", ""), ("deployment_failed", f"{A}.2")]),
    (None, view(dep=(f"{A}.2", "succeeded")), {}, []),
    (view(dep=(f"{A}.2", "succeeded")), view(dep=(f"{A}.3", "running")), {}, [("deployment_info", "")]),
    (view(task(1)), view(live=False), {}, [("status_update_event", "TASK_KILLED"), ("app_terminated_event", "")]),
    (view(task(1)), view(task(1), version=2), {}, [("api_post_event", "/v2/apps/prod/web")]),
    (None, view(version=2), {}, []),
], ids=["first-look", "first-look-empty", "unchanged", "started", "killing", "gone", "gone-failed", "got-address",
        "healthy", "unhealthy", "deployment-opened", "deployment-succeeded", "deployment-failed", "old-news",
        "next-deployment", "deleted", "new-version", "first-look-no-post"])
def test_events_of_one_look(before, after, ended, want) -> None:
    assert kinds(before, after, ended) == want


def test_a_health_kill_is_also_an_unhealthy_instance_kill_event() -> None:
    t = task(1, alive=False)
    why = {t.id: "health check http /health failed 3 times: status 500"}
    got = events.diff(view(t), view(), ended={t.id: "TASK_FAILED"}, now=NOW, reasons=why)
    assert [k for k, _ in got] == ["status_update_event", "unhealthy_instance_kill_event"]
    assert got[1][1]["reason"] == why[t.id] and got[1][1]["host"] == "h1"
    plain = events.diff(view(t), view(), ended={t.id: "TASK_FAILED"}, now=NOW, reasons={t.id: "exited 1"})
    assert [k for k, _ in plain] == ["status_update_event"]


def test_settled_means_nothing_in_flight() -> None:
    assert view(task(1)).settled
    assert not view(task(1, "TASK_STAGING")).settled
    assert not view(dep=(f"{A}.2", "running")).settled
    assert view(dep=(f"{A}.2", "failed")).settled


def test_frames_are_sse_with_one_line_of_json_and_small() -> None:
    # The largest task an event can carry: 64 ports, the longest ids.
    big = events.Task("a" * 63 + "-" + "0" * 12, "TASK_RUNNING", True, "h" * 63, "198.18.255.255",
                      tuple(range(65471, 65535)), NOW)
    fat = events.AppView("a" * 63, True, {big.id: big}, events.Deployment("a" * 63 + ".2147483647", "running", NOW, 1))
    frames = [events.frame(t, p) for t, p in events.diff(None, fat, ended={}, now=NOW)]
    frames.append(events.frame(*events.attached("2001:db8::1", NOW)))
    for f in frames:
        assert len(f) <= events.MAX_EVENT_BYTES
        head, data, end = f.split(b"\r\n", 2)
        assert head.startswith(b"event: ") and data.startswith(b"data: ") and end == b"\r\n"
        assert json.loads(data[len(b"data: "):])["eventType"] == head[len(b"event: "):].decode()


def test_marathon_python_decodes_every_event() -> None:
    collections.Iterable = collections.abc.Iterable  # type: ignore[attr-defined]  (marathon 0.13 on 3.10+)
    from marathon.models.events import EventFactory
    factory = EventFactory()
    looks = [(None, view(task(1, alive=True), dep=(f"{A}.2", "running"))),
             (view(task(1, alive=True)), view(task(1, alive=False))),
             (view(task(1), dep=(f"{A}.2", "running")), view(live=False, dep=(f"{A}.2", "succeeded"))),
             (view(dep=(f"{A}.2", "running")), view(dep=(f"{A}.2", "failed"), version=2))]
    killed = {task(1).id: "health check http /health failed 3 times: status 500"}
    seen = {"event_stream_attached"}
    factory.process(events.attached("127.0.0.1", NOW)[1])
    for before, after in looks:
        for t, p in events.diff(before, after, ended={task(1).id: "TASK_FAILED"}, now=NOW, reasons=killed):
            assert type(factory.process(json.loads(json.dumps(p)))).__name__.startswith("Marathon")
            seen.add(t)
    assert seen == events.TYPES
