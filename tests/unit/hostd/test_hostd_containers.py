"""Pure helpers of hostd: container config, labels, reading inspect output back, failure text."""
from __future__ import annotations

import pytest

from libs import messages
from services.hostd import containers as ct
from services.hostd import network


def placement(**spec_overrides: object) -> messages.Placement:
    spec = dict(image="noops/base:latest", cmd=["httpd", "-f"], env={"A": "1"}, labels={"team": "a"},
                cpus=0.5, mem_mb=64, ports=[])
    spec.update(spec_overrides)
    return messages.Placement(instance="web-1", app="web", version=3, host="h1", epoch=7, action="start",
                              spec=messages.ContainerSpec(**spec))  # type: ignore[arg-type]


@pytest.mark.parametrize(("user_labels", "expected_extra"), [
    pytest.param({}, {}, id="no-user-labels"),
    pytest.param({"team": "a", "tier": "web"}, {"team": "a", "tier": "web"}, id="user-labels-kept"),
    pytest.param({"noops.instance": "other", "noops.cluster": "evil"}, {}, id="noops-labels-cannot-be-spoofed"),
])
def test_container_labels(user_labels: dict[str, str], expected_extra: dict[str, str]) -> None:
    labels = ct.container_labels(placement(labels=user_labels), "c1", "h1")
    assert labels == {**expected_extra, "noops.cluster": "c1", "noops.host": "h1", "noops.instance": "web-1",
                      "noops.app": "web", "noops.version": "3", "noops.epoch": "7"}


@pytest.mark.parametrize(("cpus", "mem_mb", "nano", "memory"), [
    pytest.param(0.5, 64, 500_000_000, 64 * 1024 * 1024, id="half-cpu-64mib"),
    pytest.param(2.0, 1024, 2_000_000_000, 1024 ** 3, id="two-cpus-1gib"),
    pytest.param(0.0, 0, 0, 0, id="zero-means-unlimited"),
])
def test_create_config_limits(cpus: float, mem_mb: int, nano: int, memory: int) -> None:
    hc = ct.create_config(placement(cpus=cpus, mem_mb=mem_mb), "c1", "h1")["HostConfig"]
    assert (hc["NanoCpus"], hc["Memory"]) == (nano, memory)
    assert hc["RestartPolicy"] == {"Name": "no"} and hc["NetworkMode"] == "none"


@pytest.mark.parametrize(("cmd", "expected"), [
    pytest.param(["httpd", "-f"], ["httpd", "-f"], id="cmd-given"),
    pytest.param([], None, id="empty-cmd-uses-image-default"),
])
def test_create_config_cmd(cmd: list[str], expected: list[str] | None) -> None:
    config = ct.create_config(placement(cmd=cmd), "c1", "h1")
    assert config.get("Cmd") == expected
    assert config["Image"] == "noops/base:latest" and config["Env"] == ["A=1"]


def test_container_name() -> None:
    assert ct.container_name("local", "web-1") == "noops-local-web-1"


@pytest.mark.parametrize(("settings", "ip"), [
    # Networking is off in Docker: whatever it says, the address is hostd's (network.Attachment).
    pytest.param({"Networks": {"bridge": {"IPAddress": "198.19.255.2"}}, "IPAddress": "x"}, "",
                 id="docker-address-ignored"),
    pytest.param({"Networks": {}}, "", id="no-address-yet"),
    pytest.param({}, "", id="nothing"),
])
def test_ip_of(settings: dict[str, object], ip: str) -> None:
    assert network.ip_of(settings) == ip


@pytest.mark.parametrize(("state", "reason"), [
    pytest.param({"Status": "exited", "ExitCode": 1, "OOMKilled": False}, "exited with code 1", id="exit-1"),
    pytest.param({"Status": "exited", "ExitCode": 137, "OOMKilled": False}, "exited with code 137", id="killed"),
    pytest.param({"Status": "exited", "ExitCode": 137, "OOMKilled": True}, "OOMKilled", id="oom"),
    pytest.param({"Status": "exited", "ExitCode": 0}, "exited with code 0", id="clean-exit-is-still-a-failure"),
])
def test_exit_reason(state: dict[str, object], reason: str) -> None:
    info = ct.info_from_inspect({"Id": "abc", "State": state})
    assert ct.exit_reason(info) == reason


def test_info_from_inspect() -> None:
    info = ct.info_from_inspect({
        "Id": "abc", "Name": "/noops-c1-web-1",
        "Config": {"Labels": {"noops.instance": "web-1", "noops.app": "web", "noops.epoch": "4"}},
        "State": {"Status": "running", "ExitCode": 0, "OOMKilled": False, "Pid": 42},
        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "198.19.255.9"}}}})
    assert info.pid == 42
    assert (info.id, info.name, info.instance, info.app, info.epoch, info.running, info.ip) == (
        "abc", "noops-c1-web-1", "web-1", "web", 4, True, "")


