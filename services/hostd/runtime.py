"""The container runtime port and its one real adapter (the Docker engine through aiodocker).

The agent only sees ``ContainerRuntime``; driver errors become two domain errors:
``RuntimeUnavailable`` (the engine did not answer: transient, try again later) and
``RuntimeRefused`` (the engine answered no: permanent for this request, tell the user why).
Every call has a deadline (``timeout_s``; a stop and a settle get their own wait on top): an
engine that accepts the connection but never answers is "unavailable", so the placement is
retried instead of holding its instance's lock for ever.  Not the event stream: it is meant to
stay open, and is reopened when it breaks; ``exec`` has the health check's own timeout.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import aiodocker
import aiohttp
from aiodocker.events import DockerEvents

from services.hostd.containers import ContainerInfo, info_from_inspect, info_from_list

from libs import retry

log = logging.getLogger("noops.hostd.runtime")

# aiodocker reports "could not connect to the engine" as a DockerError with this made-up status.
_NO_CONNECTION = 900
_EXEC_OUTPUT_MAX = 4096
T = TypeVar("T")


class RuntimeUnavailable(Exception):
    """The engine could not be reached (or timed out)."""


class RuntimeRefused(Exception):
    """The engine answered with an error (HTTP status kept: 404 no such image/container, 409 conflict...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"[{status}] {message}")
        self.status = status
        self.message = message


