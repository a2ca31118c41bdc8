"""The pytest plugin for users (``bitrix_batch.testing``): the documented example runs as
pasted, through ``-p`` and through the installed entry point, in anyio strict and auto mode."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from importlib import metadata

import anyio
import pytest

import bitrix_batch
from bitrix_batch.emulator import Emulator, EmulatorConfig
from bitrix_batch.testing import client_for, summary

ROOT = pathlib.Path(bitrix_batch.__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "emulator.md"
ENTRY_POINT = "bitrix_batch.testing"

#: More of the plugin than the docs show: the marker, the summary's exact numbers, a second
#: marker winning over the first, and --strict-markers accepting the marker.
EXTRA = """
import pytest


@pytest.mark.bitrix_emulator(seed_leads=5)
def test_marker_configures_the_emulator(bitrix_emulator):
    assert bitrix_emulator.count("lead") == 5
    assert bitrix_emulator.config.rate_limit is False


@pytest.mark.bitrix_emulator(seed_leads=5)
@pytest.mark.bitrix_emulator(seed_leads=2, rate_limit=True)
def test_the_closest_marker_wins(bitrix_emulator):
    assert bitrix_emulator.count("lead") == 2
    assert bitrix_emulator.config.rate_limit is True


@pytest.mark.anyio
async def test_stats_summary(bitrix_client, bitrix_stats):
    assert bitrix_stats()["requests"] == 0
    await bitrix_client.call("crm.lead.add", {"fields": {"TITLE": "x"}})
    await bitrix_client.batch(["user.current", ("crm.lead.get", {"id": 999})])
    stats = bitrix_stats()
    assert (stats["requests"], stats["batches"], stats["commands"]) == (2, 1, 3)
    assert stats["errors"] == 1
"""


def documented_example() -> str:
    """The first Python block of the docs' "Testing your own code with it" section."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### Testing your own code with it", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the section has no python example"
    return match.group(1)


def run_pytest(tmp: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest on ``tmp`` in a fresh interpreter that imports this checkout's package."""
    (tmp / "test_documented.py").write_text(documented_example(), encoding="utf-8")
    (tmp / "test_extra.py").write_text(EXTRA, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    return subprocess.run(
        [*command, "--strict-markers", "-W", "error", *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def all_passed(done: subprocess.CompletedProcess[str]) -> None:
    """The run succeeded and ran every test of both files (each async one per backend)."""
    assert done.returncode == 0, done.stdout + done.stderr
    counts = re.search(r"(\d+) passed", done.stdout)
    assert counts is not None, done.stdout
    assert int(counts.group(1)) >= 6, done.stdout
    assert "failed" not in done.stdout, done.stdout
    assert "error" not in done.stdout, done.stdout


def entry_point_installed() -> bool:
    """Whether the installed distribution declares the pytest11 entry point."""
    return any(
        ep.name == ENTRY_POINT and ep.value == "bitrix_batch.testing"
        for ep in metadata.entry_points(group="pytest11")
    )


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_documented_example_runs_as_pasted_with_dash_p(tmp_path: pathlib.Path, mode: str) -> None:
    all_passed(run_pytest(tmp_path, "-p", "bitrix_batch.testing", "-o", f"anyio_mode={mode}"))


def test_documented_example_runs_through_the_entry_point(tmp_path: pathlib.Path) -> None:
    if not entry_point_installed():
        pytest.skip("the pytest11 entry point is not installed yet: run `pip install -e .`")
    all_passed(run_pytest(tmp_path))
    # -p on top of the entry point is no second registration.
    all_passed(run_pytest(tmp_path, "-p", "bitrix_batch.testing"))
    # And it can be turned off: its marker is then unknown to --strict-markers.
    off = run_pytest(tmp_path, "-p", "no:bitrix_batch.testing")
    assert off.returncode != 0
    assert "'bitrix_emulator' not found in `markers`" in off.stdout, off.stdout


def test_pyproject_declares_the_entry_point() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    table = text.split("[project.entry-points.pytest11]", 1)
    assert len(table) == 2
    assert re.search(r'^"bitrix_batch\.testing" = "bitrix_batch\.testing"$', table[1], re.M)


def test_the_client_does_not_import_pytest_or_the_plugin() -> None:
    code = (
        "import sys, bitrix_batch, bitrix_batch.emulator; "
        "print('pytest' in sys.modules, 'bitrix_batch.testing' in sys.modules)"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_loading_the_plugin_does_not_load_the_emulator() -> None:
    code = "import sys, bitrix_batch.testing; print('bitrix_batch.emulator' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["False"], done.stderr


def test_summary_counts_in_process() -> None:
    emu = Emulator(EmulatorConfig(rate_limit=False, operating_limit=False))

    async def scenario() -> None:
        async with client_for(emu) as client:
            await client.batch([("crm.lead.add", {"fields": {"TITLE": "same"}})] * 2)

    anyio.run(scenario)
    numbers = summary(emu)
    assert numbers["requests"] == 1
    assert numbers["commands"] == 2  # the two adds, not the batch call carrying them
    assert numbers["duplicate_adds"] == 1  # the same fields added twice
    assert set(numbers) == {
        "requests",
        "batches",
        "commands",
        "errors",
        "status_503",
        "status_429",
        "timeouts",
        "faults",
        "duplicate_adds",
        "oauth_refreshes",
    }
    emu.close()
