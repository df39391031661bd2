"""The systemd notify protocol, written out (a few datagrams on an AF_UNIX socket).

``NOTIFY_SOCKET`` names the socket (a leading ``@`` means the abstract namespace). Without it every
call is a no-op, so the daemon runs the same under a terminal, launchd or cron. A send that fails
is logged once and never raised: telling the supervisor must not stop the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping

from daemon.core import log
from daemon.core.aio import wait_event


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self._watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._warned = False
        self._log = log.get("notify")

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or None
        usec = None
        with contextlib.suppress(ValueError):
            pid = env.get("WATCHDOG_PID")
            if env.get("WATCHDOG_USEC") and (not pid or int(pid) == os.getpid()):
                usec = int(env["WATCHDOG_USEC"])
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def watchdog_interval(self) -> float | None:
        """Half the supervisor's watchdog timeout, in seconds, or None when there is none."""
        return self._watchdog_usec / 2e6 if self._watchdog_usec else None

    def send(self, *lines: str) -> bool:
        if not self.address:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                # Non-blocking: a supervisor slow to read must cost a dropped ping, never a
                # stalled event loop (which would then miss the watchdog for real).
                kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                self._sock = socket.socket(socket.AF_UNIX, kind)
            self._sock.sendto("\n".join(lines).encode(), target)
            return True
        except OSError as exc:
            if not self._warned:
                self._log.warning("notify_failed", socket=self.address, reason=str(exc))
                self._warned = True
            return False

    def ready(self) -> bool:
        return self.send("READY=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text.splitlines()[0] if text else ''}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def watchdog_loop(
    notifier: Notifier, status: Callable[[], str], stop: asyncio.Event, every: float = 15.0
) -> None:
    """Ping WATCHDOG=1 from the event loop itself (a stalled loop stops the pings, and systemd
    restarts us) and refresh STATUS= with a one-line summary."""
    if not notifier.enabled:
        return
    interval = notifier.watchdog_interval() or every
    last_status = ""
    while not stop.is_set():
        if notifier.watchdog_interval():
            notifier.watchdog()
        line = status()
        if line != last_status:
            notifier.status(line)
            last_status = line
        await wait_event(stop, interval)
