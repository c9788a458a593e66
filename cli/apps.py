"""noops apps: deploy (with its progress), wait, ls, show, scale, restart, rollback, versions, delete."""
from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.text import Text

from cli import output, specfile
from cli.client import Client
from cli.context import client, config
from cli.errors import CONFLICT, FAILED, INTERRUPTED, TIMEOUT, USAGE, CliError
from cli.follow import Display, Hints, follow, read
from cli.output import Format, OutputOpt, dash

app = typer.Typer(help="Apps: deploy, inspect, scale, roll back.", no_args_is_help=True)

DEFAULT_TIMEOUT_S = 600.0
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.0,
                                           help="Seconds to follow before giving up (exit 7; the deployment goes on).")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Follow the new version's deployment to its end, as deploy does.")]


def watch(ctx: typer.Context, app_id: str, version: int, *, timeout_s: float, fmt: Format) -> None:
    """Follow ``version`` with a progress display on stderr; the result on stdout; exit code by outcome."""
    cfg = config(ctx)
    display = Display(output.err())
    with Client(cfg) as c:
        try:
            p = follow(lambda: read(c, app_id, version), Hints(lambda: Client(cfg), app_id), timeout_s=timeout_s,
                       show=display)
        except KeyboardInterrupt:
            raise CliError(INTERRUPTED, f"stopped following; the deployment goes on (noops apps wait {app_id})") from None
        finally:
            display.close()
    if fmt is Format.json:
        output.emit_json({"app": app_id, "version": version, "state": p.state, "reason": p.reason,
                          "deployment": p.record})
    if p.ok:
        if fmt is Format.table:
            output.say(f"{app_id} version {version} deployed: {p.in_service}/{p.target} in service "
                       f"(deployment {p.deployment})")
        return
    if not p.done:
        raise CliError(TIMEOUT, f"timed out after {timeout_s:g}s: {p.line()} (it goes on: noops apps wait {app_id})")
    raise CliError(FAILED, f"deployment {p.deployment} of {app_id} version {version} {p.state}: {p.reason}")


def _deployment_id(c: Client, app_id: str, version: int, within_s: float) -> int | None:
    """The id the placer gives the version's deployment (it opens it on reading the request)."""
    deadline = time.monotonic() + within_s
    while True:
        for d in c.get(f"/v1/apps/{app_id}/deployments", limit=20):
            if d.get("to_version") == version:
                return d.get("id")
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def _changed(ctx: typer.Context, app_id: str, version: int, what: str, *, wait: bool, timeout_s: float,
             fmt: Format, answer: Any) -> None:
    """After a write that made a new version: follow it, or say what was done."""
    if wait:
        output.note(what)
        watch(ctx, app_id, version, timeout_s=timeout_s, fmt=fmt)
    elif fmt is Format.json:
        output.emit_json(answer)
    else:
        output.say(what)


@app.command()
def deploy(ctx: typer.Context,
           file: Annotated[str, typer.Argument(help="The app spec, JSON or YAML (- for standard input).")],
           detach: Annotated[bool, typer.Option("--detach", help="Return once the deployment exists, with its id.")] = False,
           timeout: TimeoutOpt = DEFAULT_TIMEOUT_S, fmt: OutputOpt = Format.table) -> None:
    """Create the app, or update it (a new version), and follow the deployment until it succeeds
    (exit 0), fails (exit 1, the reason printed) or --timeout passes (exit 7)."""
    spec = specfile.load(file)
    app_id = spec["id"]
    with client(ctx) as c:
        try:
            view, verb = c.call("POST", "/v1/apps", json=spec), "created"
        except CliError as exc:
            if exc.code != CONFLICT:  # 409: it exists, so this is an update
                raise
            view, verb = c.call("PUT", f"/v1/apps/{app_id}", json=spec), "updated"
        version = int(view["version"])
        if detach:
            dep = _deployment_id(c, app_id, version, min(timeout, 10.0))
            if fmt is Format.json:
                output.emit_json({"app": app_id, "version": version, "deployment": dep})
            else:
                output.say(f"{app_id} version {version} {verb}: deployment {dash(dep)}")
            return
    output.note(f"{app_id} version {version} {verb}")
    watch(ctx, app_id, version, timeout_s=timeout, fmt=fmt)


