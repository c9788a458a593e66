"""noops hosts: ls (state, load, reserved of capacity), drain, undrain, cordon, uncordon."""
from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from cli import output
from cli.context import client
from cli.output import Format, OutputOpt, dash

app = typer.Typer(help="Hosts: list, drain, cordon.", no_args_is_help=True)
HostArg = Annotated[str, typer.Argument(metavar="HOST")]


def state(h: dict[str, Any]) -> Text:
    """Green: up and heard from; yellow: up but silent (no placements); white: not online (as the map)."""
    if h.get("state") == "UP" and h.get("online"):
        return Text("UP", style="bold green")
    if h.get("state") == "UP":
        return Text("UP (silent)", style="yellow")
    return Text(dash(h.get("state")), style="bold white")


def flags(h: dict[str, Any]) -> Text:
    out = Text()
    if h.get("draining"):
        out.append("draining ", style="magenta")
    if h.get("cordoned"):
        out.append("cordoned", style="yellow")
    return out if out.plain else Text("-")


def share(used: float, cap: float, unit: str = "") -> Text:
    """``used/cap`` coloured by how full the host is."""
    frac = used / cap if cap else 0.0
    style = "red" if frac >= 0.9 else "yellow" if frac >= 0.7 else ""
    return Text(f"{used:g}/{cap:g}{unit}", style=style)


@app.command("ls")
def ls(ctx: typer.Context, fmt: OutputOpt = Format.table) -> None:
    """Every host: state, flags, 1-minute load, cpus and memory reserved of capacity, instances."""
    with client(ctx) as c:
        hosts = c.get("/v1/hosts")
    output.show(fmt, hosts, lambda: output.table(
        ["HOST", "STATE", "FLAGS", "LOAD", "CPUS", "MEMORY", "INSTANCES", "LAST SEEN"],
        [[h["id"], state(h), flags(h), dash(None if h.get("load1") is None else f"{h['load1']:.2f}"),
          share(float(h["reserved"]["cpus"]), float(h["cpus"])),
          share(float(h["reserved"]["mem_mb"]), float(h["mem_mb"]), " MiB"),
          str(h.get("instances", 0)), dash(h.get("last_seen"))] for h in hosts], empty="no hosts"))


def _flag(ctx: typer.Context, host: str, what: str, on: bool) -> None:
    with client(ctx) as c:
        r = c.call("POST" if on else "DELETE", f"/v1/hosts/{host}/{what}")
    now = ", ".join(k for k in ("draining", "cordoned") if r.get(k)) or "schedulable"
    output.say(f"{host}: {now} ({r.get('apps_affected', 0)} apps asked to look again)")


@app.command()
def drain(ctx: typer.Context, host: HostArg) -> None:
    """Move the host's instances elsewhere (each app's rolling-update knobs apply)."""
    _flag(ctx, host, "drain", True)


@app.command()
def undrain(ctx: typer.Context, host: HostArg) -> None:
    """Stop draining the host."""
    _flag(ctx, host, "drain", False)


@app.command()
def cordon(ctx: typer.Context, host: HostArg) -> None:
    """No new placements on the host; what runs there stays."""
    _flag(ctx, host, "cordon", True)


@app.command()
def uncordon(ctx: typer.Context, host: HostArg) -> None:
    """Placements on the host again."""
    _flag(ctx, host, "cordon", False)
