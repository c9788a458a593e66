"""noops-init's side of hostd, pure: its stats body, its last word as the instance's reason, the
grace it is told, and which containers are scraped."""
from __future__ import annotations

import pytest

from libs import messages
from services.hostd import containers as ct
from services.hostd import initstats


def test_stats_parse() -> None:
    s = initstats.parse("cpu_seconds 0.120\nmemory_bytes 2871296\nprocesses 2\nuptime_seconds 3\nready 1\n"
                        "counter requests 7\ncounter bad-name 1\ncounter x nan\ngarbage\n")
    assert (s.cpu_seconds, s.memory_bytes, s.processes, s.ready) == (0.12, 2871296, 2, True)
    assert s.counters == (("requests", 7.0),)


def test_stats_without_the_required_lines_are_refused() -> None:
    with pytest.raises(ValueError, match="memory_bytes missing"):
        initstats.parse("cpu_seconds 1\n")


@pytest.mark.parametrize(("lines", "reason"), [
    pytest.param(["app output", "noops-init: exited with code 3 after 2.1 s"], "exited with code 3 after 2.1 s",
                 id="exit-code"),
    pytest.param(["noops-init: killed by signal 9 (Killed) after 5.0 s (the stop timeout of 5 s passed)",
                  "noops-init: cron `x` exited with code 0 after 0.0 s"],
                 "killed by signal 9 (Killed) after 5.0 s (the stop timeout of 5 s passed)", id="signal-then-cron-line"),
    pytest.param(["noops-init: started sh (pid 7)", "exited with code 1"], "", id="not-its-word"),
    pytest.param([], "", id="no-logs"),
])
def test_init_reason(lines: list[str], reason: str) -> None:
    assert ct.init_reason(lines) == reason


def info(labels: dict[str, str], state: str = "running", instance: str = "web-1") -> ct.ContainerInfo:
    return ct.ContainerInfo(id="c", name="n", labels={ct.LABEL_INSTANCE: instance, ct.LABEL_APP: "web", **labels},
                            state=state)


def test_exit_reason_prefers_oom_then_init() -> None:
    i = ct.ContainerInfo(id="c", name="n", labels={}, state="exited", exit_code=3)
    assert ct.exit_reason(i, init_said="exited with code 3 after 2.1 s") == "exited with code 3 after 2.1 s"
    assert ct.exit_reason(i, oom_killed=True, init_said="killed by signal 9") == "OOMKilled"
    assert ct.exit_reason(i) == "exited with code 3"


def test_only_running_init_containers_with_an_address_are_scraped() -> None:
    infos = [info({ct.LABEL_INIT: "1", ct.LABEL_INIT_STATS_PORT: "9100"}),
             info({ct.LABEL_INIT: "1", ct.LABEL_INIT_STATS_PORT: "9100"}, state="exited", instance="web-2"),
             info({ct.LABEL_INIT: "1", ct.LABEL_INIT_STATS_PORT: "0"}, instance="web-3"),
             info({ct.LABEL_INIT_STATS_PORT: "9100"}, instance="web-4"),
             info({ct.LABEL_INIT: "1", ct.LABEL_INIT_STATS_PORT: "9100"}, instance="web-5")]
    ips = {"web-1": "198.18.0.10", "web-2": "198.18.0.11", "web-3": "198.18.0.12", "web-4": "198.18.0.13"}
    assert initstats.targets(infos, lambda i: ips.get(i, "")) == [initstats.Target("web-1", "web", "198.18.0.10", 9100)]


def test_the_grace_reaches_noops_init() -> None:
    spec = messages.ContainerSpec(image="x", cmd=[], env={"A": "1"}, labels={}, cpus=0.1, mem_mb=32, ports=[])
    p = messages.Placement(instance="web-1", app="web", version=1, host="h1", epoch=1, action="start", spec=spec)
    assert ct.create_config(p, "c", "h1", stop_timeout_s=7)["Env"] == ["A=1", "NOOPS_INIT_STOP_TIMEOUT_S=7"]
    assert ct.create_config(p, "c", "h1")["Env"] == ["A=1"]


def test_an_image_with_noops_init_gets_no_engine_init() -> None:
    spec = messages.ContainerSpec(image="x", cmd=[], env={}, labels={}, cpus=0.1, mem_mb=32, ports=[])
    p = messages.Placement(instance="web-1", app="web", version=1, host="h1", epoch=1, action="start", spec=spec)
    assert ct.create_config(p, "c", "h1")["HostConfig"]["Init"] is True
    assert "Init" not in ct.create_config(p, "c", "h1", image_has_init=True)["HostConfig"]


def test_the_collector_shows_the_last_round_per_host() -> None:
    from services.hostd.metrics import InstanceStats
    stats = initstats.InitStats(cpu_seconds=2.0, memory_bytes=10, processes=1, ready=False, counters=(("hits", 4.0),))
    c = InstanceStats()
    c.publish("h1", {"web-1": ("web", stats)})
    c.publish("h2", {"api-1": ("api", stats)})
    c.publish("h1", {})   # the next round of h1 found nothing: web-1 drops out
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for m in c.collect() for s in m.samples}
    assert samples == {
        ("noops_instance_cpu_seconds_total", (("app", "api"), ("instance", "api-1"))): 2.0,
        ("noops_instance_memory_bytes", (("app", "api"), ("instance", "api-1"))): 10.0,
        ("noops_instance_ready", (("app", "api"), ("instance", "api-1"))): 0.0,
        ("noops_instance_counter", (("app", "api"), ("instance", "api-1"), ("name", "hits"))): 4.0,
    }
    c.forget("h2")
    assert not [s for m in c.collect() for s in m.samples]


@pytest.mark.parametrize("env", [{"NOOPS_HOSTD_INIT_STATS_INTERVAL_S": "-1"}, {"NOOPS_HOSTD_INIT_STATS_TIMEOUT_S": "0"},
                                 {"NOOPS_HOSTD_INIT_STATS_CONCURRENCY": "0"}], ids=["interval", "timeout", "concurrency"])
def test_stats_settings_are_checked(env: dict[str, str]) -> None:
    from libs.settings import SettingsError
    from services.hostd.main import load_settings
    with pytest.raises(SettingsError, match="NOOPS_HOSTD_INIT_STATS"):
        load_settings({"NOOPS_HOST_ID": "h1", **env})
