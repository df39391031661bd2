"""Outside tools some tests and benchmarks compare against, installed on demand and cached.

mapillary_tools (the official uploader) goes into its own venv under the user's cache folder, so
its dependencies never mix with ours and later runs reuse it (the install takes ~20 s once).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

MAPILLARY_TOOLS_VERSION = "0.14.7"
INSTALL_TIMEOUT = 600  # seconds; pip against a slow registry
_ready_marker = "installed.ok"


def cache_dir() -> Path:
    """Where test tools live between runs (``MAPILLARY_DAEMON_TEST_CACHE`` overrides)."""
    override = os.environ.get("MAPILLARY_DAEMON_TEST_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mapillary-daemon-tests"


def _works(tool: Path) -> bool:
    try:
        done = subprocess.run([str(tool), "--version"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and MAPILLARY_TOOLS_VERSION in done.stdout + done.stderr


def _install(venv: Path) -> str | None:
    """Create the venv and pip-install the pinned version; the reason on failure."""
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"mapillary_tools=={MAPILLARY_TOOLS_VERSION}",
        ],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{step[2]} failed: {exc}"
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if not ln.startswith("WARNING")]
            return (lines or ["no message"])[-1]
    return None


def mapillary_tools_bin() -> str | None:
    """The path of a working ``mapillary_tools`` 0.14.7, installing it once; None if impossible.

    ``MAPILLARY_TOOLS_BIN`` names one to use instead. Safe to call from several processes at once
    (a file lock guards the install). Why it failed is in :data:`last_failure`.
    """
    global last_failure
    given = os.environ.get("MAPILLARY_TOOLS_BIN")
    if given:
        return given if _works(Path(given)) else None
    root = cache_dir()
    venv = root / f"mapillary_tools-{MAPILLARY_TOOLS_VERSION}"
    tool = venv / "bin" / "mapillary_tools"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with open(root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (venv / _ready_marker).exists() and _works(tool):
                return str(tool)
            last_failure = _install(venv)
            if last_failure is None and not _works(tool):
                last_failure = f"{tool} does not run or is not version {MAPILLARY_TOOLS_VERSION}"
            if last_failure is not None:
                return None
            (venv / _ready_marker).write_text(MAPILLARY_TOOLS_VERSION + "\n")
            return str(tool)
    except OSError as exc:
        last_failure = f"cannot use {root}: {exc}"
        return None


last_failure: str | None = None
