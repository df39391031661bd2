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
from daemon.core.progress import duration_text, size_text
from daemon.core.words import counted
from daemon.journal import JournalError
from daemon.journal.status import sequence_json, status_json

EPILOG = """\
examples:
  mapillary-daemon status
  mapillary-daemon status --json | jq .images
  watch -n 5 mapillary-daemon status
  mapillary-daemon status --sequence 2f1d7c1e-...      # is it on the map? links per photo

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
    p.add_argument(
        "--journal",
        type=Path,
        metavar="FILE",
        help="journal file (default: from the configuration)",
    )
    add_config_flag(p)
    p.add_argument(
        "--errors", type=int, default=10, metavar="N", help="how many recent errors (%(default)s)"
    )
    p.add_argument(
        "--sequence",
        metavar="UUID",
        help="one sequence: its state, cluster and Mapillary links, photo by photo",
    )
    p.set_defaults(func=run)


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
        since = duration_text(time.time() - d.get("started", time.time()))
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

    if d.get("clock"):
        lines.append(clock_line(d["clock"]))
    images = {k: v for k, v in st["images"].items() if v}
    lines.append("images: " + (", ".join(f"{v} {k}" for k, v in images.items()) or "none yet"))
    seqs = {k: v for k, v in st["sequences"].items() if v}
    lines.append("sequences: " + (", ".join(f"{v} {k}" for k, v in seqs.items()) or "none yet"))
    lines.append(upload_line(st))
    lines.extend(waiting_lines(d))
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
                f"next try in {duration_text(max(when - time.time(), 0))}"
                if when
                else "to be retried"
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
    lines.extend(recent_upload_lines(st.get("recent_uploads") or []))
    return "\n".join(lines)


def on_map_text(s: dict[str, Any]) -> str:
    """Whether a finished sequence is on the map: its link, or why not yet."""
    if s.get("url"):
        return f"on the map: {s['url']} (sequence {s['mapillary_sequence']})"
    if s.get("mapillary_sequence"):
        return f"on the map as sequence {s['mapillary_sequence']}"
    why = s.get("note") or "not asked yet"
    when = s.get("next_check")
    later = f", asked again in {duration_text(max(when - time.time(), 0))}" if when else ""
    return f"not on the map yet ({why}{later})"


def recent_upload_lines(uploads: list[dict[str, Any]]) -> list[str]:
    if not uploads:
        return []
    lines = ["recent uploads:"]
    for s in uploads:
        images = counted(s["images"], "image")
        lines.append(f"  {s['uuid']} ({images}, cluster {s['cluster_id']}): {on_map_text(s)}")
    return lines


def render_sequence(s: dict[str, Any]) -> str:
    """`status --sequence UUID`: the sequence, then each photo with its link once known."""
    lines = [f"sequence {s['uuid']}: {s['state']}, {s['images']} images"]
    if s.get("reason"):
        lines.append(f"  reason: {s['reason']}")
    if s.get("cluster_id"):
        lines.append(f"  cluster {s['cluster_id']}: {on_map_text(s)}")
    for photo in s.get("photos") or []:
        where = photo["url"] or "no link yet"
        lines.append(f"  {photo['path'] or photo['hash']}: {where}")
    return "\n".join(lines)


def upload_line(st: dict[str, Any]) -> str:
    """``to upload: 1.2 GB at 2.0 MB/s, about 10 min left``; ``nothing`` when nothing is left,
    and neither rate nor ETA while nothing is sent (nothing left, daemon stopped, held back)."""
    d = st["daemon"]
    left = st["bytes_to_upload"]
    if not left:
        return "to upload: nothing"
    text = f"to upload: {size_text(left)}"
    held = HELD.intersection(d.get("waiting") or {}) if d.get("running") else set()
    if d.get("upload_rate") and d.get("running") and not held:
        text += f" at {size_text(d['upload_rate'])}/s"
        if st.get("eta_seconds"):
            text += f", about {duration_text(st['eta_seconds'])} left"
    return text


HELD = frozenset({"upload hours", "no token", "server unreachable"})  # nothing goes up now

# How `status` words each reason photos wait for (daemon.runtime.waiting names them).
WAITING_WORDS = {
    "settling": "{n} settling ({why})",
    "card copying": "{n} card copying ({why})",
    "batch quiet": "{n} for a quiet folder ({why})",
    "position": "{n} for a position ({why})",
    "upload delay": "{n} for the upload delay ({why})",
    "upload hours": "{n} until upload hours {why}",
    "no token": "{n} for a token ({why})",
    "server unreachable": "{n} for the server ({why})",
}


def waiting_lines(d: dict[str, Any]) -> list[str]:
    """``waiting: 12 settling (files still being written), 40 for a position (...)``: why
    photos wait, as the running daemon last saw it."""
    counts = d.get("waiting") or {}
    if not d.get("running") or not counts:
        return []
    why = d.get("waiting_why") or {}
    parts = [
        WAITING_WORDS.get(reason, "{n} {reason} ({why})").format(
            n=n, reason=reason, why=why.get(reason, "")
        )
        for reason, n in counts.items()
    ]
    return ["waiting: " + ", ".join(parts)]


def run(args: argparse.Namespace) -> int:
    settings = config.load(args.config)
    path = args.journal or settings.journal_path
    if not path.exists():
        print(f"no journal at {path} yet: the daemon has not run with this configuration")
        return EXIT_OK if not args.json else EXIT_USAGE
    if args.sequence:
        return _one_sequence(path, args.sequence, args.json)
    try:
        st = status_json(path, args.errors)
    except JournalError as exc:
        raise UsageError(str(exc)) from None
    # Names that are not UTF-8 (a card from another system) shown as \xNN, not a crash.
    print(json.dumps(st, indent=2, default=str) if args.json else valid_text(render(st)))
    return EXIT_OK


def _one_sequence(path: Path, uuid: str, as_json: bool) -> int:
    try:
        found = sequence_json(path, uuid)
    except JournalError as exc:
        raise UsageError(str(exc)) from None
    if found is None:
        raise UsageError(f"no sequence {uuid} in the journal {path}")
    print(
        json.dumps(found, indent=2, default=str) if as_json else valid_text(render_sequence(found))
    )
    return EXIT_OK
