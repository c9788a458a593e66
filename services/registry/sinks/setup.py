"""Builds the enabled sinks from the registry's settings, each wrapped in its runner."""
from __future__ import annotations

import logging
from pathlib import Path

from libs import retry
from libs.settings import RegistrySettings
from services.registry.sinks import ipvs
from services.registry.sinks.base import Sink
from services.registry.sinks.haproxy import HAProxyOptions, HAProxySink
from services.registry.sinks.haproxy_config import Paths
from services.registry.sinks.nft import NftSink
from services.registry.sinks.runner import Observer, SinkRunner

log = logging.getLogger("noops.registry.sinks")


def build_sinks(settings: RegistrySettings) -> list[Sink]:
    out: list[Sink] = []
    for name in settings.sink_names():
        if name == "haproxy":
            out.append(HAProxySink(HAProxyOptions(
                paths=Paths(Path(settings.haproxy_dir)), port_range=settings.lb_port_range(),
                bind_host=settings.lb_bind_host, spare=settings.lb_spare_frontends,
                drain_timeout_s=settings.lb_drain_timeout_s, check_interval_s=settings.lb_check_interval_s)))
        elif name == "nft":
            out.append(NftSink(settings.nft_table))
        elif name == "ipvs":
            if ipvs.available():
                out.append(ipvs.IpvsSink(settings.ipvs_vip or settings.lb_bind_host))
            else:
                log.warning("sink ipvs left out: this kernel has no IPVS (/proc/net/ip_vs is missing)")
    return out


def runners(sinks: list[Sink], settings: RegistrySettings, observers: tuple[Observer, ...] = ()) -> list[SinkRunner]:
    return [SinkRunner(s, backoff=retry.Policy(base_s=settings.common.retry_base_s, cap_s=settings.sink_backoff_max_s), observers=observers) for s in sinks]
