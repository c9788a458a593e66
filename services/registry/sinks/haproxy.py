"""Load-balancer sink: HAProxy in master-worker mode, driven through its Runtime API.

    backend change  -> Runtime API on the admin socket: add/enable server, set maint + del server
    new app's port  -> new frontend: configuration rewritten (with the current servers), checked
                       with ``haproxy -c``, and a seamless reload through the master socket

Reloads are rare: the configuration always carries ``spare`` frontends on the next free ports of
the range, and ports are assigned lowest-free (``lb_ports``), so a new app lands on a frontend
that already listens.  A reload keeps in-flight connections (the old worker finishes them) and
passes the listening sockets to the new worker (``expose-fd listeners``), so none is refused.

The sink keeps a cache of what each backend holds, refreshed from ``show servers state`` on every
full apply, after any error and when told to ``forget`` (a repair asked by the reconciler), so a
HAProxy that restarted with a stale file, or was changed by hand, is corrected.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from libs import messages
from services.registry.sinks import haproxy_config as hc
from services.registry.sinks.model import AppState, Desired

log = logging.getLogger("noops.registry.sinks.haproxy")


class HAProxyError(RuntimeError):
    pass


def _one_command(command: str) -> str:
    """The last guard before the socket: one line, one command (the CLI splits lines and ';')."""
    if any(c in command for c in "\n\r;\x00"):
        raise HAProxyError(f"refused to send {command!r:.120} to HAProxy: a newline or ';' would start "
                           "another command")
    return command


async def runtime(socket_path: os.PathLike[str] | str, command: str, *, timeout: float = 5.0) -> str:
    """One command on a HAProxy CLI socket (non-interactive: HAProxy answers and closes)."""
    _one_command(command)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket_path)), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        raise HAProxyError(f"HAProxy socket {socket_path} not answering: {exc or type(exc).__name__}") from None
    try:
        writer.write(command.encode() + b"\n")
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        return (await asyncio.wait_for(reader.read(), timeout)).decode(errors="replace")
    except (OSError, asyncio.TimeoutError) as exc:
        raise HAProxyError(f"HAProxy command {command!r} failed: {exc or type(exc).__name__}") from None
    finally:
        writer.close()


# Commands per CLI session.  HAProxy answers each command as it reads it; a session of tens of
# thousands (a full resync of a large cluster) also outlasts any sensible timeout, so a long batch
# is sent as several sessions, one after the other (order kept).
SESSION_COMMANDS = 1000


async def runtime_batch(socket_path: os.PathLike[str] | str, commands: list[str], *, timeout: float = 10.0) -> list[str]:
    """Several commands in CLI sessions of at most ``SESSION_COMMANDS`` (interactive ``prompt``
    mode: each answer ends with a prompt), so a batch of changes costs one connection per
    thousand commands.  One answer per command, in order; commands that must see the same worker
    (``show info`` with the state it describes) belong in the first thousand."""
    answers: list[str] = []
    for k in range(0, len(commands), SESSION_COMMANDS):
        answers += await _session(socket_path, commands[k:k + SESSION_COMMANDS], timeout)
    return answers


async def _session(socket_path: os.PathLike[str] | str, commands: list[str], timeout: float) -> list[str]:
    script = "prompt\n" + "".join(_one_command(c) + "\n" for c in commands) + "quit\n"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket_path)), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        raise HAProxyError(f"HAProxy socket {socket_path} not answering: {exc or type(exc).__name__}") from None
    # Read while writing: HAProxy stops reading commands while its answers wait in a full socket
    # buffer, so writing everything first deadlocked on large batches until HAProxy's CLI timeout
    # closed the connection (EPIPE; the retry, larger still, met the same fate).
    answer = asyncio.ensure_future(reader.read())
    try:
        writer.write(script.encode())
        await asyncio.wait_for(writer.drain(), timeout)
        out = (await asyncio.wait_for(answer, timeout)).decode(errors="replace")
    except (OSError, asyncio.TimeoutError) as exc:
        raise HAProxyError(f"HAProxy batch of {len(commands)} failed: {exc or type(exc).__name__}") from None
    finally:
        answer.cancel()
        writer.close()
    parts = ("\n" + out).split("\n> ")
    # parts[0]: before the first prompt; then one answer per command, each closed by a prompt.
    if len(parts) < len(commands) + 2:
        raise HAProxyError(f"HAProxy answered {len(parts) - 2} of {len(commands)} commands: {out[-300:]!r}")
    return parts[1:1 + len(commands)]


@dataclass(frozen=True)
class HAProxyOptions:
    paths: hc.Paths
    port_range: tuple[int, int]          # inclusive; frontends (assigned and spare) listen here
    bind_host: str = "127.0.0.1"
    spare: int = 4                        # spare frontends kept ready (0: every new app reloads)
    drain_timeout_s: float = 10.0         # after this, a leaving server's sessions are shut down
    check_interval_s: float = 1.0         # HAProxy's own TCP check of each server (0: none)
    reload_timeout_s: float = 10.0
    haproxy_bin: str = "haproxy"


@dataclass
class _Draining:
    since: float
    port: int
    name: str


class HAProxySink:
    name = "haproxy"

    def __init__(self, opts: HAProxyOptions, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.opts, self.clock = opts, clock
        self._desired: dict[str, AppState] = {}
        self._servers: dict[int, dict[str, hc.Server]] | None = None   # None: refresh from HAProxy
        self._backends: set[int] | None = None
        self._draining: dict[tuple[int, str], _Draining] = {}
        self._fronts: dict[int, hc.Frontend] | None = None   # of _desired; None: to be built again
        self.reloads = 0

    # ------------------------------------------------------------------ Sink
    async def apply_full(self, desired: Desired) -> None:
        self._desired = dict(desired)
        self._servers = self._fronts = None
        await self._converge(set(self._frontends()))

    async def update(self, changes: Desired) -> None:
        # The frontends follow the apps' LB ports, which seldom change: built again only then,
        # not from every app per batch.
        if any((old := self._desired.get(a)) is None or old.lb != s.lb for a, s in changes.items()):
            self._fronts = None
        self._desired.update(changes)
        ports = {lb.port for s in changes.values() for lb in s.lb.values()}
        await self._converge(ports)

    async def close(self) -> None:
        pass

    async def observe(self) -> messages.SinkView:
        """Backends and servers as the running worker has them (one CLI session, so both answers
        come from the same worker), not the cache."""
        backends, servers = await runtime_batch(self.opts.paths.admin_socket, ["show backend", "show servers state"])
        return messages.SinkView(sink=self.name, ok=True, groups=hc.view_groups(
            hc.parse_backends(backends), hc.parse_servers_state(servers)))

    def forget(self, apps: Iterable[str]) -> None:
        # The whole cache goes, not only these apps' backends: one ``show servers state`` refreshes
        # every backend at once, before the next converge.
        self._servers = self._backends = None

    # ------------------------------------------------------------------ core
    def _frontends(self) -> dict[int, hc.Frontend]:
        if self._fronts is None:
            out: dict[int, hc.Frontend] = {}
            for app, s in self._desired.items():
                for pname, lb in s.lb.items():
                    out[lb.port] = hc.Frontend(lb.port, lb.bind_host, app, pname)
            self._fronts = out
        return self._fronts

    def _wanted(self, fronts: Mapping[int, hc.Frontend]) -> dict[int, dict[str, tuple[str, int]]]:
        out: dict[int, dict[str, tuple[str, int]]] = {}
        for port, fe in fronts.items():
            out[port] = self._desired[fe.app].targets(fe.port_name)
        return out

    async def _converge(self, ports: set[int]) -> None:
        try:
            if self._servers is None or self._backends is None:
                await self._refresh()
            fronts = self._frontends()
            assert self._backends is not None
            if set(fronts) - self._backends:
                await self._reload(fronts)
            # Only the ports that changed: every app's targets per batch grew with the cluster.
            wanted = self._wanted({p: fronts[p] for p in ports if p in fronts})
            await self._apply_backends(wanted)
            await self._finish_draining()
        except Exception:
            self._servers = self._backends = None   # unknown now: re-read before the next attempt
            raise

    async def _refresh(self, *, worker: int | None = None) -> None:
        """Re-read backends and servers in one CLI session (both answers from the same worker).
        ``worker``: the pid that must answer -- right after a reload the old worker may still
        accept a connection on the admin socket for a moment, and its state is the old one."""
        deadline = self.clock() + self.opts.reload_timeout_s
        while True:
            info, backends, servers = await runtime_batch(self.opts.paths.admin_socket,
                                                          ["show info", "show backend", "show servers state"])
            if worker is None or hc.parse_pid(info) == worker:
                break
            if self.clock() > deadline:
                raise HAProxyError(f"HAProxy's new worker {worker} did not answer on the admin socket after a reload")
            await asyncio.sleep(0.02)
        self._backends = hc.parse_backends(backends)
        self._servers = hc.parse_servers_state(servers)

    async def _apply_backends(self, wanted: Mapping[int, Mapping[str, tuple[str, int]]]) -> None:
        """All the backends' commands in one CLI session, then the cache follows HAProxy's answers."""
        assert self._servers is not None
        cmds = [(port, c) for port, desired in sorted(wanted.items())
                for c in hc.plan_backend(port, desired, self._servers.setdefault(port, {}),
                                         check_interval_s=self.opts.check_interval_s)]
        if not cmds:
            return
        answers = await runtime_batch(self.opts.paths.admin_socket, [c for _, c in cmds])
        refused = []
        for (port, cmd), answer in zip(cmds, answers):
            observed = self._servers[port]
            if cmd.startswith("enable health "):
                if not hc.ok_answer(cmd, answer):
                    refused.append(f"{cmd!r}: {answer.strip()[:200]}")
                continue
            verb, _, rest = cmd.partition(" server ")
            name = rest.split()[0].split("/", 1)[1]
            ok = hc.ok_answer(cmd, answer)
            if verb == "del":
                if ok:
                    observed.pop(name, None)
                    self._draining.pop((port, name), None)
                elif name in observed:   # connections still draining: in maintenance, no new one reaches it
                    self._draining.setdefault((port, name), _Draining(self.clock(), port, name))
                continue
            if not ok:
                refused.append(f"{cmd!r}: {answer.strip()[:200]}")
                continue
            if verb == "add":
                ip, _, p = rest.split()[1].rpartition(":")
                observed[name] = hc.Server(ip, int(p), 0x01)
                self._draining.pop((port, name), None)
            elif name in observed:
                old = observed[name]
                observed[name] = hc.Server(old.addr, old.port, 0 if verb == "enable" else old.admin_state | 0x01)
        if refused:
            raise HAProxyError(f"HAProxy refused {len(refused)} command(s): {'; '.join(refused[:3])}")

    async def _finish_draining(self) -> None:
        assert self._servers is not None
        for key, d in list(self._draining.items()):
            be = hc.server_ref(d.port, d.name)
            if self.clock() - d.since > self.opts.drain_timeout_s:
                await runtime(self.opts.paths.admin_socket, f"shutdown sessions server {be}")
            answer = await runtime(self.opts.paths.admin_socket, f"del server {be}")
            if hc.ok_answer("del server", answer) or "No such server" in answer:
                self._draining.pop(key, None)
                self._servers.get(d.port, {}).pop(d.name, None)

    @property
    def draining(self) -> int:
        return len(self._draining)

    # ------------------------------------------------------------------ reload
    def _spares(self, used: set[int]) -> list[hc.Frontend]:
        lo, hi = self.opts.port_range
        out: list[hc.Frontend] = []
        p = lo
        while len(out) < self.opts.spare and p <= hi:
            if p not in used:
                out.append(hc.Frontend(p, self.opts.bind_host))
            p += 1
        return out

    async def _reload(self, fronts: Mapping[int, hc.Frontend]) -> None:
        """New frontends: write the configuration (with today's servers) and reload seamlessly."""
        wanted = self._wanted(fronts)
        all_fronts = [*fronts.values(), *self._spares(set(fronts))]
        text = hc.render(self.opts.paths, all_fronts, wanted, check_interval_s=self.opts.check_interval_s)
        cfg = self.opts.paths.config
        tmp = cfg.with_suffix(".cfg.new")
        tmp.write_text(text)
        proc = await asyncio.create_subprocess_exec(self.opts.haproxy_bin, "-c", "-q", "-f", str(tmp),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise HAProxyError(f"generated configuration refused: {out.decode(errors='replace')[-500:]}")
        os.replace(tmp, cfg)
        old_pid = hc.parse_pid(await runtime(self.opts.paths.admin_socket, "show info"))
        await runtime(self.opts.paths.master_socket, "reload")
        deadline = self.clock() + self.opts.reload_timeout_s
        while True:
            try:
                pid = hc.parse_pid(await runtime(self.opts.paths.admin_socket, "show info", timeout=1.0))
            except HAProxyError:
                pid = None
            if pid is not None and pid != old_pid:
                break
            if self.clock() > deadline:
                raise HAProxyError("HAProxy did not come back from reload (see its log: a port of the "
                                   f"range {self.opts.port_range} may be taken)")
            await asyncio.sleep(0.02)
        self.reloads += 1
        log.info("haproxy reloaded", extra={"frontends": len(all_fronts), "reloads": self.reloads})
        # The new worker holds exactly the configuration; servers draining in the old one are gone.
        self._draining.clear()
        await self._refresh(worker=pid)
