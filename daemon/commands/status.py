"""`status`: a read-only view of the journal, safe while the daemon runs."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
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


def gps_line(gps: dict[str, Any], running: bool) -> str:
    """The receiver as gpsd reports it, and the daemon's own log.

    >>> gps_line({"state": "fix", "satellites": 9, "last_fix": "2026-12-02T12:00:03+00:00",
    ...           "track": "gps-2026-12-02.gpx", "fixes": 3600, "server": "127.0.0.1:2947"}, True)
    'GPS: fix, 9 satellites, last fix 12:00:03 UTC (own log gps-2026-12-02.gpx, 3,600 fixes)'
    """
    state = gps.get("state") or "no gpsd"
    parts = [f"{state} at {gps.get('server')}" if state == "no gpsd" else state]
    if state == "fix" and gps.get("satellites") is not None:
        parts.append(f"{gps['satellites']} satellites")
    if gps.get("last_fix"):
        try:
            when = datetime.fromisoformat(gps["last_fix"]).astimezone(UTC)
            parts.append(f"last fix {when:%H:%M:%S} UTC")
        except ValueError:
            parts.append(f"last fix {gps['last_fix']}")
    line = ("GPS: " if running else "GPS (last run): ") + ", ".join(parts)
    if gps.get("track"):
        line += f" (own log {gps['track']}, {gps.get('fixes', 0):,} fixes)"
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
    if d.get("gps"):
        lines.append(gps_line(d["gps"], bool(d.get("running"))))
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
