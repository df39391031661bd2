"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.daemon_proc import DaemonProc


@pytest.fixture
def daemons() -> Iterator[list[DaemonProc]]:
    """Daemon subprocesses a test starts (tests.daemon_proc.new_daemon); killed afterwards."""
    made: list[DaemonProc] = []
    yield made
    for d in made:
        d.kill()
