"""Marathon app JSON -> the native spec (libs/appspec.AppSpec).  Pure: no I/O.

``app_to_spec`` reads a Marathon app definition onto a base spec (the current one for a
partial update, none for a create) and returns an ``AppSpec``, or raises ``Invalid`` with
Marathon's 422 details (``[{"path": "/container/docker/privileged", "errors": [...]}]``).  What
noops cannot honour is refused, never dropped; read-only fields a client sends back after a GET
are accepted and ignored; unknown fields are refused.  The other way is ``shapes.definition``.
The table of what maps to what is in docs/marathon.md."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pydantic

from libs.appspec import AppSpec

# Sent back by clients after a GET (marathon-python's update_app does): accepted, ignored.
READ_ONLY = frozenset({"tasksRunning", "tasksStaged", "tasksHealthy", "tasksUnhealthy", "tasks", "deployments",
                       "versionInfo", "lastTaskFailure", "version", "taskStats", "readinessCheckResults"})
# Marathon fields noops has no use for, accepted only with the value that means "nothing"
# (whatever else would change behaviour, so it is refused).
NEUTRAL: dict[str, Callable[[Any], bool]] = {
    "acceptedResourceRoles": lambda v: v in ([], ["*"]),
    "dependencies": lambda v: v == [],
    "executor": lambda v: v in ("", "//cmd"),
    "fetch": lambda v: v == [],
    "uris": lambda v: v == [],
    "storeUrls": lambda v: v == [],
    "gpus": lambda v: v == 0 and not isinstance(v, bool),
    "readinessChecks": lambda v: v == [],
    "secrets": lambda v: v == {},
    "role": lambda v: v == "*",
    "requirePorts": lambda v: isinstance(v, bool),
}
WHY_NOT = {
    "acceptedResourceRoles": "noops has no Mesos roles",
    "dependencies": "noops deploys each app on its own (no start order between apps)",
    "executor": "noops runs containers, no custom executors",
    "fetch": "noops does not fetch URIs into the sandbox: put them in the image",
    "uris": "noops does not fetch URIs into the sandbox: put them in the image",
    "storeUrls": "noops does not fetch URIs into the sandbox",
    "gpus": "noops hosts offer no GPUs",
    "readinessChecks": "noops has no readiness checks: health checks gate deployments",
    "secrets": "noops has no secret store: pass values in env",
    "role": "noops has no Mesos roles",
    "requirePorts": "must be a boolean",
    "residency": "noops has no resident tasks (a volume is per instance: disk)",
    "ipAddress": "noops gives every container its own address; ipAddress is not configurable",
    "unreachableStrategy": "noops replaces LOST instances itself (no per-app unreachable strategy)",
    "taskRateLimit": "noops has no launch rate limit per app (backoffSeconds, backoffFactor)",
}
NULL_ONLY = ("residency", "ipAddress", "unreachableStrategy", "taskRateLimit")
SIMPLE = ("cpus", "mem", "disk", "instances", "backoffSeconds", "backoffFactor", "maxLaunchDelaySeconds")
KNOWN = frozenset({"id", "cmd", "args", "container", "portDefinitions", "ports", "env", "labels", "constraints",
                   "healthChecks", "upgradeStrategy", "killSelection", "user", "networks",
                   "taskKillGracePeriodSeconds", *SIMPLE,
                   *READ_ONLY, *NEUTRAL, *NULL_ONLY})
# Marathon's defaults where they differ from noops' (a Marathon user omitting cpus expects 1).
CREATE_DEFAULTS = {"cpus": 1.0, "mem": 128}
SHELL = ["/bin/sh", "-c"]
HC_PROTOCOLS = {"HTTP": "HTTP", "MESOS_HTTP": "HTTP", "TCP": "TCP", "MESOS_TCP": "TCP", "COMMAND": "COMMAND"}
HC_KEYS = frozenset({"protocol", "path", "portIndex", "port", "command", "gracePeriodSeconds", "intervalSeconds",
                     "timeoutSeconds", "maxConsecutiveFailures", "ignoreHttp1xx", "delaySeconds"})
HC_NUMBERS = {"gracePeriodSeconds": "grace_period_s", "intervalSeconds": "interval_s", "timeoutSeconds": "timeout_s"}
PORT_KEYS = frozenset({"name", "containerPort", "hostPort", "servicePort", "protocol", "labels", "networkNames"})
PORT_DEF_KEYS = frozenset({"port", "name", "protocol", "labels"})


class Invalid(Exception):
    """Marathon's 422: ``details`` as ``[{"path": ..., "errors": [...]}]``."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__("Object is not valid")
        self.details = details


