"""The software's version: one source, the installed package's metadata (pyproject.toml)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("pickup-locker")
except PackageNotFoundError:  # run from a tree that was never installed
    VERSION = "0+source"