@app.command()
def wait(ctx: typer.Context, app_id: Annotated[str, typer.Argument(metavar="ID")],
         version: Annotated[int | None, typer.Option(help="This version (default: the app's current one).")] = None,
         timeout: TimeoutOpt = DEFAULT_TIMEOUT_S, fmt: OutputOpt = Format.table) -> None:
    """Follow a deployment (after --detach, or someone else's) to its end; exit codes as deploy."""
    if version is None:
        with client(ctx) as c:
            version = int(c.get(f"/v1/apps/{app_id}")["version"])
    watch(ctx, app_id, version, timeout_s=timeout, fmt=fmt)


def _status(a: dict[str, Any]) -> Text:
    style = {"waiting": "yellow", "deleting": "dim"}.get(str(a.get("status")), "")
    return Text(dash(a.get("status")), style=style)


def _deployment(d: dict[str, Any] | None) -> Text:
    if not d:
        return Text("-")
    p = d.get("progress") or {}
    text = f"#{d['id']} v{d.get('to_version')} {d.get('state')}"
    if p:
        text += f" {p.get('new_running', 0)}/{p.get('target', 0)}"
    style = {"failed": "red", "succeeded": "green", "running": "cyan", "paused": "yellow"}.get(str(d.get("state")), "")
    return Text(text, style=style)


@app.command("ls")
def ls(ctx: typer.Context, fmt: OutputOpt = Format.table) -> None:
    """The apps the token may see."""
    with client(ctx) as c:
        apps = c.get("/v1/apps")
    output.show(fmt, apps, lambda: output.table(
        ["APP", "VERSION", "RUNNING", "STATUS", "DEPLOYMENT", "LB"],
        [[a["id"], str(a["version"]), f"{a['counts'].get('RUNNING', 0)}/{a['instances']}", _status(a),
          _deployment(a.get("deployment")), ", ".join(f"{k}={v}" for k, v in (a.get("lb") or {}).items()) or "-"]
         for a in apps], empty="no apps"))


@app.command()
def show(ctx: typer.Context, app_id: Annotated[str, typer.Argument(metavar="ID")], fmt: OutputOpt = Format.table) -> None:
    """One app: spec summary, instance counts, its latest deployment, last failure."""
    with client(ctx) as c:
        a = c.get(f"/v1/apps/{app_id}")

    def people() -> None:
        spec, d, f = a.get("spec") or {}, a.get("deployment"), a.get("last_failure")
        counts = ", ".join(f"{n} {s}" for s, n in a["counts"].items() if n) or "none"
        rows: list[tuple[str, output.Cell]] = [
            ("app", a["id"]), ("version", f"{a['version']} (last good: {dash(a.get('last_good_version'))})"),
            ("status", Text.assemble(_status(a), f" {a['status_reason']}" if a.get("status_reason") else "")),
            ("instances", f"{a['instances']} wanted; {counts}"), ("image", dash(spec.get("image"))),
            ("deployment", _deployment(d))]
        if d and d.get("reason"):
            rows.append(("  reason", d["reason"]))
        if (a.get("backoff") or {}).get("delay_s"):
            rows.append(("backoff", f"{a['backoff']['delay_s']}s, next launch after {dash(a['backoff'].get('launch_after'))}"))
        if f:
            rows.append(("last failure", f"{f['instance']} v{f['version']} on {f['host']} {f['state']}: {f['reason']}"))
        if a.get("lb"):
            rows.append(("lb", ", ".join(f"{k}={v}" for k, v in a["lb"].items())))
        rows.append(("updated", dash(a.get("updated_at"))))
        output.fields(rows)
    output.show(fmt, a, people)


