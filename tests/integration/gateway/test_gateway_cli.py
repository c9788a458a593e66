"""The `noops` CLI as a user runs it (a subprocess, `python -m cli.main`) against the real gateway
over a socket (real PostgreSQL and NATS; no placer: what needs one is in tests/e2e/test_cli.py).
Errors are one line on stderr with their exit code; `--output json` parses."""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import nats
import pytest_asyncio
from fastapi import FastAPI

from cli import errors
from devtools import infra
from libs import messages, subjects
from tests.support.noops_cli import REPO, Run, argv, env, one_line_error
from tests.support.serve import serving


async def noops(*args: str, gateway: str, token: str | None, cwd: Path = REPO, stdin: str | None = None) -> Run:
    p = await asyncio.create_subprocess_exec(*argv(*args), cwd=cwd, env=env(gateway, token),
                                             stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(stdin.encode() if stdin else None), 60)
    assert p.returncode is not None
    return Run(p.returncode, out.decode(), err.decode())


@pytest_asyncio.fixture
async def url(gateway_app: FastAPI) -> AsyncIterator[str]:
    async with serving(gateway_app) as u:
        yield u


def spec(app_id: str, **over) -> dict:  # type: ignore[no-untyped-def]
    s = json.loads((REPO / "examples" / "web.json").read_text())
    s.update(id=app_id, instances=2, **over)
    return s


async def test_errors_are_one_line_with_distinct_exit_codes(url, tokens, created, tmp_path: Path, uid) -> None:
    admin = tokens["admin"]
    one_line_error(await noops("apps", "ls", gateway=f"http://127.0.0.1:{infra.free_port()}", token=admin),
                   errors.UNREACHABLE, "unreachable", "connection refused")
    one_line_error(await noops("apps", "ls", gateway=url, token="not-a-token"), errors.AUTH,
                   "unknown, expired or revoked token", "token from NOOPS_TOKEN")
    one_line_error(await noops("apps", "ls", gateway=url, token=None, cwd=tmp_path), errors.AUTH, "no token")
    one_line_error(await noops("apps", "show", f"nope-{uid}", gateway=url, token=admin), errors.NOT_FOUND,
                   f"app 'nope-{uid}' not found")
    bad = spec(f"bad-{uid}", resources={"cpus": -1, "mem_mb": 32})
    one_line_error(await noops("apps", "deploy", "-", gateway=url, token=admin, stdin=json.dumps(bad)),
                   errors.USAGE, "invalid app spec", "resources.cpus")
    (tmp_path / "broken.json").write_text('{"id": ')
    one_line_error(await noops("apps", "deploy", str(tmp_path / "broken.json"), gateway=url, token=admin),
                   errors.USAGE, "broken.json: not valid JSON")
    one_line_error(await noops("instances", "kill", f"nope-{uid}", gateway=url, token=admin), errors.NOT_FOUND,
                   f"instance 'nope-{uid}' not found")
    one_line_error(await noops("events", "--type", "nonsense", gateway=url, token=admin), errors.USAGE,
                   "choose from deployment")

    # The role, or the app scope, is what the 403 names.
    app_id = created.app(f"cli-err-{uid}")
    deployed = await noops("apps", "deploy", "-", "--detach", "--timeout", "0", gateway=url, token=admin,
                           stdin=json.dumps(spec(app_id)))
    assert deployed.code == 0, deployed
    one_line_error(await noops("apps", "scale", app_id, "3", gateway=url, token=tokens["viewer"]), errors.AUTH,
                   "needs the operator role", "has viewer")
    one_line_error(await noops("apps", "show", app_id, gateway=url, token=tokens["payments"]), errors.AUTH,
                   "limited to apps 'payments-*'")
    one_line_error(await noops("tokens", "ls", gateway=url, token=tokens["operator"]), errors.AUTH,
                   "needs the admin role")
    # 409: a token name that is taken.
    one_line_error(await noops("tokens", "create", "test-viewer", "--role", "viewer", gateway=url, token=admin),
                   errors.CONFLICT)


async def test_deploy_update_scale_rollback_and_json_output(url, tokens, created, tmp_path: Path, uid) -> None:
    admin = tokens["admin"]
    app_id = created.app(f"cli-app-{uid}")
    f = tmp_path / "app.yaml"
    f.write_text(f"id: {app_id}\nimage: noops/base:latest\ninstances: 2\n"
                 "cmd: [httpd, -f, -p, '8080', -h, /www]\nports: [{name: http, container_port: 8080}]\n")
    # No placer here, so no deployment record appears: --detach says so after its wait.
    r = await noops("apps", "deploy", str(f), "--detach", "--timeout", "0", "-o", "json", gateway=url, token=admin)
    assert r.code == 0 and r.json() == {"app": app_id, "version": 1, "deployment": None}, r
    r = await noops("apps", "deploy", str(f), "--detach", "--timeout", "0", gateway=url, token=admin)
    assert r.code == 0 and f"{app_id} version 2 updated" in r.out, r  # it existed: PUT

    r = await noops("apps", "scale", app_id, "5", "-o", "json", gateway=url, token=admin)
    assert r.code == 0 and (r.json()["version"], r.json()["instances"]) == (3, 5), r
    # No VERSION: the one before the current (no version was ever good here).
    r = await noops("apps", "rollback", app_id, gateway=url, token=admin)
    assert r.code == 0 and "rolled back to the spec of version 2: version 4" in r.out, r
    one_line_error(await noops("apps", "rollback", app_id, "99", gateway=url, token=admin), errors.USAGE,
                   "version: app", "has no version 99")

    shown = (await noops("apps", "show", app_id, "-o", "json", gateway=url, token=admin)).json()
    assert (shown["id"], shown["version"], shown["instances"]) == (app_id, 4, 2)
    listed = (await noops("apps", "ls", "-o", "json", gateway=url, token=admin)).json()
    assert app_id in {a["id"] for a in listed}
    versions = (await noops("apps", "versions", app_id, "-o", "json", gateway=url, token=admin)).json()
    assert [v["version"] for v in versions] == [4, 3, 2, 1]
    assert [v["spec"]["instances"] for v in versions] == [2, 5, 2, 2]
    assert (await noops("instances", "ls", app_id, "-o", "json", gateway=url, token=admin)).json() == []
    for cmd in (["hosts", "ls"], ["tokens", "ls"], ["drift"], ["instances", "ls"]):
        r = await noops(*cmd, "-o", "json", gateway=url, token=admin)
        assert r.code == 0 and isinstance(r.json(), (list, dict)), (cmd, r)
    table = await noops("apps", "ls", gateway=url, token=admin)
    assert table.code == 0 and any(line.split()[:2] == [app_id, "4"] for line in table.out.splitlines()), table.out

    r = await noops("apps", "delete", app_id, gateway=url, token=admin)
    assert r.code == 0 and "deleting" in r.out
    one_line_error(await noops("apps", "show", app_id, gateway=url, token=admin), errors.NOT_FOUND)


