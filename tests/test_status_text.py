"""What `status` says about the bytes left: nothing left is "nothing" (no rate), a rate and an
ETA only while the running daemon sends, none while uploads are held back."""

from __future__ import annotations

import time
from typing import Any

from daemon.commands.status import upload_line, waiting_lines


def shown(left: int, *, rate: float, running: bool = True, **extra: Any) -> dict[str, Any]:
    daemon = {"running": running, "upload_rate": rate, "started": time.time(), **extra}
    return {
        "bytes_to_upload": left,
        "eta_seconds": round(left / rate) if rate else None,
        "daemon": daemon,
    }


def test_nothing_left_is_said_without_a_rate() -> None:
    assert upload_line(shown(0, rate=31_142_707.2)) == "to upload: nothing"


def test_a_rate_and_eta_while_the_daemon_sends() -> None:
    line = upload_line(shown(120 * 2**20, rate=2 * 2**20))
    assert line == "to upload: 120.0 MB at 2.0 MB/s, about 60 s left"


def test_no_rate_or_eta_when_stopped_or_held_back() -> None:
    assert upload_line(shown(5 * 2**20, rate=2**20, running=False)) == "to upload: 5.0 MB"
    held = shown(5 * 2**20, rate=2**20, waiting={"upload hours": 3})
    assert upload_line(held) == "to upload: 5.0 MB"


def test_waiting_reasons_in_the_users_words() -> None:
    d = {
        "running": True,
        "waiting": {"settling": 12, "position": 40, "upload hours": 200},
        "waiting_why": {
            "settling": "files still being written",
            "position": "no GPS track covers 08:02-08:15 UTC",
            "upload hours": "22:00-07:00",
        },
    }
    assert waiting_lines(d) == [
        "waiting: 12 settling (files still being written), 40 for a position (no GPS track "
        "covers 08:02-08:15 UTC), 200 until upload hours 22:00-07:00"
    ]
    assert waiting_lines({**d, "running": False}) == []


def test_doctests() -> None:
    import doctest

    import daemon.core.progress
    import daemon.runtime.waiting
    import daemon.upload.published

    for module in (daemon.core.progress, daemon.runtime.waiting, daemon.upload.published):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