def problem(path: str, error: str) -> dict[str, Any]:
    return {"path": path, "errors": [error]}


class _Reader:
    """Collects every problem of one definition, so a 422 names them all at once."""

    def __init__(self) -> None:
        self.problems: list[dict[str, Any]] = []

    def fail(self, path: str, error: str) -> None:
        self.problems.append(problem(path, error))

    def number(self, v: Any, path: str) -> float | None:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            self.fail(path, "must be a number")
            return None
        return v

    def integer(self, v: Any, path: str) -> int | None:
        n = self.number(v, path)
        if n is None:
            return None
        if n != int(n):
            self.fail(path, "must be a whole number")
            return None
        return int(n)

    def obj(self, v: Any, path: str, keys: frozenset[str]) -> dict[str, Any]:
        if not isinstance(v, dict):
            self.fail(path, "must be an object")
            return {}
        for k in v:
            if k not in keys:
                self.fail(f"{path}/{k}", "unknown field (noops refuses what it would not honour)")
        return v

    def strings(self, v: Any, path: str) -> dict[str, str]:
        if not isinstance(v, dict):
            self.fail(path, "must be an object of strings")
            return {}
        for k, value in v.items():
            if isinstance(value, dict) and "secret" in value:
                self.fail(f"{path}/{k}", "secret references are not supported: noops has no secret store")
            elif not isinstance(value, str):
                self.fail(f"{path}/{k}", "must be a string")
        return {k: value for k, value in v.items() if isinstance(value, str)}


def _shell(command: str) -> list[str]:
    return [*SHELL, command]


def from_shell(argv: list[str]) -> str | None:
    return argv[2] if len(argv) == 3 and argv[:2] == SHELL else None


def _ports(r: _Reader, body: Mapping[str, Any], service_ports: Mapping[str, int]) -> tuple[list[dict], str] | None:
    """The ports of the definition and the Marathon path they came from; None if it names none."""
    container = body.get("container") or {}
    mappings = container.get("portMappings") if isinstance(container, dict) else None
    docker = container.get("docker") if isinstance(container, dict) else None
    if isinstance(docker, dict) and docker.get("portMappings"):
        if mappings:
            r.fail("/container/docker/portMappings", "give portMappings once (container.portMappings)")
        mappings, where = docker["portMappings"], "/container/docker/portMappings"
    else:
        where = "/container/portMappings"
    legacy = body.get("ports") or []
    defs = body.get("portDefinitions") or [{"port": p} for p in (legacy if isinstance(legacy, list) else [legacy])]
    if mappings and defs:
        r.fail("/portDefinitions", "give container.portMappings or portDefinitions, not both")
        return None
    if defs:
        return [_port_definition(r, p, f"/portDefinitions/{i}", i) for i, p in enumerate(_list(r, defs, "/portDefinitions"))], "/portDefinitions"
    if mappings is not None or "container" in body or "portDefinitions" in body or "ports" in body:
        return [_port_mapping(r, p, f"{where}/{i}", i, service_ports) for i, p in enumerate(_list(r, mappings or [], where))], where
    return None


def _list(r: _Reader, v: Any, path: str) -> list[Any]:
    if not isinstance(v, list):
        r.fail(path, "must be an array")
        return []
    return v


def _port_common(r: _Reader, p: dict[str, Any], path: str, i: int) -> dict[str, Any]:
    protocol = p.get("protocol", "tcp")
    if protocol not in ("tcp", "udp"):
        r.fail(f"{path}/protocol", "tcp or udp (one protocol per port)")
    if p.get("labels"):
        r.fail(f"{path}/labels", "port labels are not supported (the load balancer is noops' own)")
    name = p.get("name")
    return {"name": name if isinstance(name, str) and name else f"port{i}", "protocol": protocol}


