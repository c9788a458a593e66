"""Rows of the task log → the JSON the API returns.  Pure functions, one per resource."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from libs.messages import STATES


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def app(row: Mapping[str, Any]) -> dict[str, Any]:
    counts = json.loads(row["counts"])
    return {
        "id": row["id"],
        "version": row["version"],
        "instances": row["instances"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        # Every state is present, zero or not, so clients need no defaulting.
        "counts": {s: int(counts.get(s, 0)) for s in STATES},
        "spec": json.loads(row["spec"]),
        "last_good_version": row["last_good_version"],
        # Crash-loop backoff: the current relaunch delay (reset with DELETE .../delay).
        "backoff": {"delay_s": round(float(row["backoff_delay_s"]), 3), "launch_after": _iso(row["launch_after"])},
        "deployment": None if row["deployment_id"] is None else {
            "id": row["deployment_id"], "state": row["deployment_state"], "from_version": row["deployment_from"],
            "to_version": row["deployment_to"], "reason": row["deployment_reason"],
            "progress": json.loads(row["deployment_progress"] or "{}")},
        # Marathon's lastTaskFailure: the last instance of this incarnation that ended FAILED or LOST,
        # kept after retention removed its row (app_failures, migration 0014).
        "last_failure": last_failure(row),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def last_failure(row: Mapping[str, Any]) -> dict[str, Any] | None:
    if row.get("failure_instance") is None:
        return None
    return {"instance": row["failure_instance"], "state": row["failure_state"], "reason": row["failure_reason"],
            "at": _iso(row["failure_at"]), "version": row["failure_version"], "host": row["failure_host"]}


_INSTANCE_FIELDS = ("id", "app", "version", "host", "epoch", "desired", "state", "ip", "container_id", "reason")


def instance(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in _INSTANCE_FIELDS}
    # The interface hostd gave it (issue 3): MAC, the host NIC it hangs off, the DHCP lease's end.
    out["mac"] = row.get("mac", "")
    out["parent"] = row.get("parent", "")
    out["lease_expires"] = _iso(row.get("lease_expires"))
    # Health checks (issue 5): hostd's last verdict (null: no checks, or none counted yet) and result.
    out["healthy"] = row.get("healthy")
    out["health"] = row.get("health", "")
    out["created_at"] = _iso(row["created_at"])
    out["updated_at"] = _iso(row["updated_at"])
    return out


def host(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "cpus": row["cpus"],
        "mem_mb": row["mem_mb"],
        "labels": json.loads(row["labels"]),
        "load1": row["load1"],
        "instances": row["instances"],
        "last_seen": _iso(row["last_seen"]),
        "online": bool(row["online"]),
        "state": row["state"],
        "draining": row["draining"],
        "cordoned": row["cordoned"],
        "epoch": row["epoch"],
        "reserved": {"cpus": round(float(row["reserved_cpus"]), 6), "mem_mb": int(row["reserved_mem_mb"])},
    }


def hosts_for_apps(hosts: list[dict[str, Any]], rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Hosts as a token limited to some apps sees them: instances and reservations of only the
    apps in ``rows`` (host_reservations_by_app, already filtered to the token's apps)."""
    per_host: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        per_host.setdefault(r["host"], []).append(r)
    out = []
    for h in hosts:
        mine = per_host.get(h["id"], [])
        out.append({**h, "instances": sum(int(r["n"]) for r in mine),
                    "reserved": {"cpus": round(sum(float(r["cpus"]) for r in mine), 6),
                                 "mem_mb": sum(int(r["mem_mb"]) for r in mine)}})
    return out


def deployment(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "from_version": row["from_version"], "to_version": row["to_version"],
        "state": row["state"], "reason": row["reason"], "progress": json.loads(row["progress"] or "{}"),
        "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]),
        "progress_at": _iso(row["progress_at"]),
        # The token that made the version this deployment rolls out.
        "created_by": row.get("created_by", ""),
    }


def version(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"version": row["version"], "spec": json.loads(row["spec"]), "created_at": _iso(row["created_at"]),
            "created_by": row["created_by"]}


def with_lb(app_view: dict[str, Any], lb_rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Where the load balancer serves each named port of the app (assigned by the registry's fan-out,
    so it appears shortly after the app's first instance reports)."""
    lb = {r["port_name"]: f"{r['bind_host']}:{r['port']}" for r in lb_rows if r["app"] == app_view["id"]}
    return {**app_view, "lb": dict(sorted(lb.items()))}


def prometheus_targets(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """In-service instances in Prometheus' HTTP service-discovery format: one target group per
    instance and named port, labelled app, version, host, instance, port_name."""
    out = []
    for r in rows:
        for p in json.loads(r["ports"] or "[]"):
            out.append({"targets": [f"{r['ip']}:{p['container_port']}"],
                        "labels": {"app": r["app"], "version": str(r["version"]), "host": r["host"],
                                   "instance": r["id"], "port_name": p["name"]}})
    return out
