"""The port every sink implements.  Both calls are idempotent: they make the sink hold exactly
what they are given (for ``apply_full``: for every app; for ``update``: for the apps named), so
retrying after a failure or applying the same state twice is harmless."""
from __future__ import annotations

from typing import Protocol

from services.registry.sinks.model import Desired


class Sink(Protocol):
    name: str

    async def apply_full(self, desired: Desired) -> None:
        """Converge to ``desired`` for every app; apps it holds that are not in ``desired`` are emptied."""

    async def update(self, changes: Desired) -> None:
        """Converge the apps in ``changes`` (each value is that app's complete set); others untouched."""

    async def close(self) -> None:
        """Release connections; never touches what the sink configured."""
