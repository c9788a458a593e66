"""Session fixtures: real PostgreSQL, real NATS with JetStream, real Docker engine.

`make test` installs the packages; these fixtures start what is not running (PostgreSQL's
cluster, dockerd) and give the session its own NATS server (random ports), its own database
and its own cluster name, so the suite never touches a `make up` cluster on the same machine.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import nats
import pytest
import pytest_asyncio

from devtools import infra
from devtools.cluster import ClusterConfig, start_infra, stop_network, stop_sinks
from libs import bus, db


@pytest.fixture(scope="session")
def cluster_cfg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterConfig]:
    run_dir: Path = tmp_path_factory.mktemp("noops-run")
    tag = uuid.uuid4().hex[:8]
    ports = infra.free_ports(10)
    cfg = ClusterConfig(run_dir=run_dir, cluster=f"t{tag}", db_name=f"noops_test_{tag}",
                        nats_port=ports[0], nats_monitor_port=ports[1], gateway_port=ports[2],
                        placer_port=ports[3], registry_port=ports[4], reconciler_port=ports[5],
                        hostd_base_port=ports[6], hosts=("h1", "h2"),
                        # Room for every e2e test's instances at once, even if one leaves some behind.
                        host_cpus=8.0, host_mem_mb=16384,
                        # The reconciler, not the registry's periodic full resync, repairs what was
                        # changed behind the sinks' back (tests/e2e/test_reconciler.py).
                        extra_env={"NOOPS_LOG_FORMAT": "text", "NOOPS_RECONCILE_INTERVAL_S": "1",
                                   "NOOPS_RECONCILER_GRACE_S": "2", "NOOPS_SINKS_RESYNC_S": "3600",
                                   "NOOPS_PLACER_RESYNC_S": "2", "NOOPS_SINK_BACKOFF_MAX_S": "1"},
                        lease_s=120, lease_t1_s=3)
    start_infra(cfg, fresh_db=True)
    try:
        yield cfg
    finally:
        for pidfile in run_dir.glob("*.pid"):
            if not pidfile.name.startswith("dockerd"):  # dockerd.pid, dockerd.engine.pid
                infra.stop_pidfile(pidfile, timeout=5)
        if infra.docker_ok():
            infra.remove_cluster_containers(cfg.cluster)
        stop_sinks(cfg)    # HAProxy, Prometheus, the session's nft table
        stop_network(cfg)  # switch, dnsmasq, host NICs, leftover volumes
        # dockerd stays up, like PostgreSQL: another test session or a `make up` cluster on this
        # machine may be using it, and the next run starts faster.
        if not os.environ.get("NOOPS_KEEP_TEST_DB"):
            infra.drop_database(cfg.db_name)


@pytest_asyncio.fixture(scope="session")
async def pool(cluster_cfg: ClusterConfig) -> AsyncIterator[asyncpg.Pool]:
    p = await db.connect(cluster_cfg.db_dsn)
    await db.migrate(p)
    yield p
    await p.close()


@pytest_asyncio.fixture(scope="session")
async def nc(cluster_cfg: ClusterConfig) -> AsyncIterator[nats.NATS]:
    client = await bus.connect(cluster_cfg.nats_url, "tests", **cluster_cfg.nats_credentials("admin"))
    await bus.ensure_streams(client.jetstream())
    yield client
    await client.drain()


@pytest.fixture
def uid() -> str:
    """A short unique suffix so tests sharing the session's database never collide."""
    return uuid.uuid4().hex[:6]


def with_ports(cfg: ClusterConfig, **overrides: int) -> ClusterConfig:
    return replace(cfg, **overrides)
