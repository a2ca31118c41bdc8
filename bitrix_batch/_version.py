"""The package's version, read from its installed metadata (pyproject.toml is the one place)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bitrix_batch")
except PackageNotFoundError:  # pragma: no cover - run from a source tree never installed
    __version__ = "0+unknown"
