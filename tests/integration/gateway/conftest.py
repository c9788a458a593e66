"""The gateway app wired to the session's real PostgreSQL and NATS, with a real outbox relay,
and a ledger of what each test created so teardown removes it even when the test fails.

Tokens are made the way `make up` makes them (services/gateway/bootstrap.py): ``client`` carries
the session's admin token; ``client_as("viewer")`` etc. the other roles, ``payments`` an operator
and ``payments-viewer`` a viewer limited to apps ``payments-*``."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import httpx
import msgspec
import nats
import pytest
import pytest_asyncio
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from devtools.cluster import ClusterConfig
from libs import messages, outbox, subjects
from libs.settings import CommonSettings, GatewaySettings, HttpSettings
from fastapi import FastAPI

from services.gateway import bootstrap
from services.gateway.access import Role
from services.gateway.app import create_app
from tests.support.events import event_subjects
from tests.support.wait import eventually


@pytest.fixture
def settings(cluster_cfg: ClusterConfig) -> GatewaySettings:
    common = dataclasses.replace(CommonSettings(), cluster=cluster_cfg.cluster, db_dsn=cluster_cfg.db_dsn,
                                 nats_url=cluster_cfg.nats_url)
    return GatewaySettings(common=common, http=HttpSettings(), port=cluster_cfg.gateway_port)


@dataclasses.dataclass
class Created:
    """What a test made in the shared database and streams; removed at teardown."""
    apps: list[str] = dataclasses.field(default_factory=list)
    hosts: list[str] = dataclasses.field(default_factory=list)
    instances: list[str] = dataclasses.field(default_factory=list)
    endpoint_subjects: list[str] = dataclasses.field(default_factory=list)
    tokens: list[str] = dataclasses.field(default_factory=list)

    def app(self, app_id: str) -> str:
        self.apps.append(app_id)
        return app_id


@pytest_asyncio.fixture
async def relay(pool: asyncpg.Pool, nc: nats.NATS) -> AsyncIterator[outbox.Relay]:
    r = outbox.Relay(pool, nc.jetstream(), poll_s=0.2)
    task = asyncio.create_task(r.run())
    yield r
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# name → (role, app-id pattern) of the session's test tokens, besides the admin one.
TEST_TOKENS = {"viewer": (Role.viewer, None), "operator": (Role.operator, None),
               "payments": (Role.operator, "payments-*"), "payments-viewer": (Role.viewer, "payments-*")}


@pytest_asyncio.fixture(scope="session")
async def tokens(cluster_cfg: ClusterConfig, pool: asyncpg.Pool) -> dict[str, str]:
    """Token name → secret: ``admin`` (made by the session's start_infra, as by `make up`) and TEST_TOKENS."""
    out = {"admin": cluster_cfg.admin_token()}
    for name, (role, apps) in TEST_TOKENS.items():
        out[name], _ = await bootstrap.ensure_token_file(pool, cluster_cfg.secrets_dir / f"test-{name}-token",
                                                         name=f"test-{name}", role=role, apps=apps)
    return out


@pytest.fixture
def gateway_app(settings: GatewaySettings, pool: asyncpg.Pool, nc: nats.NATS, relay: outbox.Relay) -> FastAPI:
    return create_app(settings, pool, nc, relay)


@pytest_asyncio.fixture
async def client_as(gateway_app: FastAPI, tokens: dict[str, str]
                    ) -> AsyncIterator[Callable[[str | None], httpx.AsyncClient]]:
    """``client_as("viewer")``: a client carrying that test token; ``client_as(None)``: no token."""
    clients: list[httpx.AsyncClient] = []

    def make(name: str | None, *, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        h = dict(headers or {})
        if name is not None:
            h["Authorization"] = f"Bearer {tokens[name]}"
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway_app), base_url="http://gateway", headers=h)
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
def client(client_as: Callable[[str | None], httpx.AsyncClient]) -> Iterator[httpx.AsyncClient]:
    """The admin's client: what every test of the API's behaviour (not its access control) uses."""
    yield client_as("admin")


