"""`status`: a read-only view of the journal, safe while the daemon runs."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from daemon.commands.common import add_command, add_config_flag
from daemon.core import config
from daemon.core.errors import EXIT_OK, EXIT_USAGE, UsageError
from daemon.core.files import valid_text
from daemon.journal import JournalError
from daemon.journal.status import status_json

EPILOG = """\
examples:
  mapillary-daemon status
  mapillary-daemon status --json | jq .images
  watch -n 5 mapillary-daemon status

Reads the journal only (never writes), so it works while the daemon runs."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "status",
        "what the daemon is doing: queue, uploads, errors, sources",
        "Show images per state, sequences, bytes left to upload, upload rate and "
        "ETA, the last errors, whether the server is reachable and what each source is doing.",
        EPILOG,
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--journal", type=Path, help="journal file (default: from the configuration)")
    add_config_flag(p)
    p.add_argument("--errors", type=int, default=10, help="how many recent errors (%(default)s)")
    p.set_defaults(func=run)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _duration(s: float) -> str:
    s = int(s)
    if s < 90:
        return f"{s} s"
    if s < 5400:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def clock_line(clock: dict[str, Any]) -> str:
    """The camera clock in use and, when they differ, what the photos say.

    >>> clock_line({"tz": "+02:00", "time_offset": -3.0, "source": "auto", "confidence": 0.95})
    'clock: zone +02:00, camera 3 s behind (found from the photos, confidence 0.95)'
    >>> clock_line({"tz": None, "time_offset": 0.0, "source": "default", "suggestion": None})
    'clock: zone of this machine, camera clock right (default)'
    """
    from daemon.pipeline.clock import behind_text

    source = str(clock.get("source"))
    if clock.get("time_offset") is None and clock.get("tz") is None and source == "auto":
        used = "auto, not found yet"
    else:
        zone = f"zone {clock['tz']}" if clock.get("tz") else "zone of this machine"
        offset = clock.get("time_offset")
        used = f"{zone}, {behind_text(offset) if offset is not None else 'offset to be found'}"
    how = {"auto": "found from the photos", "config": "as configured"}.get(source, str(source))
    if source == "auto" and clock.get("confidence") is not None:
        how += f", confidence {clock['confidence']:.2f}"
    line = f"clock: {used} ({how})"
    hint = clock.get("suggestion")
    if hint:
        line += f"; the photos ({hint.get('photos')}): {hint.get('reason')}"
        if hint.get("tz") or hint.get("time_offset") is not None:
            line += f" — would be placed with tz {hint.get('tz')}, time_offset {hint.get('time_offset')}"
    return line


def render(st: dict[str, Any]) -> str:
    d = st["daemon"]
    lines = []
    if d.get("running"):
        since = _duration(time.time() - d.get("started", time.time()))
        lines.append(f"daemon: running (pid {d.get('pid')}, up {since}) — {d.get('activity', '')}")
    else:
        lines.append("daemon: not running")
    if d.get("web") and d.get("running"):
        lines.append(f"page: {d['web']}")
    server = d.get("server")
    if server:
        lines.append(f"server: {server}" if d.get("running") else f"server (last run): {server}")
    if d.get("paused"):
        lines.append(f"paused: {d['paused']}")
    if d.get("clock"):
        lines.append(clock_line(d["clock"]))
    images = {k: v for k, v in st["images"].items() if v}
    lines.append("images: " + (", ".join(f"{v} {k}" for k, v in images.items()) or "none yet"))
    seqs = {k: v for k, v in st["sequences"].items() if v}
    lines.append("sequences: " + (", ".join(f"{v} {k}" for k, v in seqs.items()) or "none yet"))
    left = st["bytes_to_upload"]
    upload = f"to upload: {_size(left)}"
    if d.get("upload_rate") and d.get("running") and left:  # no rate for nothing to send
        upload += f" at {_size(d['upload_rate'])}/s"
    if st.get("eta_seconds"):
        upload += f", about {_duration(st['eta_seconds'])} left"
    lines.append(upload)
    waiting = st.get("waiting_for_source") or {}
    if waiting.get("images"):
        lines.append(
            f"waiting for their source: {waiting['images']} images of "
            f"{waiting['sequences']} sequence(s) (drive unplugged, folder moved or deleted); "
            "they go up when it is back"
        )
    for root, info in st["sources"].items():
        doing = (d.get("roots") or {}).get(root, "") if d.get("running") else ""
        counts = ", ".join(f"{v} {k}" for k, v in info["images"].items())
        lines.append(f"source {root} ({info['kind']}{', ' + doing if doing else ''}): {counts}")
    for root, doing in (d.get("roots") or {}).items() if d.get("running") else ():
        if root not in st["sources"]:
            lines.append(f"source {root}: {doing}")
    cards = d.get("cards") or {}
    if cards:
        # Whether the user may pull each card: said even of a stopped daemon's last run, since
        # a card whose files were not all copied is still not safe to remove.
        lines.append("cards:" if d.get("running") else "cards (last run):")
        for mount, card in cards.items():
            safe = "safe to remove" if card["safe_to_remove"] else "NOT safe to remove"
            lines.append(f"  {mount}: {safe}: {card['state']}")
    if st.get("failed_sequences"):
        # Retried by themselves later: say which, why and when, and how to retry now.
        lines.append("failed sequences:")
        for s in st["failed_sequences"]:
            when = s.get("next_try")
            nxt = (
                f"next try in {_duration(max(when - time.time(), 0))}" if when else "to be retried"
            )
            lines.append(f"  {s['uuid']} ({s['images']} images): {s['reason']} ({nxt})")
        lines.append("  ('mapillary-daemon retry --all' tries them now)")
    if st["recent_errors"]:
        lines.append("recent problems:")
        for e in st["recent_errors"]:
            lines.append(f"  {e['path']}: {e['state']}: {e['reason']}")
    aside = [e for e in st.get("recent_events", []) if e["kind"] == "set_aside"]
    if aside:
        lines.append("files set aside before import:")
        lines.extend(f"  {e['message']}" for e in aside)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings = config.load(args.config)
    path = args.journal or settings.journal_path
    if not path.exists():
        print(f"no journal at {path} yet: the daemon has not run with this configuration")
        return EXIT_OK if not args.json else EXIT_USAGE
    try:
        st = status_json(path, args.errors)
    except JournalError as exc:
        raise UsageError(str(exc)) from None
    # Names that are not UTF-8 (a card from another system) shown as \xNN, not a crash.
    print(json.dumps(st, indent=2, default=str) if args.json else valid_text(render(st)))
    return EXIT_OK
