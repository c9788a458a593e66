"""Rows of the task log → the JSON the API returns.  Pure functions, one per resource."""
from __future__ import annotations

import json
from collections.abc import Mapping
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
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


_INSTANCE_FIELDS = ("id", "app", "version", "host", "epoch", "desired", "state", "ip", "container_id", "reason")


def instance(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in _INSTANCE_FIELDS}
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
        "reserved": {"cpus": round(float(row["reserved_cpus"]), 6), "mem_mb": int(row["reserved_mem_mb"])},
    }
