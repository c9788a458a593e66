"""Marathon app JSON <-> native spec (services/gateway/marathon/translate.py), as tables; and the
/v2/apps?embed=apps.tasks answer decoded the way Go clients decode it (go-marathon: Traefik)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import msgspec
import pytest

from libs.appspec import AppSpec
from services.gateway.marathon import ids, shapes, translate

DOCKER = {"type": "DOCKER", "docker": {"image": "nginx:1.27", "privileged": False, "forcePullImage": False},
          "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp", "name": "http"}]}


def spec(body: dict[str, Any], base: AppSpec | None = None, **kw: Any) -> AppSpec:
    return translate.app_to_spec(body, app_id="prod--web", base=base, **kw)


@pytest.mark.parametrize("body,field,want", [
    ({"container": DOCKER}, "image", "nginx:1.27"),
    ({"container": DOCKER, "cmd": "nginx -g 'daemon off;'"}, "cmd", ["/bin/sh", "-c", "nginx -g 'daemon off;'"]),
    ({"container": DOCKER, "args": ["-g", "x"]}, "cmd", ["-g", "x"]),
    ({"container": DOCKER}, "resources", {"cpus": 1.0, "mem_mb": 128, "disk_mb": 0, "egress_mbit": 0}),
    ({"container": DOCKER, "cpus": 0.25, "mem": 64.5, "disk": 10}, "resources",
     {"cpus": 0.25, "mem_mb": 65, "disk_mb": 10, "egress_mbit": 0}),
    ({"container": DOCKER, "instances": 3}, "instances", 3),
    ({"container": DOCKER, "instances": 3.0}, "instances", 3),
    ({"container": DOCKER}, "ports", [{"name": "http", "container_port": 80, "protocol": "tcp", "host_port": 0}]),
    ({"container": {**DOCKER, "portMappings": [{"containerPort": 53, "protocol": "udp"}]}}, "ports",
     [{"name": "port0", "container_port": 53, "protocol": "udp", "host_port": 0}]),
    ({"container": {"docker": {"image": "x:1", "portMappings": [{"containerPort": 8080, "hostPort": 8080}]}}},
     "ports", [{"name": "port0", "container_port": 8080, "protocol": "tcp", "host_port": 8080}]),
    ({"container": {"docker": {"image": "x:1"}}, "portDefinitions": [{"port": 9000, "name": "api"}]}, "ports",
     [{"name": "api", "container_port": 9000, "protocol": "tcp", "host_port": 0}]),
    ({"container": DOCKER, "env": {"A": "1"}, "labels": {"HAPROXY_GROUP": "external"}}, "labels",
     {"HAPROXY_GROUP": "external"}),
    ({"container": DOCKER, "constraints": [["hostname", "UNIQUE"], ["rack", "IS", "r1"], ["zone", "GROUP_BY", "3"]]},
     "constraints", [["hostname", "UNIQUE"], ["rack", "CLUSTER", "r1"], ["zone", "GROUP_BY", "3"]]),
    ({"container": DOCKER, "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}},
     "upgrade_strategy", {"minimum_health_capacity": 0.5, "maximum_over_capacity": 0.0, "progress_deadline_s": 600.0,
                          "auto_rollback": True}),
    ({"container": DOCKER, "backoffSeconds": 2, "backoffFactor": 2, "maxLaunchDelaySeconds": 60},
     "max_launch_delay_seconds", 60.0),
    ({"container": DOCKER, "taskKillGracePeriodSeconds": 2.5}, "kill_grace_s", 3),
    ({"container": DOCKER, "user": "nobody"}, "security", {"cap_add": [], "user": "nobody", "read_only_rootfs": False}),
    ({"container": DOCKER, "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                                             "intervalSeconds": 5, "gracePeriodSeconds": 10}]},
     "health_checks", [{"protocol": "HTTP", "port_name": "http", "path": "/health", "status": [200, 399], "command": [],
                        "grace_period_s": 10.0, "interval_s": 5.0, "timeout_s": 20.0, "max_consecutive_failures": 3}]),
    ({"container": DOCKER, "healthChecks": [{"protocol": "MESOS_TCP", "port": 80}]}, "health_checks",
     [{"protocol": "TCP", "port_name": "http", "path": "/", "status": [200, 399], "command": [],
       "grace_period_s": 300.0, "interval_s": 60.0, "timeout_s": 20.0, "max_consecutive_failures": 3}]),
    ({"container": DOCKER, "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}, "health_checks",
     [{"protocol": "COMMAND", "port_name": None, "path": "/", "status": [200, 399], "command": ["/bin/sh", "-c", "true"],
       "grace_period_s": 300.0, "interval_s": 60.0, "timeout_s": 20.0, "max_consecutive_failures": 3}]),
], ids=["image", "cmd-shell", "args", "marathon-defaults", "resources", "instances", "instances-float", "ports",
        "udp-unnamed", "docker-portmappings-hostport", "portdefinitions", "labels", "constraints-is", "upgrade",
        "backoff", "kill-grace", "user", "hc-http", "hc-mesos-tcp-port", "hc-command"])
def test_maps_to_the_native_field(body: dict, field: str, want: Any) -> None:
    assert spec(body).model_dump(mode="json")[field] == want


NEUTRAL_BACK = {"tasksRunning": 1, "tasksStaged": 0, "tasksHealthy": 1, "tasksUnhealthy": 0, "tasks": [{"id": "x"}],
                "deployments": [{"id": "d"}], "versionInfo": {}, "lastTaskFailure": None, "version": "2020-01-01",
                "gpus": 0, "requirePorts": False, "executor": "", "uris": [], "fetch": [], "dependencies": [],
                "acceptedResourceRoles": ["*"], "secrets": {}, "storeUrls": [], "readinessChecks": [],
                "residency": None, "killSelection": "YOUNGEST_FIRST", "portDefinitions": [],
                "networks": [{"mode": "container", "name": "noops"}], "taskStats": None, "readinessCheckResults": []}


def test_read_only_and_neutral_fields_are_accepted_and_ignored() -> None:
    assert spec({"container": DOCKER, **NEUTRAL_BACK}) == spec({"container": DOCKER})


@pytest.mark.parametrize("body,path", [
    ({"container": {"docker": {"image": "x:1", "privileged": True}}}, "/container/docker/privileged"),
    ({"container": {"docker": {"image": "x:1", "forcePullImage": True}}}, "/container/docker/forcePullImage"),
    ({"container": {"docker": {"image": "x:1", "network": "HOST"}}}, "/container/docker/network"),
    ({"container": {"docker": {"image": "x:1", "parameters": [{"key": "cap-add", "value": "ALL"}]}}},
     "/container/docker/parameters"),
    ({"container": {"docker": {"image": "x:1"}, "volumes": [{"containerPath": "/d", "hostPath": "/"}]}},
     "/container/volumes"),
    ({"container": {"docker": {}}}, "/container/docker/image"),
    ({"cmd": "sleep 1"}, "/container"),
    ({"container": DOCKER, "residency": {"taskLostBehavior": "WAIT_FOREVER"}}, "/residency"),
    ({"container": DOCKER, "fetch": [{"uri": "http://x/y.tgz"}]}, "/fetch"),
    ({"container": DOCKER, "uris": ["http://x/y.tgz"]}, "/uris"),
    ({"container": DOCKER, "gpus": 1}, "/gpus"),
    ({"container": DOCKER, "secrets": {"s": {"source": "x"}}}, "/secrets"),
    ({"container": DOCKER, "env": {"P": {"secret": "s"}}}, "/env/P"),
    ({"container": DOCKER, "env": {"N": 1}}, "/env/N"),
    ({"container": DOCKER, "labels": {"n": True}}, "/labels/n"),
    ({"container": DOCKER, "dependencies": ["/db"]}, "/dependencies"),
    ({"container": DOCKER, "killSelection": "OLDEST_FIRST"}, "/killSelection"),
    ({"container": DOCKER, "taskKillGracePeriodSeconds": 0}, "/kill_grace_s"),
    ({"container": DOCKER, "taskKillGracePeriodSeconds": "30"}, "/taskKillGracePeriodSeconds"),
    ({"container": DOCKER, "unreachableStrategy": {"inactiveAfterSeconds": 0}}, "/unreachableStrategy"),
    ({"container": DOCKER, "networks": [{"mode": "host"}]}, "/networks/0"),
    ({"container": DOCKER, "constraints": [["rack", "GROUP_BY", 3]]}, "/constraints/0"),
    ({"container": DOCKER, "constraints": [["rack", "NOPE"]]}, "/constraints/0"),
    ({"container": DOCKER, "upgradeStrategy": {"minimumHealthCapacity": 1.5}}, "/upgradeStrategy/minimumHealthCapacity"),
    ({"container": DOCKER, "cpus": "1"}, "/cpus"),
    ({"container": DOCKER, "cpus": 0}, "/cpus"),
    ({"container": DOCKER, "instances": True}, "/instances"),
    ({"container": DOCKER, "instances": -1}, "/instances"),
    ({"container": DOCKER, "mem": 1}, "/mem"),
    ({"container": DOCKER, "cmd": "x", "args": ["y"]}, "/args"),
    ({"container": DOCKER, "healthChecks": [{"protocol": "HTTPS"}]}, "/healthChecks/0/protocol"),
    ({"container": DOCKER, "healthChecks": [{"portIndex": 1}]}, "/healthChecks/0/portIndex"),
    ({"container": DOCKER, "healthChecks": [{"port": 81}]}, "/healthChecks/0/port"),
    ({"container": DOCKER, "healthChecks": [{"protocol": "COMMAND"}]}, "/healthChecks/0/command"),
    ({"container": DOCKER, "healthChecks": [{"intervalSeconds": 0}]}, "/healthChecks/0/intervalSeconds"),
    ({"container": {**DOCKER, "portMappings": [{"containerPort": 0}]}}, "/container/portMappings/0/containerPort"),
    ({"container": {**DOCKER, "portMappings": [{"containerPort": 80, "servicePort": 10000}]}},
     "/container/portMappings/0/servicePort"),
    ({"container": {**DOCKER, "portMappings": [{"containerPort": 80, "protocol": "udp,tcp"}]}},
     "/container/portMappings/0/protocol"),
    ({"container": {**DOCKER, "portMappings": [{"containerPort": 80, "name": "HTTP"}]}},
     "/container/portMappings/0/name"),
    ({"container": DOCKER, "portDefinitions": [{"port": 80}]}, "/portDefinitions"),
    ({"container": DOCKER, "portDefinitions": [{"port": 0}]}, "/portDefinitions"),
    ({"container": DOCKER, "bogus": 1}, "/bogus"),
    ({"container": DOCKER, "ipAddress": {"networkName": "x"}}, "/ipAddress"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_refused_with_the_path(body: dict, path: str) -> None:
    with pytest.raises(translate.Invalid) as exc:
        spec(body)
    paths = [d["path"] for d in exc.value.details]
    assert path in paths
    assert all(d["errors"] and all(isinstance(e, str) and e for e in d["errors"]) for d in exc.value.details)


def test_all_problems_are_named_at_once() -> None:
    with pytest.raises(translate.Invalid) as exc:
        spec({"container": {"docker": {"image": "x:1", "privileged": True}}, "gpus": 2, "fetch": [{"uri": "u"}]})
    assert sorted(d["path"] for d in exc.value.details) == ["/container/docker/privileged", "/fetch", "/gpus"]


def test_a_partial_update_keeps_what_it_does_not_name() -> None:
    base = spec({"container": DOCKER, "instances": 2, "env": {"A": "1"},
                 "healthChecks": [{"protocol": "HTTP", "portIndex": 0}]})
    native_only = base.model_copy(update={"placement": "spread"})
    scaled = spec({"instances": 5}, base=native_only)
    assert scaled.instances == 5
    assert scaled.model_dump(exclude={"instances"}) == native_only.model_dump(exclude={"instances"})


def test_the_service_port_it_assigned_may_come_back() -> None:
    body = {"container": {**DOCKER, "portMappings": [{"containerPort": 80, "name": "http", "servicePort": 10042}]}}
    assert spec(body, service_ports={"http": 10042}).ports[0].container_port == 80


@pytest.mark.parametrize("body", [
    {"container": DOCKER, "cmd": "sleep 10", "instances": 2, "cpus": 0.5, "mem": 64, "env": {"A": "b"},
     "labels": {"l": "v"}, "constraints": [["hostname", "UNIQUE"]], "upgradeStrategy": {
         "minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5},
     "healthChecks": [{"protocol": "HTTP", "path": "/h", "portIndex": 0}, {"protocol": "TCP", "portIndex": 0},
                      {"protocol": "COMMAND", "command": {"value": "test -f /x"}}]},
    {"container": {"docker": {"image": "x:1"}}, "args": ["a", "b"]},
], ids=["full", "args"])
def test_round_trip_through_marathon_json(body: dict) -> None:
    first = spec(body)
    again = spec(shapes.definition(first.model_dump(mode="json")))
    assert again == first


@pytest.mark.parametrize("marathon,noops", [("/web", "web"), ("/prod/web", "prod--web"), ("prod/web", "prod--web"),
                                            ("//prod//web/", "prod--web"), ("/a/b/c", "a--b--c")])
def test_ids_map_both_ways(marathon: str, noops: str) -> None:
    assert ids.to_noops(marathon) == noops
    assert ids.to_marathon(noops) == ids.collapse(marathon)


@pytest.mark.parametrize("marathon", ["/", "/Prod", "/a.b", "/a--b", "/-a", "/a-", "/..", "/" + "a" * 64,
                                      "/" + "/".join(["abcdefghij"] * 6), "/a_b"])
def test_ids_that_cannot_map_are_refused(marathon: str) -> None:
    with pytest.raises(ids.BadId):
        ids.to_noops(marathon)


def test_task_and_deployment_ids() -> None:
    assert ids.app_of_task("prod--web-0123456789ab") == "prod--web"
    assert ids.app_of_task("prod--web.0123") is None
    assert ids.parse_deployment_id(ids.deployment_id("prod--web", 7)) == ("prod--web", 7)
    assert ids.parse_deployment_id("nope") is None
    t = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    assert ids.timestamp(t) == "2026-01-02T03:04:05.678901Z"
    assert ids.parse_timestamp(ids.timestamp(t)) == t


# go-marathon's types (marathon/application.go, task.go, health.go), as Go's encoding/json reads
# them: a constraint is []string, labels map[string]string, ports []int; a wrong type fails.
class GoHealthCheckResult(msgspec.Struct):
    alive: bool
    taskId: str


class GoIp(msgspec.Struct):
    ipAddress: str
    protocol: str


class GoTask(msgspec.Struct):
    id: str
    appId: str
    host: str
    ports: list[int]
    servicePorts: list[int]
    state: str
    stagedAt: str
    startedAt: str | None
    version: str
    healthCheckResults: list[GoHealthCheckResult]
    ipAddresses: list[GoIp]
    slaveId: str


class GoPortMapping(msgspec.Struct):
    containerPort: int
    hostPort: int
    servicePort: int
    protocol: str
    name: str
    labels: dict[str, str]


class GoDocker(msgspec.Struct):
    image: str
    privileged: bool
    forcePullImage: bool


class GoContainer(msgspec.Struct):
    type: str
    docker: GoDocker
    portMappings: list[GoPortMapping]
    volumes: list[dict[str, str]]


class GoHealthCheck(msgspec.Struct):
    protocol: str
    gracePeriodSeconds: int | float
    intervalSeconds: int | float
    timeoutSeconds: int | float
    maxConsecutiveFailures: int
    portIndex: int | None = None
    path: str | None = None


class GoDeploymentID(msgspec.Struct):
    id: str


class GoApp(msgspec.Struct):
    id: str
    cmd: str | None
    args: list[str] | None
    container: GoContainer
    cpus: float
    mem: float
    disk: float
    instances: int
    env: dict[str, str]
    labels: dict[str, str]
    constraints: list[list[str]]
    healthChecks: list[GoHealthCheck]
    tasks: list[GoTask]
    tasksRunning: int
    tasksStaged: int
    tasksHealthy: int
    tasksUnhealthy: int
    deployments: list[GoDeploymentID]
    version: str
    portDefinitions: list[dict[str, str]]


class GoApps(msgspec.Struct):
    apps: list[GoApp]


def test_embedded_apps_decode_as_go_clients_decode_them() -> None:
    native = spec({"container": DOCKER, "instances": 2, "labels": {"HAPROXY_0_VHOST": "web.example"},
                   "constraints": [["hostname", "MAX_PER", "2"]],
                   "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0}]})
    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    row = {"id": "prod--web", "deployment_id": 3, "deployment_state": "running", "deployment_to": 2,
           "failure_instance": None, "version_at": now}
    rs = shapes.run_spec({"app": "prod--web", "created_at": now, "checks": 1, "ports": json.dumps([{"name": "http", "container_port": 80}])},
                         {"http": 10001})
    tasks = [{"id": f"prod--web-{n:012x}", "app": "prod--web", "version": 2, "host": "h1", "state": state,
              "desired": "RUNNING", "kill_requested": False, "ip": "198.18.0.9" if state == "RUNNING" else "",
              "healthy": healthy, "health": "", "created_at": now, "updated_at": now}
             for n, (state, healthy) in enumerate([("RUNNING", True), ("STARTING", None)])]
    body = {"apps": [shapes.app(row, native.model_dump(mode="json"), service_ports={"http": 10001}, tasks=tasks,
                                shaped=[shapes.task(t, rs) for t in tasks], embed_failure=True)]}
    got = msgspec.json.decode(json.dumps(body).encode(), type=GoApps, strict=True)
    app = got.apps[0]
    assert app.id == "/prod/web" and app.constraints == [["hostname", "MAX_PER", "2"]]
    assert app.labels == {"HAPROXY_0_VHOST": "web.example"}
    assert [t.state for t in app.tasks] == ["TASK_RUNNING", "TASK_STAGING"]
    assert app.tasks[0].healthCheckResults[0].alive is True and app.tasks[1].healthCheckResults == []
    assert app.tasks[0].ipAddresses[0].ipAddress == "198.18.0.9" and app.tasks[0].servicePorts == [10001]
    assert (app.tasksRunning, app.tasksStaged, app.tasksHealthy) == (1, 1, 1)
    assert app.deployments[0].id == "prod--web.2"
    assert app.container.portMappings[0].servicePort == 10001
