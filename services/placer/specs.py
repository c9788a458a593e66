"""What the placer makes of a stored app spec: the container spec hosts receive, the launch key
that tells whether two versions run the same container, and a cache so that each distinct spec
text is parsed, validated and converted once (the committer re-reads specs at every look)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pydantic

from libs import messages
from libs.appspec import AppSpec, HealthCheck

# Fields that do not change the container: a version differing only in these keeps its instances.
_NOT_LAUNCH = {"instances", "upgrade_strategy", "backoff_seconds", "backoff_factor", "max_launch_delay_seconds"}


def container_spec(spec: AppSpec) -> messages.ContainerSpec:
    return messages.ContainerSpec(
        image=spec.image, cmd=list(spec.cmd), env=dict(spec.env), labels=dict(spec.labels),
        cpus=spec.resources.cpus, mem_mb=spec.resources.mem_mb,
        ports=[messages.PortSpec(name=p.name, container_port=p.container_port, protocol=p.protocol)
               for p in spec.ports],
        disk_mb=spec.resources.disk_mb, egress_mbit=spec.resources.egress_mbit, volume_path=spec.volume_path,
        health_checks=[health_check_spec(spec, c) for c in spec.health_checks],
        security=messages.SecuritySpec(cap_add=list(spec.security.cap_add), user=spec.security.user or "",
                                       read_only_rootfs=spec.security.read_only_rootfs),
        stop_timeout_s=spec.kill_grace_s or 0)


def health_check_spec(spec: AppSpec, c: HealthCheck) -> messages.HealthCheckSpec:
    ports = {p.name: p.container_port for p in spec.ports}
    return messages.HealthCheckSpec(
        protocol=c.protocol, name=c.describe(), port=ports.get(c.port_name or "", 0), path=c.path,
        status_min=c.status[0], status_max=c.status[1], command=list(c.command), grace_period_s=c.grace_period_s,
        interval_s=c.interval_s, timeout_s=c.timeout_s, max_consecutive_failures=c.max_consecutive_failures)


def launch_key(spec_json: dict, restart_gen: int) -> str:
    return json.dumps({k: v for k, v in spec_json.items() if k not in _NOT_LAUNCH} | {"_restart": restart_gen},
                      sort_keys=True)


@dataclass(frozen=True)
class ParsedSpec:
    """One stored spec text, parsed once: a look at an app re-reads its spec and its live
    versions' specs, which change only with a new version, so each distinct text is parsed,
    validated and turned into its container spec once -- not once per look (1,000 apps looked at
    a dozen times each while a deployment comes up)."""
    json: dict
    spec: AppSpec | None        # None: the text is not a valid spec for this version (error says why)
    error: str = ""
    _keys: dict[int, str] = field(default_factory=dict, compare=False)
    _container: list = field(default_factory=list, compare=False)

    def launch_key(self, restart_gen: int) -> str:
        key = self._keys.get(restart_gen)
        if key is None:
            key = self._keys[restart_gen] = launch_key(self.json, restart_gen)
        return key

    def container(self) -> messages.ContainerSpec:
        assert self.spec is not None
        if not self._container:
            self._container.append(container_spec(self.spec))
        return self._container[0]


class SpecCache:
    """Stored spec texts -> ParsedSpec; dropped whole when it outgrows ``limit`` (apps deleted
    or changed many times), so it never grows without bound.  What it hands out is never mutated."""

    def __init__(self, limit: int = 8192) -> None:
        self.limit = limit
        self._parsed: dict[str, ParsedSpec] = {}

    def get(self, text: str | None) -> ParsedSpec:
        text = text or "{}"
        got = self._parsed.get(text)
        if got is None:
            if len(self._parsed) >= self.limit:
                self._parsed.clear()
            spec_json = json.loads(text)
            try:
                got = ParsedSpec(spec_json, AppSpec.model_validate(spec_json))
            except pydantic.ValidationError as exc:
                got = ParsedSpec(spec_json, None, str(exc))
            self._parsed[text] = got
        return got