class ContainerRuntime(Protocol):
    async def list(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Containers in any state carrying all these labels."""

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        """None when the container does not exist (any more)."""

    async def create(self, name: str, config: Mapping[str, Any]) -> str:
        """Create (not start); return the id."""

    async def start(self, container_id: str) -> None: ...

    async def stop(self, container_id: str, timeout_s: int) -> None:
        """SIGTERM, SIGKILL after timeout_s; a missing or stopped container is not an error."""

    async def remove(self, container_id: str) -> None:
        """Force-remove; a missing container is not an error."""

    async def settle(self, container_id: str, timeout_s: float) -> ContainerInfo | None:
        """Inspect once the engine has seen the container stop, or after timeout_s if it has not."""

    async def exec(self, container_id: str, cmd: Sequence[str], timeout_s: float) -> tuple[int, str]:
        """Run cmd inside the running container; (exit code, combined output, at most 4 KiB).
        Raises asyncio.TimeoutError after timeout_s (the command may go on running in there)."""

    async def image_labels(self, ref: str) -> dict[str, str]:
        """The labels of a local image; {} when it is not there or the engine does not say (the
        create that follows reports a missing image properly)."""

    async def log_tail(self, container_id: str, lines: int) -> list[str]:
        """The container's last ``lines`` log lines (stdout and stderr); [] when it has none to give
        (removed, a log driver that keeps nothing, an engine that does not answer)."""

    def container_events(self, labels: Mapping[str, str], since: float) -> AsyncIterator[dict[str, Any]]:
        """'die' and 'oom' events of containers carrying these labels, from ``since`` (unix time) on.
        Ends (or raises RuntimeUnavailable) when the stream breaks; the caller reconnects."""

    async def close(self) -> None: ...


# aiohttp's ClientError covers an engine that goes away mid-response (dockerd restarted).
_TRANSPORT_ERRORS = (asyncio.TimeoutError, OSError, aiohttp.ClientError)
_ENGINE_ERRORS = (aiodocker.DockerError, *_TRANSPORT_ERRORS)


def _translate(exc: BaseException) -> Exception:
    if isinstance(exc, aiodocker.DockerError) and exc.status != _NO_CONNECTION:
        return RuntimeRefused(exc.status, exc.message)
    return RuntimeUnavailable(str(exc) or type(exc).__name__)


def _label_filter(labels: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in labels.items()]


class DockerRuntime:
    def __init__(self, docker: aiodocker.Docker, *, timeout_s: float = 30.0) -> None:
        self._docker = docker
        self._timeout_s = timeout_s

    async def _call(self, what: str, aw: Awaitable[T], *, extra_s: float = 0.0) -> T:
        """``aw`` within the deadline; RuntimeUnavailable (transient) when the engine is too slow."""
        limit = self._timeout_s + extra_s
        try:
            return await asyncio.wait_for(aw, limit)
        except asyncio.TimeoutError:
            raise RuntimeUnavailable(f"the Docker engine did not answer {what} within {limit:g}s") from None

    async def version(self) -> str:
        try:
            return str((await self._call("version", self._docker.version())).get("Version", "?"))
        except _ENGINE_ERRORS as exc:
            raise _translate(exc) from exc

    async def list(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        filters = json.dumps({"label": _label_filter(labels)})
        try:
            found = await self._call("list", self._docker.containers.list(all=True, filters=filters))
        except _ENGINE_ERRORS as exc:
            raise _translate(exc) from exc
        return [info_from_list(c._container) for c in found]

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        try:
            data = await self._call(f"inspect {container_id[:12]}", self._docker.containers.container(container_id).show())
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise _translate(exc) from exc
        except _TRANSPORT_ERRORS as exc:
            raise _translate(exc) from exc
        return info_from_inspect(data)

    async def create(self, name: str, config: Mapping[str, Any]) -> str:
        try:
            container = await self._call(f"create {name}", self._docker.containers.create(dict(config), name=name))
        except _ENGINE_ERRORS as exc:
            raise _translate(exc) from exc
        return container.id

    async def start(self, container_id: str) -> None:
        try:
            await self._call(f"start {container_id[:12]}", self._docker.containers.container(container_id).start())
        except _ENGINE_ERRORS as exc:
            raise _translate(exc) from exc

    async def stop(self, container_id: str, timeout_s: int) -> None:
        try:
            await self._call(f"stop {container_id[:12]}", self._docker.containers.container(container_id).stop(t=timeout_s),
                             extra_s=timeout_s)
        except aiodocker.DockerError as exc:
            if exc.status in (304, 404):
                return
            raise _translate(exc) from exc
        except _TRANSPORT_ERRORS as exc:
            raise _translate(exc) from exc

    async def remove(self, container_id: str) -> None:
        try:
            await self._call(f"remove {container_id[:12]}",
                             self._docker.containers.container(container_id).delete(force=True))
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return
            # 409 "removal already in progress" means someone else finishes the job.
            if exc.status == 409 and "in progress" in exc.message:
                return
            raise _translate(exc) from exc
        except _TRANSPORT_ERRORS as exc:
            raise _translate(exc) from exc

    async def settle(self, container_id: str, timeout_s: float) -> ContainerInfo | None:
        # The engine learns of an exit a little after the kernel: a process found dead through
        # /proc can still read as running here for some milliseconds.
        if timeout_s <= 0:
            return await self.inspect(container_id)
        async def wait() -> None:
            try:
                await self._docker.containers.container(container_id).wait(
                    timeout=timeout_s, condition="not-running")
            except asyncio.TimeoutError:
                pass  # still running: inspect says so
        try:
            await self._call(f"wait for {container_id[:12]}", wait(), extra_s=timeout_s)
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise _translate(exc) from exc
            return None
        except _TRANSPORT_ERRORS as exc:
            raise _translate(exc) from exc
        return await self.inspect(container_id)

    async def exec(self, container_id: str, cmd: Sequence[str], timeout_s: float) -> tuple[int, str]:
        async def run() -> tuple[int, str]:
            ex = await self._docker.containers.container(container_id).exec(list(cmd), stdout=True, stderr=True)
            out = bytearray()
            async with ex.start(detach=False) as stream:
                while (chunk := await stream.read_out()) is not None:
                    if len(out) < _EXEC_OUTPUT_MAX:
                        out += chunk.data[:_EXEC_OUTPUT_MAX - len(out)]
            info = await ex.inspect()
            return int(info.get("ExitCode") or 0), out.decode(errors="replace")
        try:
            return await asyncio.wait_for(run(), timeout_s)
        except asyncio.TimeoutError:
            raise
        except _ENGINE_ERRORS as exc:
            raise _translate(exc) from exc

    async def image_labels(self, ref: str) -> dict[str, str]:
        try:
            data = await self._call(f"inspect image {ref[:64]}", self._docker.images.inspect(ref))
        except (*_ENGINE_ERRORS, RuntimeUnavailable):
            return {}
        return dict((data.get("Config") or {}).get("Labels") or {})

    async def log_tail(self, container_id: str, lines: int) -> list[str]:
        # Best effort: the reason falls back to the exit code, so no error is worth more than that.
        try:
            got = await self._call(f"logs of {container_id[:12]}", self._docker.containers.container(container_id).log(
                stdout=True, stderr=True, tail=lines))
        except (*_ENGINE_ERRORS, RuntimeUnavailable):
            return []
        return [str(line) for line in got][-lines:]

    async def container_events(self, labels: Mapping[str, str], since: float) -> AsyncIterator[dict[str, Any]]:
        filters = json.dumps({"type": ["container"], "event": ["die", "oom"], "label": _label_filter(labels)})
        # A DockerEvents per connection: its channel ends with None when the stream breaks.
        events = DockerEvents(self._docker)
        sub = events.subscribe(create_task=False)
        task = asyncio.ensure_future(events.run(filters=filters, since=str(int(since))))
        try:
            while (event := await sub.get()) is not None:
                yield event
            try:
                await task  # surfaces why the stream ended
            except _ENGINE_ERRORS as exc:
                raise _translate(exc) from exc
        finally:
            await events.stop()

    async def close(self) -> None:
        await self._docker.close()


async def connect_docker(url: str, *, retry_max_s: float = 5.0, policy: retry.Policy | None = None,
                        timeout_s: float = 30.0) -> DockerRuntime:
    """Open the engine, waiting with a clear log line (no traceback) until it answers."""
    policy = policy or retry.Policy(cap_s=retry_max_s)

    async def attempt() -> DockerRuntime:
        docker = aiodocker.Docker(url=url or None)
        try:
            runtime = DockerRuntime(docker, timeout_s=timeout_s)
            version = await runtime.version()
        except BaseException:
            await docker.close()
            raise
        log.info("docker engine answers", extra={"docker_version": version})
        return runtime

    return await policy.until_ok(attempt, what="Docker", log=log, extra={"url": url or "default socket"},
                                 transient=lambda exc: isinstance(exc, (RuntimeUnavailable, RuntimeRefused, ValueError)))
