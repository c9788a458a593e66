"""Deadlines: a Docker engine that accepts but never answers, a storage command that hangs.
Both must end as the transient error (the placement is retried), never as a hang."""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiodocker
import pytest

from services.hostd.runtime import DockerRuntime, RuntimeUnavailable
from services.hostd.volumes import VolumeError, VolumeTimeout, run


async def _silent_engine(path: Path) -> asyncio.AbstractServer:
    """A hung dockerd: takes the connection and the request, never writes a byte back."""
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()  # until the client gives up and closes
        finally:
            writer.close()
    return await asyncio.start_unix_server(hold, path=str(path))


@pytest.mark.parametrize("call", [
    pytest.param(lambda rt: rt.list({"noops.host": "h1"}), id="list"),
    pytest.param(lambda rt: rt.inspect("c1"), id="inspect"),
    pytest.param(lambda rt: rt.create("n1", {"Image": "x"}), id="create"),
    pytest.param(lambda rt: rt.start("c1"), id="start"),
    pytest.param(lambda rt: rt.stop("c1", 0), id="stop"),
    pytest.param(lambda rt: rt.remove("c1"), id="remove"),
    pytest.param(lambda rt: rt.settle("c1", 0.1), id="settle"),
])
async def test_docker_call_past_its_deadline_is_unavailable(tmp_path: Path, call) -> None:
    server = await _silent_engine(tmp_path / "docker.sock")
    docker = aiodocker.Docker(url=f"unix://{tmp_path / 'docker.sock'}")
    rt = DockerRuntime(docker, timeout_s=0.3)
    t = time.monotonic()
    try:
        with pytest.raises(RuntimeUnavailable, match=r"did not answer .* within"):
            await call(rt)
        assert time.monotonic() - t < 5
    finally:
        await docker.close()
        server.close()
        await server.wait_closed()


async def test_storage_command_past_its_deadline_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(VolumeTimeout, match=r"sh did not finish within 0.3s") as got:
        await run("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30", timeout_s=0.3)
    assert isinstance(got.value, VolumeError)  # callers that only know VolumeError still catch it
    pid = int(pidfile.read_text())
    assert not os.path.exists(f"/proc/{pid}"), "the hung command was killed and reaped"


async def test_storage_command_failure_and_output(tmp_path: Path) -> None:
    assert await run("echo", "ok", timeout_s=5) == "ok\n"
    with pytest.raises(VolumeError, match="false failed") as got:
        await run("false", timeout_s=5)
    assert not isinstance(got.value, VolumeTimeout)
