"""The benchmark suite at its smoke size, so the harness cannot rot.

``python -m benchmarks --smoke --out tmp`` runs every benchmark at a tiny size (servers on
127.0.0.1 only) and writes into the temporary folder; this checks that every table and figure
is there, positive, and that every client that ran succeeded. Peers that are not installed
are skipped by the harness itself, and so are not expected here. The figures themselves mean
nothing at this size.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.__main__ import update_results

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
PEERS = ("fast_bitrix24", "b24pysdk")


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = json.loads((out / "results" / "suite.json").read_text())
    return out, summary


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_every_benchmark_ran(suite: tuple[Path, dict[str, Any]]) -> None:
    _, summary = suite
    assert set(summary["steps"]) == {"cpu", "memory", "planner", "throttle", "emulator", "export"}
    for name, step in summary["steps"].items():
        assert step["ok"], (name, step["output_tail"])
        assert Path(step["json"]).exists()


def test_cpu_figures_for_every_installed_client(suite: tuple[Path, dict[str, Any]]) -> None:
    _, summary = suite
    cpu = summary["cpu"]
    expected = {"ours", "baseline"} | {p for p in PEERS if installed(p)}
    assert set(cpu["clients"]) == expected
    assert set(cpu["skipped"]) == {p for p in PEERS if not installed(p)}
    for name, row in cpu["clients"].items():
        assert row["ok"], (name, row["errors"])
        for workload in ("add", "get"):
            assert row[workload]["succeeded"] == row[workload]["repetitions"] >= 1
            assert positive(row[workload]["cpu_per_1000_s"]), (name, workload)
            assert positive(row[workload]["wall_s"]), (name, workload)
        assert positive(row["total_cpu_per_1000_s"])
    assert positive(cpu["ratios"]["ours/baseline"]["total"])
    if installed("fast_bitrix24"):
        assert positive(cpu["ratios"]["ours/fast_bitrix24"]["total"])


def test_memory_and_planning_figures(suite: tuple[Path, dict[str, Any]]) -> None:
    _, summary = suite
    memory = summary["memory"]
    for run in memory["stream"]:
        assert run["ok"], run.get("error")
        assert positive(run["peak_rss_mb"])
        assert len(run["samples"]) == 10  # one every 10% of the job
        assert all(positive(s["rss_mb"]) for s in run["samples"])
    assert memory["batch"]["ok"]
    assert positive(memory["batch"]["peak_bytes_per_command"])
    assert positive(memory["batch_traced"]["traced_peak_bytes_per_command"])
    assert memory["plan"]["ok"]
    assert positive(memory["plan"]["commands_per_s"])
    assert memory["cycle"]["ok"], memory["cycle"].get("error")
    assert positive(memory["cycle"]["seconds"])


def test_planner_throttle_and_emulator_figures(suite: tuple[Path, dict[str, Any]]) -> None:
    _, summary = suite
    assert positive(summary["planner"]["throughput"]["planned_encoded_per_s"])
    rows = {r["client"]: r for r in summary["throttle"]}
    assert set(rows) == {"ours"} | {p for p in PEERS if installed(p)}
    # Only ours must finish at the rate limit: the peers' failures there are the finding.
    assert rows["ours"]["completed"]
    assert rows["ours"]["duplicate_adds"] == rows["ours"]["lost_adds"] == 0
    assert all(positive(r["wall_s"]) and positive(r["bound_s"]) for r in rows.values())
    assert summary["emulator"]["rows"]
    assert all(positive(r["requests_per_s"]) for r in summary["emulator"]["rows"])


def test_export_figures_for_every_installed_client(suite: tuple[Path, dict[str, Any]]) -> None:
    _, summary = suite
    rows = {r["tool"]: r for r in summary["export"]["results"]}
    assert set(rows) == {"ours"} | {p for p in PEERS if installed(p)}
    ours = rows["ours"]
    assert ours["ok"]
    assert ours["ids_exact"]
    assert ours["rows"] == summary["export"]["rows"]
    assert positive(ours["http_requests"])
    assert positive(ours["wall_s"])


def test_markdown_tables_and_chart(suite: tuple[Path, dict[str, Any]]) -> None:
    out, _ = suite
    text = (out / "RESULTS.md").read_text()
    begin, end = text.index("<!-- suite:begin -->"), text.index("<!-- suite:end -->")
    section = text[begin:end]
    for title in (
        "bench_cpu.py",
        "bench_memory.py",
        "bench_planner.py",
        "bench_throttle.py",
        "bench_emulator.py",
        "bench_export.py",
    ):
        assert title in section
    ratio = re.search(
        r"\| bitrix_batch / bare httpx baseline \| [\d.]+ \| [\d.]+ \| ([\d.]+) \|", section
    )
    assert ratio is not None
    assert float(ratio.group(1)) > 0
    tables = section.split("### ")
    cpu_and_memory = [t for t in tables if t.startswith(("Client CPU", "Memory"))]
    assert len(cpu_and_memory) == 2
    assert not any("failed" in t for t in cpu_and_memory)
    if installed("matplotlib"):
        assert (out / "results" / "suite.png").stat().st_size > 10_000


def test_rerun_keeps_the_rest_of_results_md(tmp_path: Path) -> None:
    # The generated section is replaced in place; what is around it stays as it was.
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\nhand-written\n")
    update_results(path, "<!-- suite:begin -->\nfirst\n<!-- suite:end -->")
    path.write_text(path.read_text() + "\nmore hand-written\n")
    update_results(path, "<!-- suite:begin -->\nsecond\n<!-- suite:end -->")
    text = path.read_text()
    assert text.startswith("# Results\n\nhand-written\n")
    assert text.endswith("\nmore hand-written\n")
    assert "second" in text
    assert "first" not in text
