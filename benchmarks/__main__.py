"""``python -m benchmarks``: every benchmark, one command, tables and a chart.

    python -m benchmarks                  # default scale: a few minutes
    python -m benchmarks --full           # the real sizes: 1M commands, the real 2/s bucket
    python -m benchmarks --smoke          # tiny sizes, seconds: checks the harness, not speed
    python -m benchmarks --out /tmp/b     # write there; nothing in the repository is touched
    python -m benchmarks --only cpu,memory

Runs, each in its own process (and each spawning its own emulator processes):

- ``cpu`` (bench_cpu.py): client CPU per 1,000 commands, bitrix_batch vs fast-bitrix24,
  b24pysdk and a bare httpx baseline, adds and gets, with the ratios and their targets;
- ``memory`` (bench_memory.py): stream() peak RSS vs job size, batch() bytes per command,
  plan() commands/s, time to report a cycle;
- ``planner`` (bench_planner.py): requests and rounds, planner + encoder throughput;
- ``throttle`` (bench_throttle_peers.py: bench_throttle.py plus b24pysdk): wall time against
  the leaky bucket's bound, 503s, lost and duplicate adds, per client;
- ``emulator`` (bench_emulator.py): the emulator's own requests per second;
- ``export`` (bench_export.py): a list export, `list_all` vs fast-bitrix24 ``get_all`` and
  b24pysdk ``as_list_fast``: requests, 503s and wall time against the bucket's bound.

Writes under ``--out`` (default: ``benchmarks/``): each benchmark's JSON in
``results/suite/``, a summary in ``results/suite.json``, the chart ``results/suite.png``
(if matplotlib is installed), and the tables into ``RESULTS.md`` between
``<!-- suite:begin -->`` and ``<!-- suite:end -->`` (the rest of the file is kept; the markers
are appended if missing). With ``--only``, the other benchmarks keep their last figures.
Exit status 1 if any benchmark failed (a client failing counts).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import bench_cpu, bench_memory
from benchmarks._support import BENCH_DIR, child_cwd, child_env, environment, fmt, md_table
from benchmarks.chart import THROTTLE_LABELS, render

BEGIN = "<!-- suite:begin -->"
END = "<!-- suite:end -->"
STEPS = ("cpu", "memory", "planner", "throttle", "emulator", "export")

#: Each benchmark's options per scale. Smoke sizes only prove that the harness works.
SCALES: dict[str, dict[str, list[str]]] = {
    "smoke": {
        "cpu": ["--commands", "200", "--repeat", "1"],
        "memory": [
            "--stream-sizes",
            "2000",
            "--batch-commands",
            "2000",
            "--tracemalloc-commands",
            "1000",
            "--plan-commands",
            "5000",
            "--plan-repeat",
            "1",
            "--cycle-commands",
            "5000",
        ],
        "planner": ["--commands", "2000", "--chains", "30", "--repeat", "1"],
        "throttle": ["--commands", "3000", "--scale", "20", "--probe-seconds", "0"],
        "emulator": ["--seconds", "0.1", "--leads", "100"],
        "export": ["--smoke"],
    },
    "default": {
        "cpu": ["--commands", "20000", "--repeat", "3"],
        "memory": [],
        "planner": ["--repeat", "3"],
        "throttle": [],
        "emulator": ["--seconds", "0.5"],
        "export": ["--rows", "100000"],
    },
    "full": {
        "cpu": ["--commands", "20000", "--repeat", "5"],
        "memory": ["--full"],
        "planner": ["--commands", "1000000", "--repeat", "3"],
        "throttle": ["--scale", "1"],
        "emulator": ["--seconds", "2"],
        "export": ["--rows", "400000"],
    },
}
TIMEOUTS = {"smoke": 120.0, "default": 1800.0, "full": 7200.0}  # per benchmark, seconds


def command(step: str, scale: str, json_path: Path) -> list[str]:
    """The child command line of one benchmark."""
    options = SCALES[scale][step]
    if step == "cpu":
        return ["-m", "benchmarks.bench_cpu", *options, "--json", str(json_path)]
    if step == "memory":
        return ["-m", "benchmarks.bench_memory", *options, "--json", str(json_path)]
    if step == "planner":
        return [str(BENCH_DIR / "bench_planner.py"), *options, "--json", str(json_path)]
    if step == "throttle":
        return ["-m", "benchmarks.bench_throttle_peers", *options, "--json", str(json_path)]
    if step == "export":
        return ["-m", "benchmarks.bench_export", *options, "--json", str(json_path)]
    return [str(BENCH_DIR / "bench_emulator.py"), *options]


def run_step(step: str, scale: str, json_path: Path) -> dict[str, Any]:
    """Run one benchmark, echoing its output; what it printed is kept for the report."""
    argv = [sys.executable, *command(step, scale, json_path)]
    print(f"\n=== {step}: {' '.join(['python', *argv[1:]])}", flush=True)
    json_path.unlink(missing_ok=True)  # bench_throttle merges into an existing file
    began = time.perf_counter()
    # Its own session, so a run past its time limit is stopped with everything it started.
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(),
        cwd=child_cwd(),
        start_new_session=True,
    )
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        os.killpg(process.pid, signal.SIGKILL)

    timer = threading.Timer(TIMEOUTS[scale], stop)
    timer.start()
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        print("  " + line, end="", flush=True)
        lines.append(line)
    code = process.wait()
    timer.cancel()
    out = {
        "command": " ".join(["python", *argv[1:]]).replace(str(BENCH_DIR.parent) + "/", ""),
        "returncode": code,
        "seconds": round(time.perf_counter() - began, 1),
        "timed_out": timed_out.is_set(),
        "output_tail": "".join(lines[-15:]),
        "json": str(json_path),
        "scale": scale,
        "date": environment()["date"],
    }
    if step == "emulator":
        parsed = parse_emulator(lines)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(parsed, indent=2) + "\n")
    out["ok"] = code == 0 and not timed_out.is_set() and json_path.exists()
    return out


def parse_emulator(lines: Sequence[str]) -> dict[str, Any]:
    """bench_emulator only prints: its lines made into figures."""
    rows = []
    pattern = re.compile(r"^(asgi|loopback)\s+(.+?)\s+(\d+) req/s\s+(\d+) commands/s")
    seeding = None
    for line in lines:
        match = pattern.match(line.strip())
        if match:
            transport, kind, rate, commands = match.groups()
            rows.append(
                {
                    "transport": transport,
                    "request": kind,
                    "requests_per_s": int(rate),
                    "commands_per_s": int(commands),
                }
            )
        found = re.search(r"seeding ([\d,]+) leads took ([\d.]+) s", line)
        if found:
            seeding = {
                "leads": int(found.group(1).replace(",", "")),
                "seconds": float(found.group(2)),
            }
    return {"benchmark": "bench_emulator", "rows": rows, "seeding": seeding}


# --- the summary, the tables and RESULTS.md -----------------------------------------------


def _load(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def summarize(steps: dict[str, dict[str, Any]], scale: str) -> dict[str, Any]:
    """The figures the tables, the chart and the smoke test read, from each JSON."""
    suite: dict[str, Any] = {"scale": scale, "environment": environment(), "steps": steps}
    for step, info in steps.items():
        data = _load(info["json"]) if info.get("ok") else None
        if data is None:
            continue
        if step == "cpu":
            suite["cpu"] = {
                **data["summary"],
                "engine": data.get("engine"),
                "skipped": data.get("skipped", []),
            }
        elif step == "memory":
            keep = ("stream", "batch", "batch_traced", "plan", "cycle", "engine")
            suite["memory"] = {k: data[k] for k in keep if k in data}
        elif step == "planner":
            suite["planner"] = data
        elif step == "throttle":
            run = next(iter(data["runs"].values()))
            suite["throttle"] = [
                {
                    **{
                        k: r.get(k)
                        for k in (
                            "client",
                            "completed",
                            "wall_s",
                            "bound_s",
                            "bound_over_wall",
                            "http_requests",
                            "status_503",
                            "share_503",
                            "leads_stored",
                            "duplicate_adds",
                            "lost_adds",
                            "client_error",
                        )
                    },
                    "commands": run["commands"],
                    "scale": run["scale"],
                }
                for r in run["results"]
            ]
        elif step == "emulator":
            suite["emulator"] = data
        elif step == "export":
            suite["export"] = {"rows": data["rows"], "results": data["results"]}
    return suite


def section(suite: dict[str, Any], chart: str | None) -> str:
    """The generated part of RESULTS.md."""
    env = suite["environment"]
    steps = suite["steps"]
    took = sum(s["seconds"] for s in steps.values())
    cmd = (
        "python -m benchmarks"
        + {"default": "", "full": " --full", "smoke": " --smoke"}[suite["scale"]]
    )
    out = [
        BEGIN,
        "## The suite: `python -m benchmarks` (generated)",
        "",
        f"Generated by `{cmd}` on {env['date']} (Python {env['python']}, {env['platform']}, "
        f"{env['cpu_count']} CPUs, load {env['loadavg_at_start']}); the benchmarks took "
        f"{took:.0f} s. Everything between the suite markers is rewritten by each run; the "
        "JSON behind every table is in `results/suite/`.",
    ]
    if suite["scale"] == "smoke":
        out += ["", "**Smoke scale: these sizes check the harness; the figures mean nothing.**"]
    if chart:
        out += ["", f"![the suite's chart]({chart})"]
    titles = {
        "cpu": "Client CPU per 1,000 commands (bench_cpu.py)",
        "memory": "Memory, planning and cycles at scale (bench_memory.py)",
        "planner": "Planner (bench_planner.py)",
        "throttle": "Rate limit (bench_throttle.py, with b24pysdk added)",
        "emulator": "Emulator overhead (bench_emulator.py)",
        "export": "List export (bench_export.py)",
    }
    for name, step in steps.items():
        how = f"`{step.get('command', '?')}`, {step['seconds']:.0f} s"
        if step.get("carried"):
            how += f"; not re-run: from {step['date']} at {step['scale']} scale"
        out += ["", f"### {titles[name]}", "", how + ".", ""]
        if name not in suite:
            out.append(
                f"**Failed** (exit status {step.get('returncode')}"
                + (", timed out" if step.get("timed_out") else "")
                + "). The end of its output:\n\n```\n"
                + step.get("output_tail", "").strip()[-1500:]
                + "\n```"
            )
        elif name == "cpu":
            cpu = suite["cpu"]
            report = {"summary": cpu, "engine": cpu["engine"], "skipped": cpu["skipped"]}
            out.append(bench_cpu.markdown({**report, "repeat": _repeat(step)}))
        elif name == "memory":
            out.append(bench_memory.markdown(suite["memory"]))
        elif name == "planner":
            out.append(_planner_md(suite["planner"]))
        elif name == "throttle":
            out.append(_throttle_md(suite["throttle"]))
        elif name == "export":
            out.append(_export_md(suite["export"]))
        else:
            out.append(_emulator_md(suite["emulator"]))
    out.append(END)
    return "\n".join(out)


def _export_md(e: dict[str, Any]) -> str:
    def share(value: Any) -> str:
        return "within the burst" if value is None else f"{value:.1%}"

    rows = [
        [
            r["tool"],
            f"{r['rows']:,}" + ("" if r.get("ids_exact") else " (IDs not exact)"),
            f"{r['wall_s']:.2f}",
            str(r["http_requests"]),
            str(r["status_503"]),
            f"{r['bound_s']:.1f}",
            share(r.get("bound_over_wall")),
        ]
        for r in e["results"]
    ]
    head = ["tool", "rows", "wall s", "requests", "503", "bound s", "bound / wall"]
    return f"{e['rows']:,} leads exported by each tool.\n\n" + md_table(head, rows)


def _repeat(step: dict[str, Any]) -> str:
    options = SCALES[step["scale"]]["cpu"]
    return options[options.index("--repeat") + 1]


def _planner_md(p: dict[str, Any]) -> str:
    rows = []
    ind = p.get("independent_1234")
    if ind:
        rows.append(
            [
                "1,234 independent commands",
                f"{ind['requests_sent']} requests, {ind['rounds']} round(s)",
            ]
        )
    chain = next((v for k, v in p.items() if k.startswith("chain_")), None)
    if chain:
        rows.append(
            [
                f"3-level chains ({chain['commands']:,} commands)",
                f"{chain['requests_sent']} requests in {chain['rounds']} rounds, "
                f"{chain['ok']:,} ok",
            ]
        )
    t = p.get("throughput")
    if t:
        rows.append(
            [
                f"planner + encoder, {t['commands']:,} adds",
                f"{t['planned_encoded_per_s']:,} commands/s (naive chunking "
                f"{t['naive_chunking_per_s']:,}/s, ratio {t['ratio_to_naive']})",
            ]
        )
    return md_table(["figure", "value"], rows)


def _throttle_md(rows: list[dict[str, Any]]) -> str:
    first = rows[0]
    lines = [
        f"{first['commands']:,} `crm.lead.add` against the emulator's leaky bucket (burst 50, "
        f"drain {2 * first['scale']:g}/s; scale {first['scale']:g}).",
        "",
    ]
    table = []
    for r in rows:
        ratio = fmt(r["bound_over_wall"], "{:.1%}") if r["completed"] else "aborted"
        table.append(
            [
                THROTTLE_LABELS.get(r["client"], r["client"]),
                fmt(r["wall_s"], "{:.2f}"),
                fmt(r["bound_s"], "{:.2f}"),
                ratio,
                str(r["http_requests"]),
                f"{r['status_503']} ({r['share_503']:.1%})",
                f"{r['leads_stored']:,}",
                str(r["duplicate_adds"]),
                f"{r['lost_adds']:,}",
            ]
        )
    headers = [
        "client",
        "wall s",
        "bound s",
        "bound/wall",
        "requests",
        "503s",
        "stored",
        "duplicates",
        "lost",
    ]
    lines.append(md_table(headers, table))
    for r in rows:
        if r.get("client_error"):
            lines.append(f"\n- {r['client']}: raised `{r['client_error'][:150]}`")
    return "\n".join(lines)


def _emulator_md(e: dict[str, Any]) -> str:
    table = [
        [
            f"{r['request']} ({r['transport']})",
            f"{r['requests_per_s']:,}",
            f"{r['commands_per_s']:,}",
        ]
        for r in e.get("rows", [])
    ]
    text = md_table(["request", "req/s", "commands/s"], table)
    if e.get("seeding"):
        text += f"\n\nSeeding {e['seeding']['leads']:,} leads: {e['seeding']['seconds']} s."
    return text


def update_results(path: Path, text: str) -> None:
    """Put ``text`` between the markers of ``path``, keeping everything else."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if BEGIN in old and END in old:
        head, _, rest = old.partition(BEGIN)
        _, _, tail = rest.partition(END)
        new = head + text + tail
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=(__doc__ or "").split("\n\n")[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the real sizes (long)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help="default: benchmarks/")
    parser.add_argument("--only", default=",".join(STEPS), help=f"from {','.join(STEPS)}")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if any(s not in STEPS for s in args.only):
        parser.error(f"--only takes {STEPS}")
    args.scale = "full" if args.full else "smoke" if args.smoke else "default"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out.resolve()
    results = out / "results"
    summary_path = results / "suite.json"
    previous = _load(summary_path) or {}
    steps: dict[str, dict[str, Any]] = {}
    for step in STEPS:
        if step in args.only:
            steps[step] = run_step(step, args.scale, results / "suite" / f"bench_{step}.json")
        elif step in previous.get("steps", {}):
            # Not run this time: its last figures stay, marked as such.
            steps[step] = {**previous["steps"][step], "carried": True}
    suite = summarize(steps, args.scale)
    chart_path = results / "suite.png"
    drawn = render(suite, chart_path)
    if not drawn:
        print("matplotlib is not installed: no chart (pip install 'bitrix_batch[bench]')")
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(suite, indent=2, ensure_ascii=False) + "\n")
    text = section(suite, "results/suite.png" if drawn else None)
    update_results(out / "RESULTS.md", text)
    print()
    for name, s in steps.items():
        state = "ok" if s.get("ok") else ("TIMED OUT" if s.get("timed_out") else "FAILED")
        print(f"{name:9} {state:9} {s['seconds']:7.1f} s")
    print(f"total     {sum(s['seconds'] for s in steps.values()):17.1f} s")
    print(
        f"tables in {out / 'RESULTS.md'}, figures in {summary_path}"
        + (f", chart {chart_path}" if drawn else "")
    )
    return 0 if all(s.get("ok") for s in steps.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
