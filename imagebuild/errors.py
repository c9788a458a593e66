"""The one error a build refuses with: it names the layer and the file, so a person knows where to look."""
from __future__ import annotations


class BuildError(Exception):
    def __init__(self, layer: str, file: str, message: str) -> None:
        super().__init__(f"layer {layer!r}, {file}: {message}")
        self.layer = layer
        self.file = file
        self.message = message
