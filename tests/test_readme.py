"""The README's quickstart runs as written, and its first lines give the two commands."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).parent.parent / "README.md"


def test_quickstart_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    """The first Python block of the README is a complete program that succeeds."""
    text = README.read_text()
    block = re.search(r"## Quickstart\n\n```python\n(.*?)```", text, re.S)
    assert block is not None
    exec(compile(block.group(1), "README-quickstart", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.strip().isdigit()  # the ID of the 100th lead


def test_first_lines_are_the_two_commands() -> None:
    """A newcomer sees how to run the main job and the tests before anything else."""
    head = README.read_text().split("```")[1]
    assert "bitrix-batch demo" in head
    assert "python -m pytest" in head


def test_the_main_job_command_is_the_installed_demo() -> None:
    """`bitrix-batch demo` is the console script the cli extra installs."""
    pyproject = (README.parent / "pyproject.toml").read_text()
    assert 'bitrix-batch = "bitrix_batch.cli:main"' in pyproject
    assert re.search(r"^cli = \[.*tqdm.*uvicorn.*\]", pyproject, re.M)


def test_no_link_breaks_on_a_package_index() -> None:
    """A package index shows the README without the source tree: no relative links or images
    (paths are named as code instead), and none of the paths named are missing."""
    text = README.read_text()
    targets = re.findall(r"\]\(([^)]+)\)", text)
    assert [t for t in targets if not t.startswith(("https://", "http://", "#"))] == []
    for path in re.findall(r"`((?:docs|benchmarks|examples)/[\w./-]+)`", text):
        assert (README.parent / path).exists(), path
