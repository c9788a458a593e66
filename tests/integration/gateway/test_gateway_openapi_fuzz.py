"""The OpenAPI document tells the truth: schemathesis generates requests from the document the
gateway serves and checks every answer against it (status documented, body matching its schema,
content type and headers as declared, never a 5xx, invalid input refused), against the real ASGI
app on the session's PostgreSQL and NATS.

Hypothesis runs in a worker thread (it is synchronous); each request it builds is sent on the
test's event loop, where the app's pool and NATS connection live, through httpx's ASGI transport.
Derandomized and bounded per operation, so a run is reproducible and its length is known.  An
operation with ids in its path also gets valid input naming an app, host and instance that exist,
so the answers of live resources (200, 202, 409) are checked too, not only 404s; the known host's
usage is answered by hostd's real responder (tests/support/usage.py), one instance with stats."""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import hypothesis
import hypothesis.errors
import nats
import pytest_asyncio
import schemathesis
from schemathesis.config import SchemathesisConfig
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_headers_conformance, response_schema_conformance,
                                               status_code_conformance)

from devtools.cluster import ClusterConfig
from libs import outbox
from libs.settings import GatewaySettings
from services.gateway.app import create_app
from tests.integration.gateway.conftest import Created
from tests.support.usage import body, hostd_usage

# negative_data_rejection: input the document calls invalid is refused (schemathesis lets pass a
# mutation a lax server might read as valid, so strict types are tested in tests/unit too).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
# Examples per operation and variant: 24 operations, 2 or 3 variants each, x 25 is ~1,500 cases,
# about 30 s on 2 cores.
EXAMPLES = 25
# An SSE stream never ends: it has its own test (test_gateway_views.py).
SKIP_PATHS = {"/v1/events"}
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)

Send = Callable[[dict[str, Any]], httpx.Response]


@dataclass
class Run:
    cases: int = 0
    failures: list[str] = field(default_factory=list)
    unsatisfiable: list[str] = field(default_factory=list)   # nothing to make invalid (no input)
    statuses: Counter[int] = field(default_factory=Counter)


def _settings() -> hypothesis.settings:
    return hypothesis.settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                               phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


def _variants(operation: Any, known: dict[str, str]) -> list[tuple[str, st.SearchStrategy]]:
    """Generated input, valid and invalid; with ids in the path, valid input naming what exists too."""
    out = [(mode.value, operation.as_strategy(generation_mode=mode)) for mode in MODES]
    names = [p.name for p in operation.path_parameters]
    if names:
        out.append(("positive, existing ids", operation.as_strategy(
            generation_mode=schemathesis.GenerationMode.POSITIVE, path_parameters={n: known[n] for n in names})))
    return out


def _fuzz(raw: dict[str, Any], send: Send, headers: dict[str, str], known: dict[str, str]) -> Run:
    """Run in a worker thread: every operation in every variant."""
    run = Run()
    # The run carries the admin token itself (``headers``): no generated Authorization header, which
    # the token would override while the check expected a 401.  Unknown query parameters are
    # ignored by the API, as HTTP APIs do, so none are generated to be refused.
    config = SchemathesisConfig()
    config.projects.default.generation.update(with_security_parameters=False, allow_extra_parameters=False)
    operations = [r.ok() for r in schemathesis.openapi.from_dict(raw, config=config).get_all_operations()]
    # Deleting the known app last: the operations after it would only find it gone.
    operations.sort(key=lambda op: (op.method.upper(), op.path) == ("DELETE", "/v1/apps/{app_id}"))
    for operation in operations:
        if operation.path in SKIP_PATHS:
            continue
        for variant, strategy in _variants(operation, known):
            @hypothesis.given(case=strategy)
            @_settings()
            def one(case: schemathesis.Case) -> None:
                run.cases += 1
                response = send(case.as_transport_kwargs(base_url="http://gateway", headers=headers))
                run.statuses[response.status_code] += 1
                try:
                    case.validate_response(response, checks=CHECKS, headers=headers)
                except (Failure, FailureGroup) as exc:  # a contradiction: collect them all, then fail once
                    reasons = "; ".join(str(e).splitlines()[0] for e in getattr(exc, "exceptions", [exc]))
                    run.failures.append(f"{operation.label} [{variant}] {reasons}: {response.status_code} "
                                        f"{response.text[:200]}\n  {case.as_curl_command()[:600]}")
            try:
                one()
            except hypothesis.errors.Unsatisfiable:
                run.unsatisfiable.append(f"{operation.label} [{variant}]")
    return run


