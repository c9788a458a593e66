"""Running one health check against one container: HTTP GET or TCP connect to the container's
address (reachable from the host: its macvlan hangs off the host's NIC), or a command through
the container runtime's exec.  Every outcome is a ``health.Result``; nothing raises."""
from __future__ import annotations

import asyncio

from libs.messages import HealthCheckSpec
from services.hostd.health import Result
from services.hostd.runtime import ContainerRuntime, RuntimeRefused, RuntimeUnavailable

_OUTPUT_SHOWN = 200   # characters of a failed command's output kept in the result


async def probe(check: HealthCheckSpec, *, ip: str, container_id: str, runtime: ContainerRuntime) -> Result:
    try:
        if check.protocol == "COMMAND":
            return await _command(check, container_id, runtime)
        if not ip:
            return Result(False, "no address")
        if check.protocol == "TCP":
            return await asyncio.wait_for(_tcp(ip, check.port), check.timeout_s)
        return await asyncio.wait_for(_http(ip, check), check.timeout_s)
    except asyncio.TimeoutError:
        return Result(False, f"no answer within {check.timeout_s:g}s")
    except ConnectionRefusedError:
        return Result(False, "connection refused")
    except (OSError, ValueError) as exc:
        return Result(False, str(exc) or type(exc).__name__)


async def _tcp(ip: str, port: int) -> Result:
    _, writer = await asyncio.open_connection(ip, port)
    writer.close()
    await writer.wait_closed()
    return Result(True, "connected")


async def _http(ip: str, check: HealthCheckSpec) -> Result:
    # HTTP/1.0 with Connection: close — only the status line matters, and no client pool
    # outlives the check.
    reader, writer = await asyncio.open_connection(ip, check.port)
    try:
        writer.write(f"GET {check.path} HTTP/1.0\r\nHost: {ip}:{check.port}\r\nUser-Agent: noops-hostd\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    parts = line.decode(errors="replace").split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return Result(False, f"not an HTTP answer: {line[:60]!r}")
    status = int(parts[1])
    return Result(check.status_min <= status <= check.status_max, f"status {status}")


async def _command(check: HealthCheckSpec, container_id: str, runtime: ContainerRuntime) -> Result:
    try:
        code, output = await runtime.exec(container_id, check.command, check.timeout_s)
    except (RuntimeRefused, RuntimeUnavailable) as exc:
        return Result(False, f"could not run: {exc}")
    if code == 0:
        return Result(True, "exit code 0")
    shown = " ".join(output.split())[:_OUTPUT_SHOWN]
    return Result(False, f"exit code {code}" + (f": {shown}" if shown else ""))