@app.command()
def scale(ctx: typer.Context, app_id: Annotated[str, typer.Argument(metavar="ID")],
          instances: Annotated[int, typer.Argument(metavar="N", min=0)], wait: WaitOpt = False,
          timeout: TimeoutOpt = DEFAULT_TIMEOUT_S, fmt: OutputOpt = Format.table) -> None:
    """Set the instance count (a new version)."""
    with client(ctx) as c:
        a = c.call("PATCH", f"/v1/apps/{app_id}", json={"instances": instances})
    _changed(ctx, app_id, int(a["version"]), f"{app_id} scaled to {instances}: version {a['version']}",
             wait=wait, timeout_s=timeout, fmt=fmt, answer=a)


@app.command()
def restart(ctx: typer.Context, app_id: Annotated[str, typer.Argument(metavar="ID")], wait: WaitOpt = False,
            timeout: TimeoutOpt = DEFAULT_TIMEOUT_S, fmt: OutputOpt = Format.table) -> None:
    """Replace every instance (a new version with the same spec), following the rolling-update knobs."""
    with client(ctx) as c:
        r = c.call("POST", f"/v1/apps/{app_id}/restart")
    _changed(ctx, app_id, int(r["version"]), f"{app_id} restarting: version {r['version']}",
             wait=wait, timeout_s=timeout, fmt=fmt, answer=r)


def _rollback_target(c: Client, app_id: str) -> int:
    """The last good version when the current one is not it; else the one before the current."""
    a = c.get(f"/v1/apps/{app_id}")
    current, good = int(a["version"]), a.get("last_good_version")
    if good and int(good) != current:
        return int(good)
    earlier = [v["version"] for v in c.get(f"/v1/apps/{app_id}/versions", limit=2) if v["version"] < current]
    if not earlier:
        raise CliError(USAGE, f"app {app_id!r} has no version before {current} to roll back to")
    return int(earlier[0])


@app.command()
def rollback(ctx: typer.Context, app_id: Annotated[str, typer.Argument(metavar="ID")],
             version: Annotated[int | None, typer.Argument(
                 help="The earlier version whose spec to run (default: the last good one, or the one before).")] = None,
             wait: WaitOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT_S, fmt: OutputOpt = Format.table) -> None:
    """Run an earlier version's spec again, as a new version."""
    with client(ctx) as c:
        target = version if version is not None else _rollback_target(c, app_id)
        r = c.call("POST", f"/v1/apps/{app_id}/rollback", json={"version": target})
    _changed(ctx, app_id, int(r["version"]), f"{app_id} rolled back to the spec of version {target}: "
             f"version {r['version']}", wait=wait, timeout_s=timeout, fmt=fmt, answer=r)


@app.command()
def versions(ctx: typer.Context, app_id: Annotated[str, typer.Argument(metavar="ID")],
             limit: Annotated[int, typer.Option(min=1, max=500)] = 20, fmt: OutputOpt = Format.table) -> None:
    """Version history, newest first."""
    with client(ctx) as c:
        vs = c.get(f"/v1/apps/{app_id}/versions", limit=limit)
    output.show(fmt, vs, lambda: output.table(
        ["VERSION", "CREATED", "BY", "INSTANCES", "IMAGE"],
        [[str(v["version"]), dash(v.get("created_at")), dash(v.get("created_by")),
          dash((v.get("spec") or {}).get("instances")), dash((v.get("spec") or {}).get("image"))] for v in vs]))


@app.command()
def delete(ctx: typer.Context, app_id: Annotated[str, typer.Argument(metavar="ID")],
           wait: Annotated[bool, typer.Option("--wait", help="Until no instance of it is live.")] = False,
           timeout: TimeoutOpt = DEFAULT_TIMEOUT_S) -> None:
    """Stop every instance and remove the app."""
    with client(ctx) as c:
        c.call("DELETE", f"/v1/apps/{app_id}")
        output.say(f"{app_id} deleting")
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while c.get_all(f"/v1/apps/{app_id}/instances", phase="live"):
            if time.monotonic() >= deadline:
                raise CliError(TIMEOUT, f"timed out after {timeout:g}s: {app_id} still has live instances")
            time.sleep(0.5)
        output.note(f"{app_id}: no live instance left")

