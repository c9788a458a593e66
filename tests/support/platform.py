"""The whole platform as real processes, for e2e tests (devtools/platform.py; `make chaos` uses it too)."""
from devtools.platform import Platform

__all__ = ["Platform"]
