"""Shared plumbing of the benchmark suite: the emulator in its own process, worker processes,
``/proc`` memory figures, and tables.

Nothing here imports ``bitrix_batch``: the parent process of a benchmark only orchestrates,
and every figure is taken in a child process. The children find ``bitrix_batch`` through
``PYTHONPATH`` first, so ``PYTHONPATH=/tmp/before python -m benchmarks.bench_memory`` measures
the engine in ``/tmp/before`` (each worker reports the path it imported), while the parent may
well have imported the working tree's copy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"  # the only address any benchmark binds or connects to
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
#: A worker prints its figures as one JSON line behind this marker (other output is ignored).
RESULT_MARK = "@@bench-result "


# --- child processes -----------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment of a child: the caller's ``PYTHONPATH`` first, then this repository.

    The repository goes last so that an engine given on ``PYTHONPATH`` (the 'before' worktree)
    wins over the working tree, while ``benchmarks`` itself is still importable.
    """
    env = dict(os.environ)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO) not in parts:
        parts.append(str(REPO))
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def child_cwd() -> str:
    """The children's working directory.

    ``python -m`` puts the working directory first on ``sys.path``; the repository root would
    shadow a ``bitrix_batch`` given on ``PYTHONPATH``. The benchmarks folder holds no package
    of that name.
    """
    return str(BENCH_DIR)


def run_worker(module: str, payload: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``python -m module --worker JSON`` and return the JSON it printed.

    A worker that crashes, times out or prints no figures gives ``{"ok": False, "error": ...}``,
    so a failing client is reported, never dropped.
    """
    command = [sys.executable, "-m", module, "--worker", json.dumps(payload)]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(),
            cwd=child_cwd(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            return result
    tail = (done.stderr.strip() or done.stdout.strip())[-600:]
    return {"ok": False, "error": f"worker exited with {done.returncode}: {tail}"}


def emit(result: Mapping[str, Any]) -> None:
    """Print a worker's figures for :func:`run_worker`."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def engine_info() -> dict[str, Any]:
    """Which ``bitrix_batch`` a worker imported (call it from the worker)."""
    import bitrix_batch

    return {"path": str(Path(bitrix_batch.__file__).parent), "version": bitrix_batch.__version__}


# --- the emulator in its own process -------------------------------------------------------


class EmulatorProcess:
    """``python -m bitrix_batch.emulator`` on 127.0.0.1, limits off, answers at once.

    Its own process, so its CPU time and memory never mix with the client's, and each one is a
    fresh portal (empty, or seeded with ``seed_leads`` leads). `limits` replaces the default
    ``--no-rate-limit --no-operating-limit`` with other emulator options (a real bucket).
    """

    def __init__(
        self,
        seed_leads: int = 0,
        startup_timeout: float = 60.0,
        limits: Sequence[str] = ("--no-rate-limit", "--no-operating-limit"),
    ) -> None:
        self.seed_leads = seed_leads
        self.startup_timeout = startup_timeout
        self.limits = list(limits)
        self.webhook = ""
        self.base = ""
        self._process: subprocess.Popen[str] | None = None
        # The server's stderr, kept for an error message; closed in __exit__.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115

    def __enter__(self) -> EmulatorProcess:
        command = [
            sys.executable,
            "-m",
            "bitrix_batch.emulator",
            "--host",
            HOST,
            "--port",
            "0",
            *self.limits,
            "--time-scale",
            "0",
            "--seed-leads",
            str(self.seed_leads),
        ]
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=child_env(),
            cwd=child_cwd(),
        )
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = self._process.stdout
        assert stdout is not None

        def read() -> None:
            # A thread, because a text pipe's readline cannot be given a deadline.
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.webhook:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.__exit__(None, None, None)
                raise RuntimeError(f"the emulator did not start: {self.stderr_tail()}")
            if line.startswith("webhook:"):
                self.webhook = line.split()[-1]
        # The socket listens before the URL is printed: it is ready now.
        self.base = self.webhook.split("/rest/", 1)[0]
        return self

    def stats(self) -> dict[str, Any]:
        """The server's counters (``GET /_emulator/stats``)."""
        import httpx

        response = httpx.get(self.base + "/_emulator/stats", timeout=30)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-600:]

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # uvicorn's graceful stop
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stdout is not None:
            process.stdout.close()
        self._stderr.close()


# --- memory of the current process ---------------------------------------------------------


def proc_status() -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (the resident peak so far), in bytes.

    From ``/proc/self/status``; without ``/proc`` only the peak is known (getrusage).
    """
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    out[name] = int(value.split()[0]) * 1024
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["VmHWM"] = peak if sys.platform == "darwin" else peak * 1024
    return out


MB = 1024 * 1024


# --- reports -------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """Where and with what the figures were taken."""
    packages: dict[str, str | None] = {}
    for name in ("httpx", "anyio", "tenacity", "uvicorn", "fast-bitrix24", "b24pysdk"):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "packages": packages,
        "command": " ".join(["python", *sys.argv]),
        "pythonpath": os.environ.get("PYTHONPATH", ""),
    }


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned plain-text table (first column left, the others right)."""
    cells = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    lines = []
    for n, line in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (first column left-aligned, the others right-aligned)."""
    head = "| " + " | ".join(headers) + " |"
    rule = "|" + "|".join(["---", *["---:"] * (len(headers) - 1)]) + "|"
    body = ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def fmt(value: Any, spec: str = "{:.3f}", missing: str = "-") -> str:
    """``value`` formatted with ``spec``, or ``missing`` when it is None."""
    return missing if value is None else spec.format(value)


@contextlib.contextmanager
def watchdog(seconds: float, name: str) -> Iterator[None]:
    """End the whole process if a benchmark overruns ``seconds`` (a hung server, say)."""

    def expire() -> None:
        print(f"{name}: global timeout of {seconds:.0f} s reached, stopping", flush=True)
        os._exit(3)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
