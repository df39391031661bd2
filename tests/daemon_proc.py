"""The daemon as a real subprocess, for the end-to-end, crash and signal tests and the benchmark.

``DaemonProc`` starts ``python -m daemon run ...`` with its output in files (so a killed daemon
leaves its logs), waits for log events or journal states with a deadline, and reads
``status --json`` the way a user would. ``ServerProc`` is the embedded server as a subprocess
on a fixed port and data folder, so a test can take it away and bring it back.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.request import urlopen

REPO = Path(__file__).resolve().parents[1]
TOKEN = "tok-e2e-5ecret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def base_env(endpoints: dict[str, str], token: str = TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY")}
    env.update(endpoints)
    env["MAPILLARY_TOKEN"] = token
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the file as they happen
    return env


def user_env(home: Path, endpoints: dict[str, str], token: str | None = TOKEN) -> dict[str, str]:
    """The environment of a user whose home, config, state and data folders are all under
    ``home``, talking to ``endpoints`` with ``token`` (None: no token set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY")}
    env.update(
        endpoints,
        PYTHONPATH=str(REPO),
        HOME=str(home / "home"),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_DATA_HOME=str(home / "data"),
    )
    if token is not None:
        env["MAPILLARY_TOKEN"] = token
    return env


def run_cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``mapillary-daemon ARGS`` run in ``folder``, with its config under ``folder/config`` and
    none of the caller's ``MAPILLARY_*`` settings, so the test's photos are all it sees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY")}
    env.update(XDG_CONFIG_HOME=str(folder / "config"), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=120,
    )


@dataclass
class DaemonProc:
    """One daemon process over a workspace (journal and spool under ``work``)."""

    work: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def journal(self) -> Path:
        return self.work / "journal.sqlite3"

    @property
    def spool(self) -> Path:
        return self.work / "spool"

    def command(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "daemon",
            "run",
            "--journal",
            str(self.journal),
            "--spool",
            str(self.spool),
            "--log-format",
            "json",
            *self.args,
            *extra,
        ]

    def start(self, *extra: str) -> DaemonProc:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        out = (self.work / f"run{self.runs}.out").open("wb")
        err = (self.work / f"run{self.runs}.err").open("wb")
        self.proc = subprocess.Popen(self.command(*extra), env=self.env, stdout=out, stderr=err)
        out.close()
        err.close()
        return self

    def once(self, *extra: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command("--once", *extra),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self, run: int | None = None) -> str:
        """stdout and stderr of one run (default: the last)."""
        n = run or self.runs
        return "".join(
            (self.work / f"run{n}.{ext}").read_text(errors="replace") for ext in ("out", "err")
        )

    def all_output(self) -> str:
        return "".join(self.output(n) for n in range(1, self.runs + 1))

    def events(self, name: str | None = None, run: int | None = None) -> list[dict[str, Any]]:
        """JSON log lines of a run (all runs with ``run=0``), optionally only one event."""
        runs = range(1, self.runs + 1) if run == 0 else [run or self.runs]
        found = []
        for n in runs:
            for line in self.output(n).splitlines():  # logs go to stderr
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and (name is None or entry.get("event") == name):
                    found.append(entry)
        return found

    def wait_event(self, name: str, timeout: float, count: int = 1) -> list[dict[str, Any]]:
        def seen() -> list[dict[str, Any]] | None:
            if not self.running():
                raise AssertionError(f"daemon exited waiting for {name}:\n{self.output()[-3000:]}")
            got = self.events(name)
            return got if len(got) >= count else None

        return wait_for(f"{count} x {name}", seen, timeout)

    def status(self) -> dict[str, Any]:
        """`status --json`, as a user runs it next to the daemon."""
        p = subprocess.run(
            [sys.executable, "-m", "daemon", "status", "--json", "--journal", str(self.journal)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    def images(self) -> dict[str, int]:
        """Images per state, read straight from the journal (read-only)."""
        if not self.journal.exists():
            return {}
        db = sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True, timeout=10)
        try:
            return dict(db.execute("SELECT state, count(*) FROM files GROUP BY state").fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}  # the daemon has created the file but not yet its tables
            raise
        finally:
            db.close()

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()


@dataclass
class ServerProc:
    """`mapillary-daemon server` on a fixed port and data folder, to stop and start again."""

    data: Path
    port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        return {
            "MAPILLARY_GRAPH_API_ENDPOINT": f"{self.base_url}/graph",
            "MAPILLARY_UPLOAD_ENDPOINT": f"{self.base_url}/mapillary_public_uploads",
        }

    def start(self) -> ServerProc:
        self.data.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "daemon", "server", "--port", str(self.port)]
        cmd += ["--data", str(self.data), "--token", TOKEN, *self.extra]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for("the server to answer", self._answers, 15)
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}")
        try:
            self.stats()
        except OSError:
            return False
        return True

    def stats(self) -> dict[str, int]:
        with urlopen(f"{self.base_url}/_admin/stats", timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)


# Quick settling for tests: photos are written whole, so a short settle is safe.
FAST = ["--tz", "+02:00", "--settle-seconds", "0.3", "--batch-quiet-seconds", "1"]


def new_daemon(
    daemons: list[DaemonProc], work: Path, endpoints: dict[str, str], *args: str
) -> DaemonProc:
    """A daemon over ``work`` talking to ``endpoints``, killed at the test's end (the
    ``daemons`` fixture of tests/conftest.py)."""
    work.mkdir(parents=True, exist_ok=True)
    d = DaemonProc(work, base_env(endpoints), [*FAST, *args])
    daemons.append(d)
    return d


def logging_daemon(
    daemons: list[DaemonProc], tmp_path: Path, endpoints: dict[str, str], *args: str
) -> tuple[DaemonProc, Path, Path]:
    """:func:`new_daemon` watching ``tmp_path/in`` with a GPS logger's folder ``tmp_path/gps``
    (made) whose tracks photos may wait two hours for; the daemon, the inbox, the logger's
    folder."""
    inbox, logger = tmp_path / "in", tmp_path / "gps"
    logger.mkdir()
    d = new_daemon(
        daemons,
        tmp_path / "work",
        endpoints,
        *("--watch", str(inbox), "--gpx-dir", str(logger), "--position-wait", "7200"),
        *args,
    )
    return d, inbox, logger
