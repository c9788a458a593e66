"""noops instances: ls (one app's or every app's), kill."""
from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from cli import output
from cli.context import client
from cli.output import Format, OutputOpt, dash

app = typer.Typer(help="Instances: list and kill.", no_args_is_help=True)

STATE_STYLE = {"RUNNING": "green", "PENDING": "cyan", "STARTING": "cyan", "FAILED": "red", "LOST": "red",
               "KILLED": "dim"}


def health(i: dict[str, Any]) -> Text:
    h = i.get("healthy")
    if h is None:
        return Text("-")
    return Text("healthy", style="green") if h else Text("unhealthy", style="red")


@app.command("ls")
def ls(ctx: typer.Context,
       app_id: Annotated[str | None, typer.Argument(metavar="[APP]", help="Only this app's (default: every app's).")] = None,
       all_: Annotated[bool, typer.Option("--all", help="Ended ones too (FAILED, KILLED, LOST).")] = False,
       fmt: OutputOpt = Format.table) -> None:
    """Live instances (PENDING, STARTING, RUNNING), newest first."""
    phase = None if all_ else "live"
    with client(ctx) as c:
        apps = [app_id] if app_id else [a["id"] for a in c.get("/v1/apps")]
        insts = [i for a in apps for i in c.get_all(f"/v1/apps/{a}/instances", phase=phase)]
    output.show(fmt, insts, lambda: output.table(
        ["INSTANCE", "APP", "VERSION", "HOST", "STATE", "HEALTH", "IP", "REASON"],
        [[i["id"], i["app"], str(i["version"]), dash(i.get("host")),
          Text(i["state"], style=STATE_STYLE.get(i["state"], "")), health(i), dash(i.get("ip")), dash(i.get("reason"))]
         for i in insts], empty="no instances"))


@app.command()
def kill(ctx: typer.Context, ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Instance ids.")],
         scale: Annotated[bool, typer.Option("--scale", help="Lower the desired count by as many "
                                                              "(default: replace them).")] = False) -> None:
    """Stop the given instances; they are replaced unless --scale."""
    with client(ctx) as c:
        by_app: dict[str, list[str]] = {}
        for i in dict.fromkeys(ids):
            by_app.setdefault(c.get(f"/v1/instances/{i}")["app"], []).append(i)
        for a, mine in by_app.items():
            r = c.call("POST", f"/v1/apps/{a}/kill", json={"instances": mine, "scale": scale})
            then = "desired count lowered" if r.get("scaled") else "to be replaced"
            output.say(f"{a}: killing {', '.join(r.get('killing') or mine)} ({then})")