@pytest_asyncio.fixture
async def created(pool: asyncpg.Pool, nc: nats.NATS, relay: outbox.Relay) -> AsyncIterator[Created]:
    c = Created()
    yield c
    js = nc.jetstream()
    deploy_subjects = [subjects.deploy(a) for a in c.apps]
    # Let the relay publish what is still queued, so nothing of ours lands in the stream later.
    await eventually(lambda: pool.fetchval("SELECT count(*) = 0 FROM outbox WHERE subject = ANY($1::text[])",
                                           deploy_subjects), timeout=10, what="outbox drained")
    for subject in deploy_subjects:
        await js.purge_stream(subjects.DEPLOY.name, subject=subject)
    for subject in c.endpoint_subjects:
        await js.purge_stream(subjects.ENDPOINTS.name, subject=subject)
    # Change events the task log's triggers wrote for what the test made (migration 0015).
    changed = event_subjects(c.apps, c.hosts)
    await pool.execute("DELETE FROM outbox WHERE subject = ANY($1::text[])", changed)
    for subject in changed:
        await js.purge_stream(subjects.EVENTS.name, subject=subject)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM instances WHERE app = ANY($1::text[]) OR id = ANY($2::text[])",
                           c.apps, c.instances)
        await conn.execute("DELETE FROM app_versions WHERE app = ANY($1::text[])", c.apps)
        await conn.execute("DELETE FROM deployments WHERE app = ANY($1::text[])", c.apps)
        await conn.execute("DELETE FROM app_failures WHERE app = ANY($1::text[])", c.apps)
        await conn.execute("DELETE FROM apps WHERE id = ANY($1::text[])", c.apps)
        await conn.execute("DELETE FROM hosts WHERE id = ANY($1::text[])", c.hosts)
        await conn.execute("DELETE FROM audit WHERE target = ANY($1::text[])", c.apps + c.hosts + c.tokens)
        await conn.execute("DELETE FROM tokens WHERE name = ANY($1::text[])", c.tokens)


@pytest_asyncio.fixture
async def deploy_requests(nc: nats.NATS) -> AsyncIterator[Callable[[str], Awaitable["DeployWatch"]]]:
    """Ephemeral consumers on the DEPLOY stream, one per app (never the placer's durable)."""
    watches: list[DeployWatch] = []

    async def watch(app_id: str) -> DeployWatch:
        w = DeployWatch(nc, app_id)
        await w.start()
        watches.append(w)
        return w

    yield watch
    for w in watches:
        await w.stop()


class DeployWatch:
    def __init__(self, nc: nats.NATS, app_id: str) -> None:
        self.js = nc.jetstream()
        self.subject = subjects.deploy(app_id)
        self.received: list[messages.DeployRequest] = []
        self._sub = None

    async def start(self) -> None:
        cfg = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                             inactive_threshold=30.0)
        self._sub = await self.js.pull_subscribe(self.subject, stream=subjects.DEPLOY.name, config=cfg)

    async def poll(self) -> list[messages.DeployRequest]:
        """Fetch what arrived (acking it: the DEPLOY stream is a work queue); returns all so far."""
        assert self._sub is not None
        with contextlib.suppress(nats.errors.TimeoutError):
            for msg in await self._sub.fetch(10, timeout=0.2):
                try:
                    self.received.append(messages.decode(msg.data, messages.DeployRequest))
                except msgspec.MsgspecError:
                    pass  # the assertion on `received` reports it
                await msg.ack()
        return self.received

    async def wait_for(self, n: int) -> list[messages.DeployRequest]:
        return await eventually(lambda: self._n_or_none(n), timeout=10, what=f"{n} deploy requests on {self.subject}")

    async def _n_or_none(self, n: int) -> list[messages.DeployRequest] | None:
        got = await self.poll()
        return got if len(got) >= n else None

    async def stop(self) -> None:
        if self._sub is not None:
            name = (await self._sub.consumer_info()).name
            await self._sub.unsubscribe()
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.js.delete_consumer(subjects.DEPLOY.name, name)


@pytest.fixture
def auth_headers(tokens: dict[str, str]) -> dict[str, str]:
    """The admin's token: the OpenAPI fuzz run exercises the authenticated path (every route,
    cluster-wide ones too)."""
    return {"Authorization": f"Bearer {tokens['admin']}"}
