"""`noops-image build STACK [--explain]` (the `noops image build` of the CLI): build, print the
image id and tags; a refused build prints one line naming the layer and file and exits 1."""
from __future__ import annotations

from pathlib import Path

import typer

from imagebuild.build import build
from imagebuild.errors import BuildError

app = typer.Typer(help="Layered, reproducible noops images (docs/images.md).", no_args_is_help=True,
                  add_completion=False)


@app.callback()
def _group() -> None:
    """Layered images: a base, components, the app; noops-init as PID 1."""


@app.command("build")
def build_command(stack: Path = typer.Argument(..., help="The stack file (YAML or JSON)."),
                  explain: bool = typer.Option(False, "--explain", help="Print which layer set each value.")) -> None:
    """Build STACK's image on the local engine, offline and reproducibly."""
    try:
        result = build(stack, explain=explain)
    except BuildError as exc:
        typer.echo(f"noops image build: {exc}", err=True)
        raise typer.Exit(1) from None
    for line in result.explain:
        typer.echo(line)
    typer.echo(result.image_id)
    for tag in result.tags:
        typer.echo(tag)
