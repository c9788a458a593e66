"""Rows of the task log -> Marathon's response objects (apps, tasks, deployments, info).  Pure.
Only fields marathon-python knows appear (its models raise on any other: docs/marathon.md)."""
from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.gateway import views
from services.gateway.marathon import ids, translate

STATE = {"PENDING": "TASK_STAGING", "STARTING": "TASK_STAGING", "RUNNING": "TASK_RUNNING",
         "FAILED": "TASK_FAILED", "KILLED": "TASK_KILLED", "LOST": "TASK_LOST"}
# Marathon's version, as dcos-cli and others check it (>= 0.8.1); buildref says who answers.
VERSION = "1.11.0"


def task_state(row: Mapping[str, Any]) -> str:
    """An instance being stopped is TASK_KILLING, so load balancers drop it before it goes
    (marathon-lb kept killed tasks in rotation: its issues #129, #194)."""
    if row["state"] not in ("FAILED", "KILLED", "LOST") and (row["desired"] != "RUNNING" or row["kill_requested"]):
        return "TASK_KILLING"
    return STATE[row["state"]]


@dataclass(frozen=True)
class RunSpec:
    """What the tasks of one app version share (a task_versions row, with the app's assigned
    load-balancer ports): shaped once per version, not once per task."""
    app: str                   # the Marathon id
    version: str | None
    ports: list[int]
    service_ports: list[int]
    checks: int


def run_spec(row: Mapping[str, Any], service_ports: Mapping[str, int]) -> RunSpec:
    ports = json.loads(row["ports"] or "[]")
    return RunSpec(ids.to_marathon(row["app"]), ids.timestamp(row["created_at"]), [p["container_port"] for p in ports],
                   [service_ports.get(p["name"], 0) for p in ports], row["checks"])


def task(row: Mapping[str, Any], rs: RunSpec) -> dict[str, Any]:
    """A live_tasks row, of the version ``rs`` describes."""
    running = row["state"] == "RUNNING"
    healthy = row["healthy"]
    results = []
    if running and rs.checks and healthy is not None:
        # noops keeps one verdict over all of an instance's checks: each check shows it.
        results = [{"alive": bool(healthy), "consecutiveFailures": 0 if healthy else 1,
                    "firstSuccess": None, "lastFailure": None, "lastSuccess": None,
                    "lastFailureCause": None if healthy else (row["health"] or None),
                    "taskId": row["id"], "instanceId": row["id"]}] * rs.checks
    ip = row["ip"]
    return {
        "id": row["id"],
        "appId": rs.app,
        "host": row["host"],
        "slaveId": row["host"],
        "state": task_state(row),
        "ports": rs.ports,
        "servicePorts": rs.service_ports,
        "ipAddresses": [{"ipAddress": ip, "protocol": "IPv4"}] if ip else [],
        "stagedAt": ids.timestamp(row["created_at"]),
        "startedAt": ids.timestamp(row["updated_at"]) if running else None,
        "version": rs.version,
        "healthCheckResults": results,
        "localVolumes": [],
    }


