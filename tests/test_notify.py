"""The systemd notify protocol on a real AF_UNIX datagram socket: the Notifier's messages, the
watchdog pinged from the event loop at half WATCHDOG_USEC, and the daemon itself (`run` as a
subprocess) telling READY=1, WATCHDOG=1, STATUS= and, on SIGTERM, STOPPING=1 then exiting 0."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.runtime.notify import Notifier, watchdog_loop

REPO = Path(__file__).resolve().parent.parent


class Listener:
    """What systemd does with NOTIFY_SOCKET: a bound datagram socket read at once by a thread
    (a queue left unread fills after ~10 datagrams and then blocks the sender, see the report),
    keeping (arrival time, message)."""

    def __init__(self, address: str) -> None:
        self.address = address  # as given in NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.got: list[tuple[float, str]] = []
        self._read = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.got.append((time.monotonic(), data.decode()))

    def receive(self, timeout: float) -> str | None:
        """The next message not returned yet, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._read >= len(self.got):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.005)
        self._read += 1
        return self.got[self._read - 1][1]

    def wait_for(self, wanted: str, timeout: float) -> list[str]:
        """Every message until one that starts with ``wanted`` (inclusive); fails on timeout."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(max(0.01, deadline - time.monotonic()))
            if message is None:
                continue
            seen.append(message)
            if message.startswith(wanted):
                return seen
        raise AssertionError(f"no {wanted!r} within {timeout} s; got {seen}")

    def settle(self) -> list[tuple[float, str]]:
        """Everything received, after datagrams in flight have arrived."""
        time.sleep(0.1)
        return list(self.got)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A socket path must fit in 108 bytes; pytest's tmp_path can be longer than that.
    path = Path(tempfile.mkdtemp(prefix="mly-n", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def listener(short_dir: Path) -> Iterator[Listener]:
    ear = Listener(str(short_dir / "notify"))
    yield ear
    ear.close()


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    ear = Listener(f"@mly-test-{os.getpid()}-{time.monotonic_ns()}")
    yield ear
    ear.close()


# -- the messages -----------------------------------------------------------------------------


def test_each_message_arrives_as_one_datagram(listener: Listener):
    n = Notifier(listener.address)
    assert n.enabled
    assert n.ready() and listener.receive(2) == "READY=1"
    assert n.status("3 waiting for a position\nsecond line is dropped")
    assert listener.receive(2) == "STATUS=3 waiting for a position"
    assert n.watchdog() and listener.receive(2) == "WATCHDOG=1"
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading()
    lines = listener.receive(2).split("\n")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert lines[0] == "RELOADING=1"
    key, value = lines[1].split("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after
    assert n.stopping() and listener.receive(2) == "STOPPING=1"
    n.close()


def test_abstract_socket_name(abstract_listener: Listener):
    n = Notifier(abstract_listener.address)
    assert n.ready()
    assert abstract_listener.receive(2) == "READY=1"
    n.close()


def test_from_environment():
    assert not Notifier.from_environment({}).enabled
    assert Notifier.from_environment({}).ready() is False  # no socket: a no-op, not an error
    n = Notifier.from_environment({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"})
    assert n.address == "/run/x" and n.watchdog_interval() == 15.0
    # WATCHDOG_PID names the process the watchdog is meant for; a child must not ping it.
    other = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environment(other).watchdog_interval() is None
    mine = dict(other, WATCHDOG_PID=str(os.getpid()))
    assert Notifier.from_environment(mine).watchdog_interval() == 0.5
    broken = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "soon"}
    assert Notifier.from_environment(broken).watchdog_interval() is None


def test_a_missing_socket_is_reported_not_raised(short_dir: Path):
    n = Notifier(str(short_dir / "nobody-listens"))
    assert n.ready() is False
    assert n.status("x") is False  # still no exception, and the warning was logged once
    assert n._warned
    n.close()


def test_a_supervisor_that_does_not_read_never_blocks_the_sender(short_dir: Path):
    path = short_dir / "deaf"
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(str(path))  # bound, never read
    n = Notifier(str(path))
    done = threading.Event()

    def ping() -> None:
        for _ in range(int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text()) + 20):
            n.watchdog()
        done.set()

    threading.Thread(target=ping, daemon=True).start()
    finished = done.wait(2.0)
    deaf.close()  # unblocks a stuck sender (it gets an error instead)
    assert finished, "sending to a full notify socket blocked"


# -- the watchdog loop ---------------------------------------------------------------------------


async def test_watchdog_pings_at_half_the_timeout_from_the_loop(listener: Listener):
    usec = 200_000  # systemd would restart us after 0.2 s of silence: ping every 0.1 s
    n = Notifier.from_environment({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": str(usec)})
    state = {"line": "2 waiting"}
    stop = asyncio.Event()
    task = asyncio.create_task(watchdog_loop(n, lambda: state["line"], stop))
    await asyncio.sleep(0.55)
    state["line"] = "1 uploading"
    await asyncio.sleep(0.3)
    time.sleep(0.5)  # the event loop stalls: no ping may be sent meanwhile
    await asyncio.sleep(0.15)
    stop.set()
    await asyncio.wait_for(task, 1.0)
    n.close()

    got = listener.settle()
    pings = [t for t, m in got if m == "WATCHDOG=1"]
    statuses = [m for _, m in got if m.startswith("STATUS=")]
    # ~0.85 s of a live loop at 0.1 s: about 9 pings (a loaded machine may delay a few).
    assert 6 <= len(pings) <= 12, pings
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert min(gaps) >= 0.08, gaps  # never faster than half the timeout
    assert max(gaps) >= 0.5, gaps  # the stall shows as a gap: systemd would restart us
    # The status line is sent when it changes, not with every ping.
    assert statuses == ["STATUS=2 waiting", "STATUS=1 uploading"]


async def test_without_a_watchdog_the_loop_only_refreshes_status(listener: Listener):
    n = Notifier(listener.address)
    stop = asyncio.Event()
    lines = iter(["a", "b", "c"])
    task = asyncio.create_task(watchdog_loop(n, lambda: next(lines, "c"), stop, every=0.05))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 1.0)
    n.close()
    got = [m for _, m in listener.settle()]
    assert got == ["STATUS=a", "STATUS=b", "STATUS=c"]


# -- the daemon itself ---------------------------------------------------------------------------


def test_run_under_a_supervisor_notifies_and_stops_cleanly(listener: Listener, tmp_path: Path):
    watch = tmp_path / "watch"
    watch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAPILLARY", "XDG_"))}
    env.update(
        NOTIFY_SOCKET=listener.address,
        WATCHDOG_USEC="1000000",  # ping every 0.5 s
        XDG_CONFIG_HOME=str(tmp_path / "cfg"),  # no token, no configuration of the real user
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        MAPILLARY_DAEMON_GRAPH_ENDPOINT="http://127.0.0.1:9",
        MAPILLARY_DAEMON_UPLOAD_ENDPOINT="http://127.0.0.1:9",
        PYTHONPATH=str(REPO),
    )
    cmd = [sys.executable, "-m", "daemon", "run", "--watch", str(watch)]
    cmd += ["--journal", str(tmp_path / "journal.sqlite3"), "--spool", str(tmp_path / "spool")]
    log = (tmp_path / "daemon.core.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        first = listener.wait_for("READY=1", timeout=60)
        assert not [m for m in first if m.startswith(("WATCHDOG", "STATUS"))], first
        after = listener.wait_for("WATCHDOG=1", timeout=5)
        after += listener.wait_for("WATCHDOG=1", timeout=5)
        assert sum(m == "WATCHDOG=1" for m in after) >= 2, after
        assert [m for m in after if m.startswith("STATUS=") and len(m) > len("STATUS=")], after

        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        listener.wait_for("STOPPING=1", timeout=10)
        code = proc.wait(timeout=max(0.1, 10 - (time.monotonic() - sent)))
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp_path / "daemon.core.log").read_text(errors="replace")
    assert code == 0, output
    assert took < 10, took
    assert "daemon_stopped" in output
