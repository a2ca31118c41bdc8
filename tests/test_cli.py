"""The ``bitrix-batch`` command line, against the emulator served on 127.0.0.1.

Most tests call `main([...])` in-process; the progress bar is checked in a pseudo-terminal and
the journal's resume after a SIGKILL of a real ``bitrix-batch run`` process.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import os
import re
import select
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bitrix_batch import MethodHeld, MethodReleased, RequestAnswered, RequestSent, Status
from bitrix_batch._result import CommandResult
from bitrix_batch.cli import main
from bitrix_batch.cli._demo import Layout, bucket_bound
from bitrix_batch.cli._export import parse_filter
from bitrix_batch.cli._input import CsvMapping, CsvSource
from bitrix_batch.emulator import Emulator, EmulatorConfig, FaultConfig, MethodCost, serve_in_thread
from bitrix_batch.emulator.config import DEFAULT_COSTS
from bitrix_batch.journal import Journal
from bitrix_batch.progress import JobCounts, ProgressBar, describe_hold

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "bitrix_batch.cli"]

#: Pseudo-terminals and SIGKILL are POSIX things.
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX system")


@pytest.fixture
def served() -> Iterator[tuple[Emulator, str]]:
    emu = Emulator(EmulatorConfig(operating_limit=False))
    with serve_in_thread(emu) as base:
        yield emu, emu.webhook_url(base)
    emu.close()


@pytest.fixture(autouse=True)
def _no_webhook_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BITRIX_WEBHOOK", raising=False)


def write_jsonl(path: Path, items: list[Any]) -> Path:
    path.write_text(
        "".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items),
        encoding="utf-8",
    )
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def add(key: Any, title: str, entity: str = "lead") -> dict[str, Any]:
    return {"key": key, "method": f"crm.{entity}.add", "params": {"fields": {"TITLE": title}}}


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BITRIX_WEBHOOK"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- run ---------------------------------------------------------------------------------------


def test_run_jsonl_with_references(
    served: tuple[Emulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """$result references in the file work as on the server; outcomes go to the results file."""
    emu, url = served
    job = write_jsonl(
        tmp_path / "job.jsonl",
        [
            add("co", "Acme", "company"),
            {
                "key": "ct",
                "method": "crm.contact.add",
                "params": {"fields": {"NAME": "Ann", "COMPANY_ID": "$result[co]"}},
            },
            {"key": "get", "method": "crm.contact.get", "params": {"id": "$result[ct]"}},
            "",
            {"method": "user.current"},  # no key: its line number, 5
        ],
    )
    out = tmp_path / "results.jsonl"
    assert main(["run", str(job), "--webhook", url, "--out", str(out)]) == 0
    results = {r["key"]: r for r in read_jsonl(out)}
    assert set(results) == {"co", "ct", "get", 5}
    assert {r["status"] for r in results.values()} == {"ok"}
    assert results["get"]["result"]["COMPANY_ID"] == str(results["co"]["result"])
    assert results["ct"]["method"] == "crm.contact.add"
    err = capsys.readouterr().err
    assert "bitrix-batch: 4 commands in" in err
    assert "4 ok, 0 failed, 0 skipped, 0 unknown" in err
    assert emu.count("contact") == 1


def test_run_writes_results_to_stdout_without_out(
    served: tuple[Emulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = served
    job = write_jsonl(tmp_path / "job.jsonl", [add("a", "x")])
    assert main(["run", str(job), "--webhook", url]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["status"] == "ok"


def test_run_csv_with_a_column_mapping(served: tuple[Emulator, str], tmp_path: Path) -> None:
    """--map picks and renames columns, --set adds fields, --key-column names the keys."""
    emu, url = served
    job = tmp_path / "leads.csv"
    job.write_text(
        "Ext ID;Title;First name;Phone;Unused\n"
        "A1;Shop one;Ann;+100;x\n"
        "A2;Shop two;;+200;y\n",
        encoding="utf-8",
    )
    out = tmp_path / "results.jsonl"
    argv = ["run", str(job), "--webhook", url, "--out", str(out), "--delimiter", ";"]
    argv += ["--method", "crm.lead.add", "--key-column", "Ext ID", "--set", "SOURCE_ID=WEB"]
    argv += ["--map", "Title=TITLE", "--map", "First name=NAME", "--map", "Phone=PHONE"]
    assert main(argv) == 0
    results = {r["key"]: r for r in read_jsonl(out)}
    assert set(results) == {"A1", "A2"}
    rows = {r["TITLE"]: r for r in emu.records("lead")}
    assert set(rows) == {"Shop one", "Shop two"}
    assert rows["Shop one"]["NAME"] == "Ann"
    assert rows["Shop two"]["NAME"] is None  # an empty cell sends nothing
    assert rows["Shop one"]["SOURCE_ID"] == "WEB"
    assert "+100" in str(rows["Shop one"]["PHONE"])  # one WORK entry of the multi-field
    assert emu.count("lead", {"NAME": "x"}) == 0


def test_run_csv_without_a_mapping_uses_headers_and_line_numbers(
    served: tuple[Emulator, str], tmp_path: Path
) -> None:
    emu, url = served
    job = tmp_path / "leads.csv"
    job.write_text('TITLE,NAME\nfirst,Ann\n\n"sec\nond",Bob\n', encoding="utf-8")
    out = tmp_path / "results.jsonl"
    argv = ["run", str(job), "--webhook", url, "--out", str(out), "--method", "crm.lead.add"]
    assert main(argv) == 0
    # The key is the line a row ends on: 2, and 5 for the row with a quoted line break.
    assert sorted(r["key"] for r in read_jsonl(out)) == [2, 5]
    assert sorted(r["TITLE"] for r in emu.records("lead")) == ["first", "sec\nond"]


def test_csv_header_problems_are_bad_input(
    served: tuple[Emulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu, url = served
    job = tmp_path / "leads.csv"
    job.write_text("TITLE,NAME\nx,y,z\n", encoding="utf-8")
    argv = ["run", str(job), "--webhook", url, "--method", "crm.lead.add"]
    assert main([*argv, "--map", "Company=TITLE"]) == 2
    assert f"{job}:1: no column 'Company' (the header has: TITLE, NAME)" in capsys.readouterr().err
    assert main(argv) == 2
    assert f"{job}:2: 3 fields, the header has 2" in capsys.readouterr().err.splitlines()
    assert emu.stats.requests == 0


def test_exit_1_when_commands_fail_or_are_skipped(
    served: tuple[Emulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = served
    job = write_jsonl(
        tmp_path / "job.jsonl",
        [
            add("ok", "fine"),
            {"key": "missing", "method": "crm.lead.get", "params": {"id": 999999}},
            {"key": "dep", "method": "crm.lead.update", "params": {
                "id": "$result[missing][ID]", "fields": {"TITLE": "never"}}},
            {"key": "bad", "method": "not a method"},
            {"key": "shape", "params": {}},
        ],
    )
    out = tmp_path / "results.jsonl"
    assert main(["run", str(job), "--webhook", url, "--out", str(out)]) == 1
    results = {r["key"]: r for r in read_jsonl(out)}
    assert results["ok"]["status"] == "ok"
    assert results["missing"]["status"] == "failed"
    assert results["missing"]["error"] == ""  # as the portal says it: an empty code
    assert results["missing"]["description"] == "Not found"
    assert results["dep"]["status"] == "skipped"
    assert results["dep"]["reason"] == "DEPENDENCY_FAILED"
    assert results["bad"]["reason"] == "INVALID_COMMAND"
    assert "is not a REST method name" in results["bad"]["detail"]
    assert results["shape"]["reason"] == "INVALID_COMMAND"
    assert "1 ok, 1 failed, 3 skipped, 0 unknown" in capsys.readouterr().err


def test_a_malformed_line_stops_the_reading_what_came_before_runs(
    served: tuple[Emulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu, url = served
    job = write_jsonl(
        tmp_path / "job.jsonl",
        [add(1, "one"), add(2, "two"), add(3, "three"), "{not json", add(5, "five")],
    )
    out = tmp_path / "results.jsonl"
    assert main(["run", str(job), "--webhook", url, "--out", str(out)]) == 2
    try:
        json.loads("{not json")
    except json.JSONDecodeError as exc:
        expected = f"{job}:4: not JSON: {exc.msg} (column {exc.colno})"
    assert expected in capsys.readouterr().err.splitlines()
    results = read_jsonl(out)
    assert [(r["key"], r["status"]) for r in results] == [(1, "ok"), (2, "ok"), (3, "ok")]
    assert emu.count("lead") == 3


def test_a_line_that_is_not_an_object_or_has_a_bad_key(
    served: tuple[Emulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = served
    job = write_jsonl(tmp_path / "job.jsonl", [add("a", "x"), "[1, 2]"])
    assert main(["run", str(job), "--webhook", url, "--out", str(tmp_path / "o")]) == 2
    assert f"{job}:2: not a JSON object;" in capsys.readouterr().err
    job = write_jsonl(tmp_path / "job2.jsonl", [{"key": 1.5, "method": "user.current"}])
    assert main(["run", str(job), "--webhook", url, "--out", str(tmp_path / "o")]) == 2
    assert f"{job}:1: the key must be a string or an integer, not 1.5" in capsys.readouterr().err


def test_unknown_outcomes_exit_3_and_win_over_failures(
    served: tuple[Emulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first request runs and its connection drops: its writes are unknown, not re-sent."""
    emu, url = served
    emu.faults.script("drop_after_run", "ok")
    lines: list[Any] = [add(i, f"lead {i}") for i in range(50)]
    lines.append({"key": "missing", "method": "crm.lead.get", "params": {"id": 999999}})
    job = write_jsonl(tmp_path / "job.jsonl", lines)
    out = tmp_path / "results.jsonl"
    argv = ["run", str(job), "--webhook", url, "--out", str(out), "--max-concurrency", "1"]
    assert main(argv) == 3
    statuses = {r["key"]: r["status"] for r in read_jsonl(out)}
    assert statuses.pop("missing") == "failed"
    assert set(statuses.values()) == {"unknown"}
    assert emu.count("lead") == 50  # they did run, once
    assert emu.stats.duplicate_adds("lead") == {}
    assert "50 outcomes are unknown" in capsys.readouterr().err