def counts(tasks: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    out = {"tasksRunning": 0, "tasksStaged": 0, "tasksHealthy": 0, "tasksUnhealthy": 0}
    for t in tasks:
        if t["state"] == "RUNNING":
            out["tasksRunning"] += 1
            out["tasksHealthy"] += t["healthy"] is True
            out["tasksUnhealthy"] += t["healthy"] is False
        elif t["state"] in ("PENDING", "STARTING"):
            out["tasksStaged"] += 1
    return out


def open_deployments(row: Mapping[str, Any]) -> list[dict[str, str]]:
    """The app's deployment in progress, from an apps_view row."""
    if row["deployment_id"] is None or row["deployment_state"] not in ("running", "paused"):
        return []
    return [{"id": ids.deployment_id(row["id"], row["deployment_to"])}]


def last_task_failure(row: Mapping[str, Any]) -> dict[str, Any] | None:
    f = views.last_failure(row)
    if f is None:
        return None
    at = ids.timestamp(row["failure_at"])
    return {"appId": ids.to_marathon(row["id"]), "host": f["host"], "message": f["reason"],
            "state": STATE.get(f["state"], "TASK_FAILED"), "taskId": f["instance"], "instanceId": f["instance"],
            "slaveId": f["host"], "timestamp": at, "version": at}


def app(row: Mapping[str, Any], spec: Mapping[str, Any], *, service_ports: Mapping[str, int],
        tasks: list[Mapping[str, Any]], shaped: list[dict[str, Any]] | None, embed_failure: bool) -> dict[str, Any]:
    """``row``: a marathon_apps row; ``spec``: its spec as the token may see it (env redacted);
    ``tasks``: live_tasks rows of the app (for the counts); ``shaped``: its tasks if embedded."""
    out = definition(spec, service_ports=service_ports)
    at = ids.timestamp(row["version_at"])
    out.update(version=at, versionInfo={"lastScalingAt": at, "lastConfigChangeAt": at}, **counts(tasks),
               deployments=open_deployments(row))
    if shaped is not None:
        out["tasks"] = shaped
    if embed_failure:
        out["lastTaskFailure"] = last_task_failure(row)
    return out


def _action(row: Mapping[str, Any]) -> str:
    return "StartApplication" if row["from_version"] is None else "RestartApplication"


def deployment(row: Mapping[str, Any]) -> dict[str, Any]:
    """An open_deployments row: one step, one action (noops rolls one app per deployment)."""
    mid = ids.to_marathon(row["app"])
    action = _action(row)
    return {"id": ids.deployment_id(row["app"], row["to_version"]), "version": ids.timestamp(row["version_at"]),
            "affectedApps": [mid], "affectedPods": [],
            "steps": [{"actions": [{"action": action, "app": mid}]}],
            "currentActions": [{"action": action, "app": mid, "readinessCheckResults": []}],
            "currentStep": 1, "totalSteps": 1}


def deployment_result(app_id: str, version: int, at: datetime | None) -> dict[str, Any]:
    return {"deploymentId": ids.deployment_id(app_id, version), "version": ids.timestamp(at)}


def info(*, leader: str, framework_id: str, http_port: int) -> dict[str, Any]:
    # The three config objects must be objects (marathon-python builds them with **fields, and
    # crashes on null or on keys it does not know).
    return {"name": "marathon", "version": VERSION, "buildref": "noops", "elected": True, "leader": leader,
            "frameworkId": framework_id,
            "marathon_config": {"framework_name": "noops", "hostname": leader.rsplit(":", 1)[0], "ha": True,
                                "checkpoint": True},
            "zookeeper_config": {}, "http_config": {"http_port": http_port}}


def definition(spec: Mapping[str, Any], *, service_ports: Mapping[str, int] | None = None) -> dict[str, Any]:
    """A stored native spec (``model_dump(mode="json")``, env redacted for viewers) as the fields
    of a Marathon app; the caller adds version, counts, tasks and deployments."""
    sp = service_ports or {}
    ports = spec.get("ports") or []
    names = [p["name"] for p in ports]
    res = spec.get("resources") or {}
    us = spec.get("upgrade_strategy") or {}
    cmd = list(spec.get("cmd") or [])
    shell = translate.from_shell(cmd)
    out: dict[str, Any] = {
        "id": ids.to_marathon(spec["id"]),
        "cmd": shell,
        "args": cmd if shell is None and cmd else None,
        "container": {
            "type": "DOCKER",
            "docker": {"image": spec["image"], "privileged": False, "forcePullImage": False},
            "portMappings": [{"name": p["name"], "containerPort": p["container_port"], "hostPort": p["host_port"],
                              "servicePort": sp.get(p["name"], 0), "protocol": p["protocol"], "labels": {}}
                             for p in ports],
            "volumes": [],
        },
        "networks": [{"mode": "container", "name": "noops"}],
        "portDefinitions": [],
        "requirePorts": any(p["host_port"] for p in ports),
        "cpus": res.get("cpus", 0.1), "mem": res.get("mem_mb", 32), "disk": res.get("disk_mb", 0), "gpus": 0,
        "instances": spec.get("instances", 1),
        "env": dict(spec.get("env") or {}),
        "labels": dict(spec.get("labels") or {}),
        "constraints": [list(c) for c in spec.get("constraints") or []],
        "healthChecks": [_hc_out(hc, names) for hc in spec.get("health_checks") or []],
        "upgradeStrategy": {"minimumHealthCapacity": us.get("minimum_health_capacity", 1.0),
                            "maximumOverCapacity": us.get("maximum_over_capacity", 1.0)},
        "backoffSeconds": spec.get("backoff_seconds", 1.0),
        "backoffFactor": spec.get("backoff_factor", 1.15),
        "maxLaunchDelaySeconds": spec.get("max_launch_delay_seconds", 300.0),
        "killSelection": "YOUNGEST_FIRST",
        "taskKillGracePeriodSeconds": spec.get("kill_grace_s"),
        "user": (spec.get("security") or {}).get("user"),
    }
    return out


def _hc_out(hc: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "protocol": hc["protocol"], "gracePeriodSeconds": hc.get("grace_period_s", 300.0),
        "intervalSeconds": hc.get("interval_s", 60.0), "timeoutSeconds": hc.get("timeout_s", 20.0),
        "maxConsecutiveFailures": hc.get("max_consecutive_failures", 3), "ignoreHttp1xx": False,
    }
    if hc["protocol"] == "COMMAND":
        command = list(hc.get("command") or [])
        out["command"] = {"value": translate.from_shell(command) or shlex.join(command)}
    else:
        out["portIndex"] = names.index(hc["port_name"]) if hc.get("port_name") in names else 0
        if hc["protocol"] == "HTTP":
            out["path"] = hc.get("path", "/")
    return out