def _port_mapping(r: _Reader, p: Any, path: str, i: int, service_ports: Mapping[str, int]) -> dict[str, Any]:
    p = r.obj(p, path, PORT_KEYS)
    out = _port_common(r, p, path, i)
    cport = r.integer(p.get("containerPort"), f"{path}/containerPort") if "containerPort" in p else None
    if cport is not None and cport == 0:
        r.fail(f"{path}/containerPort", "noops needs the port the app listens on (no 0)")
    out["container_port"] = cport if cport is not None else 0
    host = p.get("hostPort")
    out["host_port"] = (r.integer(host, f"{path}/hostPort") or 0) if host is not None else 0
    service = p.get("servicePort")
    if service not in (None, 0) and service != service_ports.get(out["name"]):
        r.fail(f"{path}/servicePort", "noops assigns service ports (the app's load balancer port); send 0 or "
                                      "the one it assigned")
    return out


def _port_definition(r: _Reader, p: Any, path: str, i: int) -> dict[str, Any]:
    p = r.obj(p, path, PORT_DEF_KEYS)
    out = _port_common(r, p, path, i)
    port = r.integer(p.get("port"), f"{path}/port")
    if port == 0:
        r.fail(f"{path}/port", "noops needs the port the app listens on (no 0: no random ports)")
    out["container_port"] = port or 0
    return out


def _container(r: _Reader, c: Any, d: dict[str, Any]) -> None:
    c = r.obj(c, "/container", frozenset({"type", "docker", "portMappings", "volumes"}))
    if c.get("type", "DOCKER") not in ("DOCKER", "MESOS"):
        r.fail("/container/type", "DOCKER or MESOS (with a docker image)")
    if c.get("volumes"):
        r.fail("/container/volumes", "noops mounts one volume per instance (disk), no host or external volumes")
    docker = r.obj(c.get("docker"), "/container/docker", frozenset({
        "image", "privileged", "forcePullImage", "network", "portMappings", "parameters"}))
    if not isinstance(docker.get("image"), str) or not docker.get("image"):
        r.fail("/container/docker/image", "noops runs every app from a docker image: required")
    else:
        d["image"] = docker["image"]
    if docker.get("privileged", False) is not False:
        r.fail("/container/docker/privileged", "privileged containers are not supported (security.cap_add in the "
                                               "native API gives single capabilities back)")
    if docker.get("forcePullImage", False) is not False:
        r.fail("/container/docker/forcePullImage", "not supported: pin the image by tag or digest")
    if docker.get("network") not in (None, "BRIDGE", "USER"):
        r.fail("/container/docker/network", "noops gives every container its own address (BRIDGE or USER); "
                                            "HOST and NONE are not supported")
    if docker.get("parameters"):
        r.fail("/container/docker/parameters", "raw docker parameters are not supported")


