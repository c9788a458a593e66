"""The `noops` command (docs/cli.md).  ``app`` is the console script; ``python -m cli.main`` runs it too.
Errors end here: a CliError is one line on stderr and its exit code (cli/errors.py); anything else
is a bug, shown as one line too unless NOOPS_DEBUG=1 asks for the traceback."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cli import apps, config, drift, events, hosts, image, instances, tokens
from cli.errors import INTERNAL, CliError


class NoopsApp(typer.Typer):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except CliError as exc:
            _fail(exc.message, exc.code)
        except Exception as exc:
            if os.environ.get("NOOPS_DEBUG") == "1":
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (NOOPS_DEBUG=1 shows the traceback)", INTERNAL)


def _fail(message: str, code: int) -> None:
    Console(stderr=True, width=10_000).print(f"noops: {message}", style="red", highlight=False, markup=False,
                                            soft_wrap=True)
    sys.exit(code)


app = NoopsApp(name="noops", help="Operate a noops cluster through its gateway.", no_args_is_help=True,
               add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.callback()
def root(ctx: typer.Context,
         gateway: Annotated[str | None, typer.Option(
             "--gateway", metavar="URL", show_default=False,
             help="Gateway URL (else NOOPS_GATEWAY, else http://127.0.0.1:8700).")] = None,
         token: Annotated[str | None, typer.Option(
             "--token", metavar="TOKEN", show_default=False,
             help="API token (else NOOPS_TOKEN, else .noops/admin-token here or in a parent directory).")] = None,
         ) -> None:
    ctx.obj = config.resolve(gateway, token, os.environ, Path.cwd())


app.add_typer(apps.app, name="apps")
app.add_typer(instances.app, name="instances")
app.add_typer(hosts.app, name="hosts")
app.add_typer(tokens.app, name="tokens")
app.add_typer(image.app, name="image")
app.command("events")(events.events)
app.command("drift")(drift.drift)

if __name__ == "__main__":
    app(prog_name="noops")
