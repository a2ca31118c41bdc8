"""The package's shape: its public names, and which modules may do I/O."""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

import bitrix_batch

PACKAGE = pathlib.Path(bitrix_batch.__file__).parent
PURE = ["_types", "_errors", "_encoding", "_refs", "_commands", "_methods", "_planner",
        "_scheduler", "_response", "_result", "_retry", "_auth"]
IO_LIBRARIES = {"anyio", "httpx", "tenacity", "asyncio", "socket"}


def imports_of(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
    return names


def test_all_is_sorted_complete_and_importable() -> None:
    """__all__ is sorted, every name exists, and every public class is listed."""
    names = bitrix_batch.__all__
    assert list(names) == sorted(names)
    for name in names:
        assert hasattr(bitrix_batch, name), name
    public = {n for n in dir(bitrix_batch) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(names)


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_no_io(module: str) -> None:
    """The core (model, encoding, planner, scheduler, decoding) imports no I/O library."""
    roots = {name.split(".")[0] for name in imports_of(PACKAGE / f"{module}.py")}
    allowed_httpx = {"_retry", "_auth"}  # they only *name* httpx types, never call it
    found = roots & IO_LIBRARIES
    if module in allowed_httpx:
        found -= {"httpx"}
    assert not found, f"{module} imports {found}"


def test_emulator_is_independent_of_the_client_core() -> None:
    """The emulator shares no resolver, planner or encoder with the client."""
    for path in (PACKAGE / "emulator").glob("*.py"):
        for name in imports_of(path):
            assert not name.startswith(("bitrix_batch._", "..")), f"{path.name}: {name}"


def test_the_package_does_not_import_the_emulator() -> None:
    """`import bitrix_batch` stays light: no emulator, no uvicorn."""
    source = (PACKAGE / "__init__.py").read_text()
    assert "emulator" not in {n.split(".")[-1] for n in imports_of(PACKAGE / "__init__.py")}
    assert "import uvicorn" not in source
    importlib.import_module("bitrix_batch")


def test_version_matches_the_distribution() -> None:
    """__version__ is the installed distribution's version."""
    from importlib.metadata import version

    assert bitrix_batch.__version__ == version("bitrix_batch")