def test_the_webhook_is_never_printed(
    served: tuple[Emulator, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu, url = served
    secret = "s3cretCode7731"
    base = url.split("/rest/")[0]
    emu.add_webhook(secret)
    monkeypatch.setenv("BITRIX_WEBHOOK", f"{base}/rest/1/{secret}/")
    emu.faults.script("drop_after_run")
    job = write_jsonl(
        tmp_path / "job.jsonl",
        [
            add("a", f"mentions {secret}"),  # in the data too: masked in the results
            {"key": "missing", "method": "crm.lead.get", "params": {"id": 999999}},
            add("b", "later", "company"),
        ],
    )
    out = tmp_path / "results.jsonl"
    argv = ["run", str(job), "--out", str(out), "--log-level", "debug", "--max-concurrency", "1"]
    assert main(argv) == 3
    # A refused webhook: the job cannot run (4), and its code is not shown either.
    wrong = "wr0ngCode5512"
    assert main(["run", str(job), "--webhook", f"{base}/rest/1/{wrong}/"]) == 4
    # argparse echoes unknown options and their values: masked too.
    assert main(["run", str(job), "--webhok", f"{base}/rest/1/{secret}/"]) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err + out.read_text()
    assert "DEBUG bitrix_batch: sending batch" in captured.err
    assert "the job stopped" in captured.err
    assert secret not in text
    assert wrong not in text


def test_an_unreachable_portal_is_exit_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    job = write_jsonl(tmp_path / "job.jsonl", [add(i, "x") for i in range(3)])
    url = f"http://127.0.0.1:{port}/rest/1/c0de/"
    out = tmp_path / "results.jsonl"
    assert main(["run", str(job), "--webhook", url, "--attempts", "1", "--out", str(out)]) == 4
    assert "bitrix-batch: the portal cannot be reached: " in capsys.readouterr().err
    assert {r["reason"] for r in read_jsonl(out)} == {"REQUEST_FAILED"}


def test_a_journal_with_records_is_refused_without_resume(
    served: tuple[Emulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu, url = served
    job = write_jsonl(tmp_path / "job.jsonl", [add(i, f"j{i}") for i in range(3)])
    journal, out = tmp_path / "j.db", tmp_path / "results.jsonl"
    argv = ["run", str(job), "--webhook", url, "--journal", str(journal), "--out", str(out)]
    assert main(argv) == 0
    sent = emu.stats.requests
    assert main(argv) == 2
    assert (
        f"{journal}: the journal holds 3 commands of an earlier run; pass --resume to continue"
        " that job, or use a new journal file"
    ) in capsys.readouterr().err.splitlines()
    assert main([*argv, "--resume"]) == 0
    assert emu.stats.requests == sent  # all done before: nothing sent again
    assert [r["status"] for r in read_jsonl(out)] == ["ok"] * 3  # from the journal
    assert emu.count("lead") == 3
    assert main(["run", str(job), "--webhook", url, "--resume"]) == 2
    assert "--resume and --resend-unknown need --journal FILE" in capsys.readouterr().err


def test_usage_errors_are_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([]) == 2
    assert main(["run"]) == 2
    assert "the following arguments are required: JOB" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "none.jsonl"), "--webhook", "http://x/rest/1/c/"]) == 2
    assert f"{tmp_path / 'none.jsonl'}: cannot be read: No such file" in capsys.readouterr().err
    assert main(["run", "job.jsonl"]) == 2
    assert "no webhook: pass --webhook URL or set BITRIX_WEBHOOK" in capsys.readouterr().err
    assert main(["run", "job.jsonl", "--webhook", "ftp://x"]) == 2
    assert main(["--version"]) == 0
    assert main(["run", "--help"]) == 0
    assert "exit codes:" in capsys.readouterr().out


# --- export ------------------------------------------------------------------------------------


def test_export_to_jsonl_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emu = Emulator(EmulatorConfig(operating_limit=False, seed_leads=130))
    with serve_in_thread(emu) as base:
        url = emu.webhook_url(base)
        out = tmp_path / "leads.jsonl"
        argv = ["export", "crm.lead.list", "--webhook", url, "--select", "ID,TITLE"]
        assert main([*argv, "--out", str(out)]) == 0
        rows = read_jsonl(out)
        assert sorted(int(r["ID"]) for r in rows) == list(range(1, 131))
        assert set(rows[0]) == {"ID", "TITLE"}
        csv_out = tmp_path / "leads.csv"
        assert main([*argv, "--filter", ">ID=100", "--out", str(csv_out)]) == 0
        with csv_out.open(newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
        assert table[0] == ["ID", "TITLE"]
        assert sorted(int(r[0]) for r in table[1:]) == list(range(101, 131))
        # No row: the header is still there.
        empty = tmp_path / "none.csv"
        assert main([*argv, "--filter", ">ID=1000", "--out", str(empty)]) == 0
        assert empty.read_text().splitlines() == ["ID,TITLE"]
        # Bad input is refused before anything is sent.
        assert main([*argv, "--filter", "{oops"]) == 2
        assert "bitrix-batch: --filter: not JSON" in capsys.readouterr().err
    emu.close()


def test_filter_options() -> None:
    assert parse_filter([">=DATE_CREATE=2024-01-01", "STATUS_ID=NEW", "STATUS_ID=JUNK"]) == {
        ">=DATE_CREATE": "2024-01-01",
        "STATUS_ID": ["NEW", "JUNK"],
    }
    assert parse_filter(['{">OPPORTUNITY": 1000}', "%TITLE=a=b"]) == {
        ">OPPORTUNITY": 1000,
        "%TITLE": "a=b",
    }


# --- emulator and demo -------------------------------------------------------------------------


def test_the_emulator_refuses_a_public_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulator", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "not a loopback address" in capsys.readouterr().err
    assert main(["emulator", "--help"]) == 0
    out = capsys.readouterr().out
    assert "bitrix-batch emulator" in out
    assert "--allow-remote" in out
    assert "--seed-leads" in out  # the emulator's own options


def test_the_emulator_serves_on_loopback(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "emulator", "--port", "0", "--seed-leads", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        webhook = proc.stdout.readline().decode()
        assert first.startswith("Bitrix24 emulator on http://127.0.0.1:")
        url = webhook.split("webhook: ", 1)[1].strip()
        out = tmp_path / "leads.jsonl"
        assert main(["export", "crm.lead.list", "--webhook", url, "--out", str(out)]) == 0
        assert len(read_jsonl(out)) == 3
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_demo_with_a_few_records(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--records", "90", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "import: 90 records in" in out
    assert "9 companies; 40 contacts" in out
    assert "export: 90 rows read back with list_all" in out
    assert "verified: every record exactly once" in out


def test_demo_layout_and_bound() -> None:
    layout = Layout.of(3000)
    assert (layout.companies, layout.contacts, layout.deals) == (300, 1350, 1350)
    keys = [key for key, _ in layout.commands()]
    assert len(keys) == len(set(keys)) == 3000
    assert bucket_bound(64, 2.0, 50) == 7.0
    assert bucket_bound(10, 2.0, 50) == 0.0


# --- the progress bar --------------------------------------------------------------------------


def test_progress_bar_counts_and_holds() -> None:
    screen = io.StringIO()
    with ProgressBar(3, file=screen, mininterval=0.01) as bar:
        bar.on_event(RequestSent("batch", 3, 1))
        bar.on_event(RequestAnswered("batch", 503, 0.1, "QUERY_LIMIT_EXCEEDED"))
        held = MethodHeld("crm.lead.add", time.time() + 60, "near the operating-time limit")
        bar.on_event(held)
        assert bar.counts.holds == {"crm.lead.add": held}
        bar.on_event(MethodReleased("crm.lead.add"))
        assert bar.counts.holds == {}
        bar.update(1, 3)
        for status in (Status.OK, Status.FAILED, Status.UNKNOWN):
            bar.add(CommandResult("k", "crm.lead.add", status))
    text = screen.getvalue()
    assert "3/3" in text
    assert "failed 1, skipped 0, unknown 1 | 1 requests, 503: 1, 429: 0" in text
    assert describe_hold(held) in text
    assert re.fullmatch(
        r"crm\.lead\.add held until \d\d:\d\d:\d\d \(near the operating-time limit\)",
        describe_hold(held),
    )
    counts = JobCounts()
    counts.add(CommandResult("k", "m", Status.SKIPPED))
    assert counts.summary().startswith("0 ok, 0 failed, 1 skipped, 0 unknown; 0 requests")


def _run_on_a_pty(argv: list[str], timeout: float = 60.0) -> tuple[int, str, str]:
    """Run `argv` with its stderr on a pseudo-terminal (120 columns); (rc, stderr, stdout)."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    with open(os.devnull, "rb") as stdin:
        proc = subprocess.Popen(
            argv, stdin=stdin, stdout=subprocess.PIPE, stderr=slave, env=child_env()
        )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not data:
                    break
                screen += data
            elif proc.poll() is not None:
                break
        else:
            pytest.fail(f"{argv} did not finish in {timeout} s")
        assert proc.stdout is not None
        stdout = proc.stdout.read().decode()
        rc = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        os.close(master)
    return rc, screen.decode("utf-8", "replace"), stdout


@posix_only
def test_the_progress_bar_on_a_terminal_shows_counts_and_holds(tmp_path: Path) -> None:
    """On a terminal the bar is on by default; the operating-time limit holds a method.

    Each contact add is modelled to cost 10 s of server time, in a 3-second window: after
    the first request (100 adds, 1,000 s) the method is over the client's 420 s threshold, so
    it is held until the window frees up; the 50 adds that refer to the first one wait.
    """
    costs = {**DEFAULT_COSTS, "crm.contact.add": MethodCost(10.0)}
    emu = Emulator(
        EmulatorConfig(
            rate_limit=False,
            operating_limit_seconds=1e6,  # never refuses: the client holds on its own
            operating_window_seconds=3,
            operating_bucket_seconds=1,
            costs=costs,
            request_time_limit=None,  # exaggerated costs: the holds, not the 60 s cap
        )
    )
    lines: list[Any] = [
        {"key": f"c{i}", "method": "crm.contact.add", "params": {"fields": {"NAME": f"n{i}"}}}
        for i in range(100)
    ]
    lines += [
        {"key": f"d{i}", "method": "crm.contact.add",
         "params": {"fields": {"NAME": f"m{i}", "COMPANY_ID": "$result[c0]"}}}
        for i in range(50)
    ]
    job = write_jsonl(tmp_path / "job.jsonl", lines)
    out = tmp_path / "results.jsonl"
    with serve_in_thread(emu) as base:
        argv = [*CLI, "run", str(job), "--webhook", emu.webhook_url(base), "--out", str(out)]
        rc, screen, stdout = _run_on_a_pty(argv)
    emu.close()
    assert rc == 0, screen
    assert stdout == ""
    assert "150/150" in screen
    assert "failed 0, skipped 0, unknown 0 | 3 requests, 503: 0, 429: 0" in screen
    assert re.search(
        r"crm\.contact\.add held until \d\d:\d\d:\d\d \(near the operating-time limit\)", screen
    ), screen
    assert "bitrix-batch: 150 commands in" in screen
    assert "emulatorwebhookcode" not in screen
    assert [r["status"] for r in read_jsonl(out)] == ["ok"] * 150


@posix_only
def test_demo_on_a_terminal_draws_its_bars() -> None:
    rc, screen, stdout = _run_on_a_pty([*CLI, "demo", "--records", "200"])
    assert rc == 0, screen + stdout
    assert "import: 100%" in screen
    assert "200/200" in screen
    assert "export: 100%" in screen
    assert "verified:" in stdout


# --- broken streams, bad options, odd input (review 2) ----------------------------------------


class Breaks(io.StringIO):
    """A text stream whose writes and flushes fail (a closed pipe) after `after` writes."""

    def __init__(self, after: int = 0, *, tty: bool = False) -> None:
        super().__init__()
        self.after, self.tty = after, tty
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        if self.writes > self.after:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(s)

    def flush(self) -> None:
        if self.writes > self.after:
            raise BrokenPipeError(32, "Broken pipe")

    def isatty(self) -> bool:
        return self.tty


def _bar_threads() -> set[threading.Thread]:
    return {
        t for t in threading.enumerate() if t.name in ("bitrix_batch-progress", "tqdm_monitor")
    }


def test_a_bar_whose_stream_breaks_still_closes() -> None:
    """The refresher meets the broken stream: the bar stops drawing, close() returns, and tqdm's
    lock is free for the next bar (it used to be kept by the dead thread: a hang)."""
    before = _bar_threads()
    bar = ProgressBar(100, file=Breaks(3), mininterval=0.01)
    for i in range(40):
        bar.update(i + 1)
        time.sleep(0.005)
    closer = threading.Thread(target=bar.close, daemon=True)
    closer.start()
    closer.join(5)
    assert not closer.is_alive(), "close() hangs"
    assert bar.broken
    bar.write("a log line")  # dropped, not raised
    assert _bar_threads() == before  # no refresher left, no tqdm_monitor started
    screen = io.StringIO()
    with ProgressBar(3, file=screen, mininterval=0.01) as other:  # tqdm's lock is free
        other.update(3)
    assert "3/3" in screen.getvalue()
    # Unwritable from the start (2>/dev/full): made, fed and closed without an error.
    with ProgressBar(3, file=Breaks(0), mininterval=0.01) as dead:
        dead.update(1)
        dead.on_event(MethodHeld("crm.lead.add", time.time() + 5, "near the limit"))
        dead.write("x")
    assert dead.broken


def test_a_dropped_bar_stops_its_thread() -> None:
    bar = ProgressBar(10, file=io.StringIO(), mininterval=0.01)
    thread = bar._refresher
    assert thread is not None
    assert thread.daemon
    del bar
    gc.collect()
    thread.join(2)
    assert not thread.is_alive()


@pytest.mark.parametrize("after", [0, 3])
def test_a_broken_stderr_changes_nothing_in_the_job(
    served: tuple[Emulator, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    after: int,
) -> None:
    """stderr unwritable from the start (--progress 2>/dev/full) or from the 4th write on (a
    terminal closed mid-job): every outcome is written, the exit code is the job's."""
    emu, url = served
    job = write_jsonl(tmp_path / "job.jsonl", [add(i, f"e{i}") for i in range(120)])
    out = tmp_path / "results.jsonl"
    monkeypatch.setattr(sys, "stderr", Breaks(after, tty=True))
    argv = ["run", str(job), "--webhook", url, "--out", str(out), "--log-level", "debug"]
    assert main([*argv, "--progress"]) == 0
    assert [r["status"] for r in read_jsonl(out)] == ["ok"] * 120
    assert main([*argv, "--journal", str(tmp_path / "j.db")]) == 0  # bar on: stderr "is a tty"
    monkeypatch.setattr(sys, "stderr", None)  # started with 2>&-
    assert main([*argv, "--progress"]) == 0
    assert main(["run", str(tmp_path / "none.jsonl"), "--webhook", url]) == 2
    assert emu.count("lead") == 360


@posix_only
def test_stderr_closed_by_its_reader(served: tuple[Emulator, str], tmp_path: Path) -> None:
    """A real process whose stderr pipe is closed mid-job (2> >(head -c 300)): exit 0."""
    _, url = served
    job = write_jsonl(tmp_path / "job.jsonl", [add(i, f"p{i}") for i in range(300)])
    out = tmp_path / "results.jsonl"
    argv = [*CLI, "run", str(job), "--webhook", url, "--out", str(out), "--progress"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, env=child_env())
    assert proc.stderr is not None
    proc.stderr.read(100)
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0
    assert len(read_jsonl(out)) == 300


def test_export_csv_header_is_the_select(
    served: tuple[Emulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first row has no PHONE (the server leaves an empty multi-field out): still a column."""
    _, url = served
    job = tmp_path / "leads.csv"
    job.write_text("TITLE,PHONE\nno phone,\nwith phone,+100\n", encoding="utf-8")
    assert main(["run", str(job), "--webhook", url, "--method", "crm.lead.add", "--out", "-"]) == 0
    capsys.readouterr()
    out = tmp_path / "leads-out.csv"
    argv = ["export", "crm.lead.list", "--webhook", url, "--out", str(out)]
    assert main([*argv, "--select", "ID,TITLE,PHONE"]) == 0
    with out.open(newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == ["ID", "TITLE", "PHONE"]
    assert table[1][1:] == ["no phone", ""]
    assert "+100" in table[2][2]
    assert "left out" not in capsys.readouterr().err
    assert main([*argv, "--select", "title,PHONE"]) == 0  # the ID the cursor adds is kept
    with out.open(newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["TITLE", "PHONE", "ID"]
    # A wildcard: the first row's fields; PHONE is left out, said, and the export exits 1.
    assert main([*argv, "--select", "*,PHONE"]) == 1
    err = capsys.readouterr().err
    assert "left out: PHONE" in err
    with out.open(newline="", encoding="utf-8") as f:
        assert "PHONE" not in next(csv.reader(f))


def test_a_csv_line_not_in_the_encoding(
    served: tuple[Emulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bad byte is past the decoder's first 8 KiB: the rows before it run, its line is
    named."""
    emu, url = served
    job = tmp_path / "leads.csv"
    rows = b"".join(b"good %03d %s,n\n" % (i, b"x" * 90) for i in range(2, 120))
    job.write_bytes(b"TITLE,NAME\n" + rows + b"bad\xff,x\nafter,y\n")
    argv = ["run", str(job), "--webhook", url, "--method", "crm.lead.add", "--out", "-"]
    assert main(argv) == 2
    assert f"{job}:120: not UTF-8 (column 4)" in capsys.readouterr().err.splitlines()
    assert emu.count("lead") == 118
    assert main([*argv, "--encoding", "ascii"]) == 2
    assert f"{job}:120: not ascii (column 4)" in capsys.readouterr().err.splitlines()


def test_a_large_csv_cell_with_progress(
    served: tuple[Emulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu, url = served
    job = tmp_path / "big.csv"
    job.write_text("TITLE,COMMENTS\nsmall,x\nbig," + "y" * 200_000 + "\n", encoding="utf-8")
    argv = ["run", str(job), "--webhook", url, "--method", "crm.lead.add", "--progress"]
    assert main([*argv, "--out", str(tmp_path / "r.jsonl")]) == 0
    assert "2/2" in capsys.readouterr().err
    assert emu.count("lead") == 2
    # A file csv cannot read to the end: no total for the bar, the reading says why.
    source = CsvSource(str(job), CsvMapping("crm.lead.add"))
    limit = csv.field_size_limit(1000)
    try:
        assert source.count() is None
    finally:
        csv.field_size_limit(limit)
        source.close()


def test_a_broken_stdout_stops_the_job(
    served: tuple[Emulator, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """run | head -1: one line on stderr, no traceback; requests were sent, so 3."""
    emu, url = served
    job = write_jsonl(tmp_path / "job.jsonl", [add(i, f"s{i}") for i in range(300)])
    monkeypatch.setattr(sys, "stdout", Breaks(1))
    assert main(["run", str(job), "--webhook", url, "--max-concurrency", "2"]) == 3
    err = capsys.readouterr().err
    assert "bitrix-batch: stdout was closed by its reader (broken pipe): the job stopped" in err
    assert emu.count("lead") < 300  # stopped
    # Only the last flush fails: the job was done, its exit code is its own.
    monkeypatch.setattr(sys, "stdout", io.StringIO())

    class FlushFails(io.StringIO):
        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", FlushFails())
    small = write_jsonl(tmp_path / "small.jsonl", [add("a", "x")])
    assert main(["run", str(small), "--webhook", url]) == 0
    assert "the last outcomes may not have been written" in capsys.readouterr().err
    # export | head -1: the export stops, exit 1.
    monkeypatch.setattr(sys, "stdout", Breaks(1))
    assert main(["export", "crm.lead.list", "--webhook", url, "--select", "ID"]) == 1
    assert "the export stopped there" in capsys.readouterr().err


@posix_only
def test_run_piped_into_head(served: tuple[Emulator, str], tmp_path: Path) -> None:
    """A real pipe closed by its reader: no traceback, and not Python's exit 120 either."""
    _, url = served
    job = write_jsonl(tmp_path / "job.jsonl", [add(i, f"h{i}") for i in range(400)])
    proc = subprocess.Popen(
        [*CLI, "run", str(job), "--webhook", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert json.loads(proc.stdout.readline())["status"] == "ok"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 3, err
    assert "Traceback" not in err
    assert "broken pipe" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--delimiter", ";;"], "--delimiter ';;': must be one character"),
        (["--encoding", "nosuch"], "--encoding 'nosuch': not an encoding Python knows"),
        (["--encoding", "base64"], "--encoding 'base64': not a text encoding"),
        (["--webhook", "http://127.0.0.1:99999/rest/1/c0de/"], "the webhook: Port out of range"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    job = tmp_path / "leads.csv"
    job.write_text("TITLE\nx\n", encoding="utf-8")
    argv = ["run", str(job), "--method", "crm.lead.add", "--webhook", "http://127.0.0.1:1/rest/1/c/"]
    assert main([*argv, *extra]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert message in line


def test_export_params_filter_that_is_not_an_object(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["export", "crm.lead.list", "--webhook", "http://127.0.0.1:1/rest/1/c/"]
    assert main([*argv, "--params", '{"filter": [1]}', "--filter", "TITLE=x"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert '--params: its "filter" must be a JSON object' in line


def test_a_tab_delimiter_and_a_bom(served: tuple[Emulator, str], tmp_path: Path) -> None:
    emu, url = served
    job = tmp_path / "leads.csv"
    job.write_bytes(b"\xef\xbb\xbfTITLE\tNAME\nTabbed\tAnn\n")
    argv = ["run", str(job), "--webhook", url, "--method", "crm.lead.add", "--out", "-"]
    assert main([*argv, "--delimiter", "\\t"]) == 0
    assert emu.records("lead")[0]["NAME"] == "Ann"
    jsonl = tmp_path / "job.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + json.dumps(add("bom", "with a BOM")).encode() + b"\n")
    out = tmp_path / "results.jsonl"
    assert main(["run", str(jsonl), "--webhook", url, "--out", str(out)]) == 0
    assert [(r["key"], r["status"]) for r in read_jsonl(out)] == [("bom", "ok")]


def test_no_abbreviated_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulator", "--host", "0.0.0.0", "--port", "0", "--allow"]) == 2
    assert "unrecognized arguments: --allow" in capsys.readouterr().err
    assert main(["run", "job.jsonl", "--webh", "http://127.0.0.1:1/rest/1/c/"]) == 2
    assert "unrecognized arguments: --webh" in capsys.readouterr().err


def test_skipped_keys_have_their_method_and_line(
    served: tuple[Emulator, str], tmp_path: Path
) -> None:
    _, url = served
    job = write_jsonl(
        tmp_path / "job.jsonl",
        [
            {"key": "a", "method": "user.current"},
            {"key": "a", "method": "crm.lead.list"},
            {"key": "", "method": "crm.lead.fields"},
            {"key": "b", "method": "not a method"},
        ],
    )
    out = tmp_path / "results.jsonl"
    assert main(["run", str(job), "--webhook", url, "--out", str(out)]) == 1
    skipped = {(r["method"], r.get("line")) for r in read_jsonl(out) if r["status"] == "skipped"}
    assert skipped == {("crm.lead.list", 2), ("crm.lead.fields", 3), ("not a method", 4)}
    table = tmp_path / "leads.csv"
    table.write_text("ext,TITLE\n,no key\nx1,one\nx1,again\n", encoding="utf-8")
    argv = ["run", str(table), "--webhook", url, "--method", "crm.lead.add", "--key-column", "ext"]
    assert main([*argv, "--out", str(out)]) == 1
    rows = {(r["key"], r["method"], r.get("line")) for r in read_jsonl(out) if "reason" in r}
    assert rows == {("", "crm.lead.add", 2), ("x1", "crm.lead.add", 4)}


# --- resuming after a crash --------------------------------------------------------------------


def _journal_counts(path: Path) -> dict[str, int]:
    """The journal's states, read while its writer runs (nothing if it is not there yet)."""
    if not path.exists():
        return {}
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        ) as db:
            return dict(db.execute("SELECT state, COUNT(*) FROM commands GROUP BY state"))
    except sqlite3.Error:
        return {}


@posix_only
def test_resume_after_sigkill_duplicates_nothing(tmp_path: Path) -> None:
    """SIGKILL a run mid-job; --resume sends the rest and reports the in-flight writes unknown.

    Every request is slowed down by the emulator (after it ran), so that some are in flight
    when the process is killed: those already ran on the server, and the journal says they
    were sent but not how they ended.
    """
    n = 3000
    emu = Emulator(
        EmulatorConfig(
            rate_limit=False,
            operating_limit=False,
            faults=FaultConfig(slow=1.0, slow_seconds=0.3),
        )
    )
    job = write_jsonl(tmp_path / "job.jsonl", [add(f"L{i}", f"kill test {i}") for i in range(n)])
    journal = tmp_path / "job.journal"
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    with serve_in_thread(emu) as base:
        url = emu.webhook_url(base)
        argv = [*CLI, "run", str(job), "--webhook", url, "--journal", str(journal)]
        argv += ["--rate-limit", "off", "--no-progress"]
        with (tmp_path / "first.err").open("wb") as err:
            proc = subprocess.Popen(
                [*argv, "--out", str(first), "--max-concurrency", "4"],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=child_env(),
            )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, "the first run ended before it could be killed"
                assert time.monotonic() < deadline, "no outcome recorded in 30 s"
                counts = _journal_counts(journal)
                if counts.get("ok") and counts.get("sending"):
                    break
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with Journal(journal) as j:
            in_flight = {e.key for e in j.entries("sending")}
            done = {e.key for e in j.entries("ok")}
        assert in_flight
        assert len(done) < n - len(in_flight)  # killed mid-run: some never sent
        emu.faults.config.slow = 0.0  # no need to wait in the second run
        ran = emu.count("lead")
        result = subprocess.run(
            [*argv, "--resume", "--out", str(second)],
            capture_output=True,
            timeout=60,
            env=child_env(),
        )
    assert result.returncode == 3, result.stderr.decode()
    assert b"resuming the job" in result.stderr
    outcomes = read_jsonl(second)
    assert len(outcomes) == n
    unknown = {r["key"] for r in outcomes if r["status"] == "unknown"}
    assert unknown == in_flight
    assert all(r["status"] == "ok" for r in outcomes if r["key"] not in in_flight)
    assert emu.stats.duplicate_adds("lead") == {}
    assert emu.duplicates("lead", "TITLE") == {}
    # The in-flight writes had run on the server before the kill; nothing ran twice.
    assert ran >= len(done)
    assert n - len(in_flight) <= emu.count("lead") <= n
    emu.close()