def test_info_from_list() -> None:
    info = ct.info_from_list({"Id": "abc", "Names": ["/noops-c1-web-1"], "State": "exited",
                              "Labels": {"noops.instance": "web-1", "noops.epoch": "junk"}, "NetworkSettings": {}})
    assert (info.name, info.state, info.running, info.instance, info.epoch) == (
        "noops-c1-web-1", "exited", False, "web-1", 0)


@pytest.mark.parametrize(("status", "message", "reason"), [
    pytest.param(404, "No such image: noops/nope:latest", "image noops/nope:latest not found on host h1",
                 id="image-missing"),
    pytest.param(409, "Conflict. The container name is already in use",
                 "container name is already taken on host h1: Conflict. The container name is already in use",
                 id="name-taken"),
    pytest.param(400, "invalid reference format", "could not create the container on host h1: invalid reference format",
                 id="other"),
])
def test_create_failure(status: int, message: str, reason: str) -> None:
    assert ct.create_failure("noops/nope:latest", "h1", status, message) == reason


DEFAULT_DROP = ["NET_RAW", "NET_ADMIN"]
NNP = ["no-new-privileges:true"]


@pytest.mark.parametrize(("security", "hardening", "host_config", "user"), [
    pytest.param({}, ct.Hardening(),
                 {"CapDrop": DEFAULT_DROP, "CapAdd": [], "SecurityOpt": NNP, "PidsLimit": 4096}, None,
                 id="defaults-drop-net-raw-and-net-admin"),
    pytest.param({"cap_add": ["NET_RAW"]}, ct.Hardening(),
                 {"CapDrop": ["NET_ADMIN"], "CapAdd": ["NET_RAW"], "SecurityOpt": NNP, "PidsLimit": 4096}, None,
                 id="cap-add-gives-one-back"),
    pytest.param({"cap_add": ["net_admin", "CAP_NET_RAW", "NET_BIND_SERVICE", "NET_RAW"]}, ct.Hardening(),
                 {"CapDrop": [], "CapAdd": ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"], "SecurityOpt": NNP,
                  "PidsLimit": 4096}, None, id="cap-add-normalized-and-deduplicated"),
    pytest.param({"user": "1000:1000", "read_only_rootfs": True}, ct.Hardening(),
                 {"CapDrop": DEFAULT_DROP, "CapAdd": [], "SecurityOpt": NNP, "PidsLimit": 4096,
                  "ReadonlyRootfs": True}, "1000:1000", id="user-and-read-only-root"),
    pytest.param({}, ct.Hardening(cap_drop=("ALL",), pids_limit=0, no_new_privileges=False),
                 {"CapDrop": ["ALL"], "CapAdd": []}, None, id="host-settings-drop-all-no-pids-limit"),
    pytest.param({"cap_add": ["CHOWN"]}, ct.Hardening(cap_drop=("ALL",), pids_limit=128),
                 {"CapDrop": ["ALL"], "CapAdd": ["CHOWN"], "SecurityOpt": NNP, "PidsLimit": 128}, None,
                 id="drop-all-add-one"),
])
def test_create_config_security(security: dict, hardening: ct.Hardening, host_config: dict, user: str | None) -> None:
    config = ct.create_config(placement(security=messages.SecuritySpec(**security)), "c1", "h1", "/v/web-1",
                              hardening)
    keys = ("CapDrop", "CapAdd", "SecurityOpt", "PidsLimit", "ReadonlyRootfs")
    assert {k: v for k, v in config["HostConfig"].items() if k in keys} == host_config
    assert config.get("User") == user
    assert config["HostConfig"]["Binds"] == ["/v/web-1:/data"]   # the volume stays writable (no :ro)


def test_hardening_from_settings() -> None:
    from libs import settings
    cfg = settings.load(settings.HostdSettings, {"NOOPS_HOSTD_CAP_DROP": "cap_net_raw, NET_ADMIN,SYS_CHROOT",
                                                 "NOOPS_HOSTD_PIDS_LIMIT": "0", "NOOPS_HOST_ID": "h1"})
    assert ct.Hardening.from_settings(cfg) == ct.Hardening(("NET_RAW", "NET_ADMIN", "SYS_CHROOT"), 0, True)
    with pytest.raises(settings.SettingsError, match="NOOPS_HOSTD_PIDS_LIMIT"):
        settings.load(settings.HostdSettings, {"NOOPS_HOSTD_PIDS_LIMIT": "-1", "NOOPS_HOST_ID": "h1"})
    with pytest.raises(settings.SettingsError, match="BOGUS"):
        settings.load(settings.HostdSettings, {"NOOPS_HOSTD_CAP_DROP": "NET_RAW,BOGUS", "NOOPS_HOST_ID": "h1"})


@pytest.mark.parametrize(("keep", "label"), [
    pytest.param(True, "true", id="kept-volume-labelled"),
    pytest.param(False, None, id="plain-container-unchanged"),
])
def test_keep_volume_label(keep: bool, label: str | None) -> None:
    labels = ct.container_labels(placement(disk_mb=8, keep_volume=keep), "c1", "h1")
    assert labels.get(ct.LABEL_KEEP_VOLUME) == label
    assert ct.ContainerInfo(id="c", name="n", labels=labels, state="running").keep_volume is keep
