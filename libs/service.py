"""What every service's main() shares: logging, the /healthz + /metrics endpoint, signals."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import uvicorn
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs import bus, db, exposure, retry
from libs import log as logsetup
from libs.supervise import Loops, Supervisor
from libs.settings import CommonSettings, HttpSettings, SettingsError

logger = logging.getLogger("noops.service")


def paced_gap(min_gap_s: float, cost_s: float, share: float, max_gap_s: float = float("inf")) -> float:
    """The gap between the starts of two rounds: at least ``min_gap_s``, and with a ``share``
    (0 < share <= 1) long enough that a round costing ``cost_s`` takes at most that share of the
    time, up to ``max_gap_s``.  A round whose cost grows with what piled up (a big app's whole
    set read again) then runs less often as it grows, instead of taking the process."""
    if share <= 0:
        return min_gap_s
    return max(min_gap_s, min(cost_s / share, max_gap_s))


class Pacer:
    """Lets a loop's rounds start at most every ``min_gap_s``: an idle loop starts at once, a busy
    one waits out the rest of the gap, so the work queued meanwhile is done in one round.  With
    ``share``, call ``done()`` after each round: the gap also grows to ``cost / share``, at
    most ``max_gap_s`` (``paced_gap``)."""

    def __init__(self, min_gap_s: float, share: float = 0.0, max_gap_s: float = float("inf")) -> None:
        self.min_gap_s, self.share, self.max_gap_s = min_gap_s, share, max_gap_s
        self.gap_s = min_gap_s
        self._last = float("-inf")

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        gap = self._last + self.gap_s - loop.time()
        if gap > 0:
            await asyncio.sleep(gap)
        self._last = loop.time()

    def done(self) -> None:
        """The round that started at the last ``wait`` has ended: the next gap follows its cost."""
        cost = asyncio.get_running_loop().time() - self._last
        self.gap_s = paced_gap(self.min_gap_s, cost, self.share, self.max_gap_s)


class Health:
    """Readiness shared between a service's loops and its /healthz endpoint: ready, details, and
    each supervised loop's liveness (libs/supervise.py).  A dead loop makes it answer 503."""

    def __init__(self) -> None:
        self.ready = False
        self.detail: dict[str, object] = {}
        self.loops = Loops()

    def body(self) -> tuple[bool, dict[str, object]]:
        ok = self.ready and self.loops.all_alive
        out: dict[str, object] = {"ready": ok, **self.detail}
        if self.loops.states:
            out["loops"] = self.loops.as_dict()
        return ok, out

    def as_response(self) -> JSONResponse:
        ok, body = self.body()
        return JSONResponse(body, status_code=200 if ok else 503)

    def supervisor(self, policy: retry.Policy = retry.DEFAULT, **kwargs: object) -> Supervisor:
        """A supervisor whose loops this endpoint reports."""
        return Supervisor(self.loops, policy, **kwargs)  # type: ignore[arg-type]


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def ops_app(health: Health) -> Starlette:
    async def healthz(_: Request) -> Response:
        return health.as_response()

    async def metrics(_: Request) -> Response:
        return metrics_response()

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics)])


async def serve_http(app: object, host: str, port: int, *, graceful_s: float = 3.0,
                     tls_cert_file: str = "", tls_key_file: str = "") -> None:
    """Serve ``app`` until cancelled; over HTTPS when given a certificate and key."""
    tls = {"ssl_certfile": tls_cert_file, "ssl_keyfile": tls_key_file} if tls_cert_file else {}
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off",
                            timeout_graceful_shutdown=graceful_s, **tls)
    if tls:
        try:   # a missing or mismatched file is a configuration error, not a traceback from uvicorn
            config.load()
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(f"TLS certificate {tls_cert_file} / key {tls_key_file}: {exc}") from None
    server = uvicorn.Server(config)
    # We own SIGTERM/SIGINT (run_service cancels the main task); uvicorn must not take them.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    # uvicorn runs in its own task: on our cancellation it is asked to shut down (open requests
    # and event streams get graceful_s to finish) instead of being cut off mid-request.
    inner = asyncio.create_task(server.serve())
    try:
        await asyncio.shield(inner)
    except asyncio.CancelledError:
        server.should_exit = True
        try:
            await asyncio.wait_for(inner, graceful_s + 2)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            inner.cancel()
        raise
    if not server.started:
        raise SystemExit(f"could not listen on {host}:{port} (is another process using it?)")


def run_service(name: str, build_settings: Callable[[], object],
                main: Callable[[object], Awaitable[None]]) -> None:
    """Console-script entry: load settings (clear error on a bad value), set up logs, run until SIGTERM/SIGINT."""
    try:
        settings = build_settings()
    except SettingsError as exc:
        sys.stderr.write(f"noops-{name}: bad configuration: {exc}\n")
        raise SystemExit(2) from None
    common: CommonSettings = settings.common  # type: ignore[attr-defined]
    try:
        problems = exposure.insecure_defaults(db_dsn=common.db_dsn, db_password=db.password_of(common),
                                              nats_url=common.nats_url, nats_user=common.nats_user,
                                              uses_db=name != "hostd")
    except SettingsError as exc:
        sys.stderr.write(f"noops-{name}: bad configuration: {exc}\n")
        raise SystemExit(2) from None
    if problems:
        sys.stderr.write("".join(f"noops-{name}: refusing to start: {p}\n" for p in problems))
        raise SystemExit(2)
    logsetup.setup(name, common.log_level, common.log_format)

    async def _runner() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await main(settings)
        except asyncio.CancelledError:
            logger.info("stopping on signal")

    try:
        asyncio.run(_runner())
    except KeyboardInterrupt:
        pass
    except SettingsError as exc:  # found once running, e.g. an unreadable password file
        sys.stderr.write(f"noops-{name}: bad configuration: {exc}\n")
        raise SystemExit(2) from None


@dataclass(frozen=True)
class Backends:
    pool: asyncpg.Pool
    nc: NATS
    js: JetStreamContext

    async def declare_streams(self) -> None:
        """Declare the streams again (``pull_loop`` / ``Relay`` call it when they find one missing)."""
        await bus.ensure_streams(self.js)


async def connect_backends(common: CommonSettings, name: str) -> Backends:
    """The task log (migrated) and the bus (streams declared), each waited for with a clear log
    line, in this order: a service never consumes before the schema it writes exists."""
    pool = await db.connect_with(common, service=name)
    await db.migrate(pool)
    nc = await bus.connect_as(common, name)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    return Backends(pool, nc, js)


async def run_ops_server(health: Health, http: HttpSettings, port: int) -> None:
    await serve_http(ops_app(health), http.http_host, port)
