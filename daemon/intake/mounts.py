"""Mounts and camera cards: the kernel's mount table, which folders are cards, who a card is.

A new mount fires no file events, so cards are found by polling ``/proc/self/mountinfo`` and
listing the mount roots. A card is identified by its file-system UUID or label (read from the
links udev keeps under ``/dev/disk``), never by a marker written onto it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from daemon.intake.events import Card

MOUNTINFO = Path("/proc/self/mountinfo")
DISK_BY = Path("/dev/disk")

Identity = tuple[int, int]  # device and inode of a folder


@dataclass(frozen=True)
class Mount:
    mount_id: int
    point: str
    device: str
    fstype: str


def _unescape_mount(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> dict[str, Mount]:
    """Mount point → mount (the last line wins: it is the one on top).

    >>> line = "36 25 8:17 / /media/pi/EOS\\\\040R rw - vfat /dev/sdb1 rw"
    >>> parse_mountinfo(line)["/media/pi/EOS R"].device
    '/dev/sdb1'
    """
    mounts: dict[str, Mount] = {}
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2 or not fields[0].isdigit():
            continue
        point = _unescape_mount(fields[4])
        mounts[point] = Mount(int(fields[0]), point, _unescape_mount(tail[1]), tail[0])
    return mounts


def read_mountinfo() -> str | None:
    try:
        return MOUNTINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _udev_name(name: str) -> str:
    """udev escapes odd characters in by-label names as ``\\xNN``."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), name)


def _link_to(folder: Path, device: str) -> str | None:
    target = os.path.realpath(device)
    with contextlib.suppress(OSError), os.scandir(folder) as links:
        for link in links:
            if os.path.realpath(link.path) == target:
                return _udev_name(link.name)
    return None


def dcim_fingerprint(mount: Path) -> str:
    """A short digest of the DCIM folder names and the first file: stands in for a UUID."""
    digest = hashlib.sha256()
    with contextlib.suppress(OSError):
        folders = sorted(e.name for e in os.scandir(mount / "DCIM") if e.is_dir())
        digest.update("/".join(folders).encode())
        if folders:
            files = sorted(e.name for e in os.scandir(mount / "DCIM" / folders[0]))
            digest.update(files[0].encode() if files else b"")
    return digest.hexdigest()[:12]


def identify_card(
    mount: Path, mounts: dict[str, Mount] | None = None, disk_by: Path = DISK_BY
) -> Card:
    """Who the card at ``mount`` is: file-system UUID and label from /dev/disk when it is a real
    mount, else its folder name and a fingerprint of its DCIM listing."""
    if mounts is None:
        mounts = parse_mountinfo(read_mountinfo() or "")
    entry = mounts.get(str(mount))
    device = entry.device if entry and entry.device.startswith("/") else None
    uuid = _link_to(disk_by / "by-uuid", device) if device else None
    label = _link_to(disk_by / "by-label", device) if device else None
    if uuid:
        card_id = f"uuid:{uuid}"
    elif label:
        card_id = f"label:{label}"
    else:
        card_id = f"name:{mount.name}:{dcim_fingerprint(mount)}"
    return Card(mount, card_id, uuid, label, device)


def has_dcim(folder: str | os.PathLike[str]) -> bool:
    return os.path.isdir(os.path.join(folder, "DCIM"))


def find_cards(mount_root: Path) -> set[Path]:
    """Folders under a mount root holding ``DCIM/``: its children, or one level further down
    for the ``/media/<user>/<LABEL>`` layout of udisks."""
    found: set[Path] = set()
    for child in _subfolders(mount_root):
        if has_dcim(child):
            found.add(child)
        else:
            found.update(g for g in _subfolders(child) if has_dcim(g))
    return found


def _subfolders(folder: Path) -> list[Path]:
    out = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if not entry.name.startswith(".") and entry.is_dir():
                    out.append(Path(entry.path))
    return out


def folder_identity(path: Path) -> Identity | None:
    """Device and inode of a folder: a new pair means something was mounted or replaced."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(path) else None


@dataclass
class Survey:
    """What one poll found: the mount table, each root's identity, the card folders under the
    mount roots, and the identity of each known card's folder (None: no DCIM there now)."""

    mountinfo: str | None
    identities: dict[Path, Identity | None]
    cards: dict[Path, set[Path]]
    card_ids: dict[Path, Identity | None]


def survey(roots: list[tuple[Path, str]], cards: list[Path]) -> Survey:
    """Blocking: which ``roots`` (path, kind) exist, and which card folders are there."""
    found = Survey(read_mountinfo(), {}, {}, {})
    for path, kind in roots:
        found.identities[path] = folder_identity(path)
        if kind == "mounts" and found.identities[path] is not None:
            found.cards[path] = find_cards(path)
    for mount in cards:
        found.card_ids[mount] = folder_identity(mount) if has_dcim(mount) else None
    return found