@pytest_asyncio.fixture
async def client(settings: GatewaySettings, pool: asyncpg.Pool, nc: nats.NATS,
                 relay: outbox.Relay) -> AsyncIterator[httpx.AsyncClient]:
    """As conftest's, but an exception in the app is a 500 answer (which the checks count), not an
    exception in the test."""
    transport = httpx.ASGITransport(app=create_app(settings, pool, nc, relay), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
        yield c


async def _known(client: httpx.AsyncClient, pool: asyncpg.Pool, created: Created, headers: dict[str, str],
                 uid: str) -> dict[str, str]:
    """An app, a host, an instance and a token that exist, for path parameters (the token is one
    of the run's own: revoking it harms no other test)."""
    app, host = created.app(f"fuzz-{uid}"), f"fuzz-host-{uid}"
    instance = f"{app}-0123456789ab"
    created.hosts.append(host)
    created.instances.append(instance)
    await pool.execute("INSERT INTO hosts (id, cpus, mem_mb, last_seen) VALUES ($1, 1024, 4194304, now())", host)
    r = await client.post("/v1/apps", json={"id": app, "image": "noops/base:latest", "instances": 1}, headers=headers)
    assert r.status_code == 201, r.text
    await pool.execute("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state) "
                       "VALUES ($1, $2, 1, $3, 1, 0.1, 32, 'RUNNING')", instance, app, host)
    token = f"fuzz-{uid}"
    r = await client.post("/v1/tokens", json={"name": token, "role": "viewer"}, headers=headers)
    assert r.status_code == 201, r.text
    return {"app_id": app, "host_id": host, "instance_id": instance, "name": token}


async def test_every_answer_matches_the_openapi_document(client: httpx.AsyncClient, pool: asyncpg.Pool,
                                                         created: Created, auth_headers: dict[str, str],
                                                         uid: str, cluster_cfg: ClusterConfig) -> None:
    loop = asyncio.get_running_loop()
    before = {r["id"] for r in await pool.fetch("SELECT id FROM apps")}
    tokens_before = {r["name"] for r in await pool.fetch("SELECT name FROM tokens")}
    raw = (await client.get("/openapi.json", headers=auth_headers)).json()

    def send(kwargs: dict[str, Any]) -> httpx.Response:
        assert not kwargs.get("cookies"), "the document declares no cookies"
        # Encoded here: json.dumps escapes what httpx's encoder refuses (a lone surrogate).
        body = json.dumps(kwargs["json"]).encode() if "json" in kwargs else kwargs.get("data")
        request = client.request(kwargs["method"], kwargs["url"], headers=kwargs.get("headers"),
                                 params=kwargs.get("params"), content=body)
        return asyncio.run_coroutine_threadsafe(request, loop).result(timeout=30)

    started = time.monotonic()
    try:
        known = await _known(client, pool, created, auth_headers, uid)
        rounds = [(t, {known["instance_id"]: (known["app_id"], body(t / 1000, 8 << 20))}) for t in (1000.0, 1010.0)]
        async with hostd_usage(cluster_cfg, known["host_id"], rounds):
            run = await asyncio.to_thread(_fuzz, raw, send, auth_headers, known)
    finally:
        # Whatever the fuzzer created goes with the ledger's teardown (outbox drained, rows deleted).
        created.apps.extend(r["id"] for r in await pool.fetch("SELECT id FROM apps")
                            if r["id"] not in before and r["id"] not in created.apps)
        await pool.execute("DELETE FROM tokens WHERE NOT (name = ANY($1::text[]))", list(tokens_before))
    print(f"\nschemathesis: {run.cases} cases in {time.monotonic() - started:.1f}s, {len(run.failures)} "
          f"contradictions; answers by status {dict(sorted(run.statuses.items()))}; nothing to make invalid "
          f"in {', '.join(run.unsatisfiable)}")
    assert run.cases > 0
    assert not run.failures, (f"{len(run.failures)} of {run.cases} answers contradict the document:\n"
                              + "\n".join(run.failures[:20]))
