"""noops tokens: create (the secret is shown once), ls, revoke.  Admin tokens only."""
from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer
from rich.text import Text

from cli import output
from cli.context import client
from cli.output import Format, OutputOpt, dash

app = typer.Typer(help="API tokens (admin).", no_args_is_help=True)


class Role(str, Enum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"


@app.command()
def create(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME")],
           role: Annotated[Role, typer.Option("--role", help="What it may do.")],
           apps: Annotated[str | None, typer.Option("--apps", help="Only apps matching this glob, e.g. 'payments-*'.")] = None,
           expires_in: Annotated[int | None, typer.Option("--expires-in", min=1, help="Seconds until it expires.")] = None,
           fmt: OutputOpt = Format.table) -> None:
    """Make a token; its secret goes to stdout, once (it is never shown again)."""
    body: dict[str, Any] = {"name": name, "role": role.value}
    if apps is not None:
        body["apps"] = apps
    if expires_in is not None:
        body["expires_in_s"] = expires_in
    with client(ctx) as c:
        t = c.call("POST", "/v1/tokens", json=body)
    if fmt is Format.json:
        output.emit_json(t)
        return
    output.note(f"token {t['name']!r} ({t['role']}, apps {t.get('apps') or '*'}, expires {dash(t.get('expires_at'))}); "
                "store the secret now, it is not shown again:")
    output.say(t["token"])


@app.command("ls")
def ls(ctx: typer.Context, fmt: OutputOpt = Format.table) -> None:
    """Every token, revoked and expired ones too; never a secret."""
    with client(ctx) as c:
        ts = c.get("/v1/tokens")
    output.show(fmt, ts, lambda: output.table(
        ["NAME", "ROLE", "APPS", "ACTIVE", "EXPIRES", "CREATED BY"],
        [[t["name"], t["role"], t.get("apps") or "*",
          Text("yes", style="green") if t.get("active", True) else Text("no", style="dim"),
          dash(t.get("expires_at")), dash(t.get("created_by"))] for t in ts], empty="no tokens"))


@app.command()
def revoke(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME")]) -> None:
    """Revoke at once: the next request with it is answered 401."""
    with client(ctx) as c:
        c.call("DELETE", f"/v1/tokens/{name}")
    output.say(f"token {name!r} revoked")
