"""Checks on a valid spec that need more than the spec: cluster limits.  Pure; the caller fetches
the limits, so these are unit-tested without a database."""
from __future__ import annotations

from dataclasses import dataclass

from libs.appspec import AppSpec


@dataclass(frozen=True)
class Limits:
    max_instances: int
    host_cpus: float | None = None   # the largest host's; None while no host has registered
    host_mem_mb: int | None = None


def problems(spec: AppSpec, limits: Limits) -> list[dict[str, str]]:
    """One entry per violated limit, each naming the field.  An instance larger than every host
    could never be placed, so it is refused now instead of sitting unschedulable forever."""
    return (instance_problems(spec.instances, limits.max_instances)
            + resource_problems(spec.resources.cpus, spec.resources.mem_mb, limits))


def instance_problems(instances: int, max_instances: int) -> list[dict[str, str]]:
    if instances > max_instances:
        return [{"field": "instances",
                 "reason": f"at most {max_instances} instances per app (NOOPS_MAX_INSTANCES_PER_APP)"}]
    return []


def resource_problems(cpus: float, mem_mb: int, limits: Limits) -> list[dict[str, str]]:
    out = []
    if limits.host_cpus is not None and cpus > limits.host_cpus:
        out.append({"field": "resources.cpus",
                    "reason": f"{cpus:g} cpus is more than the largest host has ({limits.host_cpus:g})"})
    if limits.host_mem_mb is not None and mem_mb > limits.host_mem_mb:
        out.append({"field": "resources.mem_mb",
                    "reason": f"{mem_mb} MiB is more than the largest host has ({limits.host_mem_mb})"})
    return out
