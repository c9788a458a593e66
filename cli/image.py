"""`noops image build STACK [--explain]`: imagebuild's command (docs/images.md).  It runs on the
local engine, not through the gateway, and is imported only when used, so the other commands
start without the engine's client."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Images: build layered, reproducible images (docs/images.md).", no_args_is_help=True)


@app.command("build")
def build(stack: Annotated[Path, typer.Argument(help="The stack file (YAML or JSON).")],
          explain: Annotated[bool, typer.Option("--explain", help="Print which layer set each value.")] = False,
          ) -> None:
    """Build STACK's image on the local engine, offline and reproducibly; print its id and tags."""
    from imagebuild.main import build_command
    build_command(stack, explain)