def _health_check(r: _Reader, hc: Any, path: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    hc = r.obj(hc, path, HC_KEYS)
    protocol = HC_PROTOCOLS.get(hc.get("protocol", "HTTP"))
    if protocol is None:
        r.fail(f"{path}/protocol", "HTTP, TCP or COMMAND (MESOS_HTTP, MESOS_TCP alike); HTTPS is not supported")
        return {}
    out: dict[str, Any] = {"protocol": protocol}
    for key, native in HC_NUMBERS.items():
        if hc.get(key) is not None:
            out[native] = r.number(hc[key], f"{path}/{key}")
    if hc.get("maxConsecutiveFailures") is not None:
        out["max_consecutive_failures"] = r.integer(hc["maxConsecutiveFailures"], f"{path}/maxConsecutiveFailures")
    if hc.get("ignoreHttp1xx"):
        r.fail(f"{path}/ignoreHttp1xx", "not supported: HTTP checks pass on 200-399")
    if hc.get("delaySeconds") not in (None, 15):
        r.fail(f"{path}/delaySeconds", "not supported: gracePeriodSeconds delays the counting")
    if protocol == "COMMAND":
        command = hc.get("command")
        value = command.get("value") if isinstance(command, dict) else None
        if not isinstance(value, str) or not value:
            r.fail(f"{path}/command", 'COMMAND checks need {"value": "<shell command>"}')
        else:
            out["command"] = _shell(value)
        return out
    if hc.get("path") is not None and protocol == "HTTP":
        out["path"] = hc["path"]
    if hc.get("port") is not None:
        port = r.integer(hc["port"], f"{path}/port")
        named = [p["name"] for p in ports if p["container_port"] == port]
        if not named:
            r.fail(f"{path}/port", f"{port} is none of the app's ports")
        else:
            out["port_name"] = named[0]
    else:
        index = r.integer(hc.get("portIndex", 0), f"{path}/portIndex")
        if index is not None:
            if not 0 <= index < len(ports):
                r.fail(f"{path}/portIndex", f"the app has {len(ports)} port(s)")
            else:
                out["port_name"] = ports[index]["name"]
    return out


def _constraints(r: _Reader, v: Any) -> list[list[str]]:
    out = []
    for i, c in enumerate(_list(r, v, "/constraints")):
        if not isinstance(c, list) or not all(isinstance(x, str) for x in c):
            r.fail(f"/constraints/{i}", '["field", "OPERATOR", "value"] of strings (the value too: "3", not 3)')
            continue
        if len(c) >= 2 and c[1] == "IS":   # IS is CLUSTER with a value (libs/constraints.py)
            c = [c[0], "CLUSTER", *c[2:]]
        out.append(c)
    return out


def _upgrade(r: _Reader, v: Any, d: dict[str, Any]) -> None:
    v = r.obj(v, "/upgradeStrategy", frozenset({"minimumHealthCapacity", "maximumOverCapacity"}))
    us = dict(d.get("upgrade_strategy") or {})
    for key, native in (("minimumHealthCapacity", "minimum_health_capacity"),
                        ("maximumOverCapacity", "maximum_over_capacity")):
        if key in v:
            n = r.number(v[key], f"/upgradeStrategy/{key}")
            if n is not None and n > 1:
                r.fail(f"/upgradeStrategy/{key}", "is greater than 1")
            elif n is not None and n < 0:
                r.fail(f"/upgradeStrategy/{key}", "is less than 0")
            us[native] = n
        else:
            us[native] = 1.0
    d["upgrade_strategy"] = us


def app_to_spec(body: Any, *, app_id: str, base: AppSpec | None,
                service_ports: Mapping[str, int] | None = None) -> AppSpec:
    """``app_id``: the noops id (from the path or ``body["id"]``, mapped by the caller).
    ``base``: the spec fields start from (a partial update); None on create or full replace.
    ``service_ports``: port name -> the app's assigned load-balancer port (a client may send it back)."""
    r = _Reader()
    if not isinstance(body, dict):
        raise Invalid([problem("/", "an app definition is a JSON object")])
    for k in body:
        if k not in KNOWN:
            r.fail(f"/{k}", "unknown field (noops refuses what it would not honour)")
    d: dict[str, Any] = base.model_dump(mode="json") if base is not None else {}
    d["id"] = app_id
    present = {k: v for k, v in body.items() if v is not None}
    for key, ok in NEUTRAL.items():
        if key in present and not ok(present[key]):
            r.fail(f"/{key}", WHY_NOT[key])
    for key in NULL_ONLY:
        if key in present:
            r.fail(f"/{key}", WHY_NOT[key])
    if "cmd" in present and "args" in present and present["args"]:
        r.fail("/args", "give cmd or args, not both")
    if "cmd" in present:
        if not isinstance(present["cmd"], str):
            r.fail("/cmd", "must be a string")
        else:
            d["cmd"] = _shell(present["cmd"]) if present["cmd"] else []
    elif "args" in present:
        d["cmd"] = list(_list(r, present["args"], "/args"))
    if "container" in present:
        _container(r, present["container"], d)
    elif base is None:
        r.fail("/container", "noops runs every app from a docker image: container.docker.image is required")
    for i, net in enumerate(_list(r, present.get("networks", []), "/networks")):
        if not isinstance(net, dict) or net.get("mode") not in ("container", "container/bridge"):
            r.fail(f"/networks/{i}", "noops gives every container its own address: mode container or "
                                     "container/bridge (no host networking)")
    ports = _ports(r, present, service_ports or {})
    if ports is not None:
        d["ports"] = ports[0]
    resources = dict(d.get("resources") or {})
    values = {**(CREATE_DEFAULTS if base is None else {}), **{k: present[k] for k in SIMPLE if k in present}}
    for key, native in (("cpus", "cpus"), ("mem", "mem_mb"), ("disk", "disk_mb")):
        if key in values:
            n = r.number(values[key], f"/{key}")
            if n is not None:
                resources[native] = n if key == "cpus" else int(math.ceil(n))
    d["resources"] = resources
    if "instances" in values:
        d["instances"] = r.integer(values["instances"], "/instances")
    for key, native in (("backoffSeconds", "backoff_seconds"), ("backoffFactor", "backoff_factor"),
                        ("maxLaunchDelaySeconds", "max_launch_delay_seconds")):
        if key in values:
            d[native] = r.number(values[key], f"/{key}")
    if "env" in present:
        d["env"] = r.strings(present["env"], "/env")
    if "labels" in present:
        d["labels"] = r.strings(present["labels"], "/labels")
    if "constraints" in present:
        d["constraints"] = _constraints(r, present["constraints"])
    if "healthChecks" in present:
        port_list = d.get("ports") or []
        d["health_checks"] = [_health_check(r, hc, f"/healthChecks/{i}", port_list)
                              for i, hc in enumerate(_list(r, present["healthChecks"], "/healthChecks"))]
    if "upgradeStrategy" in present:
        _upgrade(r, present["upgradeStrategy"], d)
    if present.get("killSelection", "YOUNGEST_FIRST") != "YOUNGEST_FIRST":
        r.fail("/killSelection", "noops stops the youngest instances first (YOUNGEST_FIRST only)")
    if "user" in present:
        d["security"] = {**(d.get("security") or {}), "user": present["user"]}
    if "taskKillGracePeriodSeconds" in present:   # the app's stop grace (null: the host's default)
        grace = present["taskKillGracePeriodSeconds"]
        n = None if grace is None else r.number(grace, "/taskKillGracePeriodSeconds")
        d["kill_grace_s"] = None if n is None else int(math.ceil(n))
    if r.problems:
        raise Invalid(r.problems)
    try:
        return AppSpec.model_validate(d)
    except pydantic.ValidationError as exc:
        raise Invalid([problem(marathon_path(e["loc"], ports[1] if ports else "/container/portMappings"),
                               e["msg"]) for e in exc.errors()]) from None


# Native field -> Marathon path, for errors the native validation finds.
_PATHS = {"id": "/id", "image": "/container/docker/image", "cmd": "/cmd", "instances": "/instances",
          "resources.cpus": "/cpus", "resources.mem_mb": "/mem", "resources.disk_mb": "/disk", "env": "/env",
          "labels": "/labels", "constraints": "/constraints", "health_checks": "/healthChecks",
          "upgrade_strategy": "/upgradeStrategy", "backoff_seconds": "/backoffSeconds",
          "backoff_factor": "/backoffFactor", "max_launch_delay_seconds": "/maxLaunchDelaySeconds",
          "security.user": "/user", "ports": "/container/portMappings"}
_LEAVES = {"container_port": "containerPort", "host_port": "hostPort", "port_name": "portIndex",
           "grace_period_s": "gracePeriodSeconds", "interval_s": "intervalSeconds", "timeout_s": "timeoutSeconds",
           "max_consecutive_failures": "maxConsecutiveFailures", "minimum_health_capacity": "minimumHealthCapacity",
           "maximum_over_capacity": "maximumOverCapacity"}


def marathon_path(loc: tuple[Any, ...] | list[Any], ports_path: str = "/container/portMappings") -> str:
    """``("resources", "cpus")`` -> ``/cpus``; ``("health_checks", 0, "interval_s")`` ->
    ``/healthChecks/0/intervalSeconds``; a field with no Marathon name keeps its native one."""
    parts = [str(p) for p in loc]
    for n in range(len(parts), 0, -1):
        head = ".".join(parts[:n])
        if head in _PATHS:
            root = ports_path if head == "ports" else _PATHS[head]
            rest = [_LEAVES.get(p, p) for p in parts[n:]]
            return "/".join([root, *rest])
    return "/" + "/".join(parts) if parts else "/"
