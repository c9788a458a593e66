"""What commands print: tables (rich) for people, JSON for scripts (``--output json``: the
gateway's objects as they are, one document on stdout).  Progress and errors go to stderr, so
stdout stays what a script reads."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Not a terminal (a pipe, a test): no wrapping at 80 columns, so table rows stay on one line.
PIPE_WIDTH = 250


class Format(str, Enum):
    table = "table"
    json = "json"


OutputOpt = Annotated[Format, typer.Option("--output", "-o", help="table for people, json for scripts.")]


def _console(stderr: bool) -> Console:
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=PIPE_WIDTH)


def out() -> Console:
    return _console(False)


def err() -> Console:
    return _console(True)


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def emit_json_line(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


Cell = str | Text


def table(columns: Sequence[str], rows: Iterable[Sequence[Cell]], *, empty: str = "nothing") -> None:
    rows = list(rows)
    console = out()
    if not rows:
        console.print(f"({empty})", style="dim")
        return
    t = Table(box=None, pad_edge=False, header_style="bold")
    for c in columns:
        t.add_column(c, no_wrap=True)
    for r in rows:
        t.add_row(*r)
    console.print(t)


def fields(pairs: Iterable[tuple[str, Cell]]) -> None:
    """``key  value`` lines (apps show, drift)."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    for k, v in pairs:
        t.add_row(k, v)
    out().print(t)


def say(text: str) -> None:
    """A result line for people (stdout)."""
    out().print(text, highlight=False, markup=False)


def note(text: str) -> None:
    """Something on the side (stderr)."""
    err().print(text, highlight=False, markup=False, style="dim")


def show(fmt: Format, obj: Any, people: Any) -> None:
    """JSON of ``obj``, or call ``people()`` to print the table."""
    if fmt is Format.json:
        emit_json(obj)
    else:
        people()


def dash(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)