async def test_tokens_create_use_and_revoke(url, tokens, created, uid) -> None:
    admin, name = tokens["admin"], f"cli-{uid}"
    created.tokens.append(name)
    r = await noops("tokens", "create", name, "--role", "viewer", "--apps", "payments-*", "--expires-in", "3600",
                    gateway=url, token=admin)
    assert r.code == 0 and "not shown again" in r.err, r
    secret = r.out.strip()
    assert (await noops("apps", "ls", gateway=url, token=secret)).code == 0
    listed = (await noops("tokens", "ls", "-o", "json", gateway=url, token=admin)).json()
    mine = next(t for t in listed if t["name"] == name)
    assert (mine["role"], mine["apps"], mine["active"]) == ("viewer", "payments-*", True)
    assert "token" not in mine
    assert (await noops("tokens", "revoke", name, gateway=url, token=admin)).code == 0
    one_line_error(await noops("apps", "ls", gateway=url, token=secret), errors.AUTH, "revoked")


async def test_hosts_ls_and_cordon(url, tokens, created, pool: asyncpg.Pool, uid) -> None:
    admin, host = tokens["admin"], f"cli-h-{uid}"
    created.hosts.append(host)
    await pool.execute("INSERT INTO hosts (id, cpus, mem_mb, last_seen) VALUES ($1, 4, 8192, now())", host)
    r = await noops("hosts", "cordon", host, gateway=url, token=admin)
    assert r.code == 0 and f"{host}: cordoned" in r.out, r
    rows = [line.split() for line in (await noops("hosts", "ls", gateway=url, token=admin)).out.splitlines()]
    mine = next(row for row in rows if row and row[0] == host)
    assert mine[1:3] == ["UP", "cordoned"] and "0/4" in mine, mine
    r = await noops("hosts", "uncordon", host, gateway=url, token=admin)
    assert r.code == 0 and f"{host}: schedulable" in r.out, r
    one_line_error(await noops("hosts", "drain", f"nope-{uid}", gateway=url, token=admin), errors.NOT_FOUND)


async def test_events_tail_prints_json_lines(url, tokens, created, nc: nats.NATS, uid) -> None:
    app_id = created.app(f"cli-ev-{uid}")
    other = created.app(f"cli-ev-other-{uid}")
    created.endpoint_subjects += [subjects.endpoints(app_id), subjects.endpoints(other)]
    p = await asyncio.create_subprocess_exec(*argv("events", "--app", app_id, "--type", "endpoints", "--count", "1",
                                                   "-o", "json"), cwd=REPO, env=env(url, tokens["admin"]),
                                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        # The CLI subscribes some time after it starts: publish until it has printed its one event.
        seq = 0
        while p.returncode is None and seq < 200:
            seq += 1
            for a in (other, app_id):  # the other app's first: had it passed the filter, it would be printed
                await nc.publish(subjects.endpoints(a), messages.encode(messages.EndpointsChanged(app=a, seq=seq,
                                                                                                  endpoints=[])))
            try:
                await asyncio.wait_for(asyncio.shield(p.wait()), 0.1)
            except asyncio.TimeoutError:
                pass
        out, err = await asyncio.wait_for(p.communicate(), 10)
    finally:
        if p.returncode is None:
            p.kill()
            await p.wait()
    assert p.returncode == 0, err
    lines = out.decode().splitlines()
    assert len(lines) == 1, lines
    got = json.loads(lines[0])
    assert (got["event"], got["app"], got["endpoints"]) == ("endpoints", app_id, [])


async def test_a_bug_is_one_line_unless_noops_debug(tokens) -> None:
    """Something that answers JSON of another shape than the gateway's makes the CLI fail inside:
    one line and exit 9, the traceback only with NOOPS_DEBUG=1."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def anything(_):  # type: ignore[no-untyped-def]
        return JSONResponse({"not": "a list"})

    async with serving(Starlette(routes=[Route("/v1/apps", anything)])) as odd:
        one_line_error(await noops("apps", "ls", gateway=odd, token="x"), errors.INTERNAL, "internal error",
                       "NOOPS_DEBUG=1")
        p = await asyncio.create_subprocess_exec(*argv("apps", "ls"), cwd=REPO, env={**env(odd, "x"), "NOOPS_DEBUG": "1"},
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(p.communicate(), 60)
    assert p.returncode != 0 and "Traceback" in err.decode()
