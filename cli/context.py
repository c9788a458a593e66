"""What every command needs from the root: the resolved Config, a Client made from it."""
from __future__ import annotations

import typer

from cli.client import Client
from cli.config import Config


def config(ctx: typer.Context) -> Config:
    cfg = ctx.find_root().obj
    assert isinstance(cfg, Config), "the root callback sets the config"
    return cfg


def client(ctx: typer.Context) -> Client:
    return Client(config(ctx))
