"""The app's kill grace: validated in the spec, carried in the ContainerSpec (old messages without
it still decode), written to the container's label, and read back by every stop; the engine's init."""
from __future__ import annotations

import pydantic
import pytest

from libs import messages
from libs.appspec import AppSpec
from services.hostd import containers as ct
from services.placer.specs import container_spec

BASE = {"id": "web", "image": "noops/base:latest"}


@pytest.mark.parametrize(("grace", "carried"), [
    pytest.param(None, 0, id="default-is-the-hosts"),
    pytest.param(1, 1, id="lowest"),
    pytest.param(30, 30, id="thirty-seconds"),
    pytest.param(600, 600, id="highest"),
])
def test_kill_grace_travels_to_the_container_spec(grace: int | None, carried: int) -> None:
    raw = BASE if grace is None else {**BASE, "kill_grace_s": grace}
    assert container_spec(AppSpec.model_validate(raw)).stop_timeout_s == carried


@pytest.mark.parametrize("grace", [
    pytest.param(0, id="zero"), pytest.param(-1, id="negative"), pytest.param(601, id="above-600"),
    pytest.param(2.5, id="fraction"), pytest.param("5", id="string"), pytest.param(True, id="bool"),
])
def test_kill_grace_out_of_bounds_is_refused(grace: object) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        AppSpec.model_validate({**BASE, "kill_grace_s": grace})
    assert [e["loc"] for e in info.value.errors()] == [("kill_grace_s",)]


def test_a_container_spec_without_the_field_decodes_to_the_hosts_default() -> None:
    old = b'{"image":"i","cmd":[],"env":{},"labels":{},"cpus":1.0,"mem_mb":8,"ports":[]}'
    assert messages.decode(old, messages.ContainerSpec).stop_timeout_s == 0


def placement(stop_timeout_s: int) -> messages.Placement:
    spec = messages.ContainerSpec(image="i", cmd=[], env={}, labels={}, cpus=1, mem_mb=8, ports=[],
                                  stop_timeout_s=stop_timeout_s)
    return messages.Placement(instance="web-1", app="web", version=1, host="h1", epoch=1, action="start", spec=spec)


@pytest.mark.parametrize(("stop_timeout_s", "label"), [
    pytest.param(0, None, id="hosts-default-no-label"),
    pytest.param(12, "12", id="apps-grace-labelled"),
])
def test_the_grace_is_kept_in_a_label(stop_timeout_s: int, label: str | None) -> None:
    assert ct.container_labels(placement(stop_timeout_s), "c1", "h1").get(ct.LABEL_STOP_TIMEOUT) == label


@pytest.mark.parametrize(("labels", "expected"), [
    pytest.param({}, 5, id="no-label-hosts-default"),
    pytest.param({ct.LABEL_STOP_TIMEOUT: "2"}, 2, id="apps-grace"),
    pytest.param({ct.LABEL_STOP_TIMEOUT: "0"}, 5, id="zero-hosts-default"),
    pytest.param({ct.LABEL_STOP_TIMEOUT: "601"}, 5, id="above-bound-not-believed"),
    pytest.param({ct.LABEL_STOP_TIMEOUT: "soon"}, 5, id="unreadable"),
])
def test_stop_timeout_read_back_from_the_container(labels: dict[str, str], expected: int) -> None:
    info = ct.ContainerInfo(id="c", name="n", labels=labels, state="running")
    assert info.stop_timeout_s(5) == expected


@pytest.mark.parametrize(("hardening", "init"), [
    pytest.param(ct.Hardening(), True, id="init-by-default"),
    pytest.param(ct.Hardening(init=False), None, id="init-off"),
])
def test_engine_init(hardening: ct.Hardening, init: bool | None) -> None:
    assert ct.create_config(placement(0), "c1", "h1", hardening=hardening)["HostConfig"].get("Init") == init


def test_init_setting() -> None:
    from libs import settings
    cfg = settings.load(settings.HostdSettings, {"NOOPS_HOST_ID": "h1", "NOOPS_HOSTD_INIT": "false"})
    assert ct.Hardening.from_settings(cfg).init is False
    assert ct.Hardening.from_settings(settings.load(settings.HostdSettings, {"NOOPS_HOST_ID": "h1"})).init is True
