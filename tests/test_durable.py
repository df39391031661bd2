"""The one temp-file-then-rename (daemon.core.durable), on real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.core.durable import write_atomically, write_temp


def test_a_file_whose_name_is_near_the_limit_can_still_be_rewritten(tmp_path: Path) -> None:
    photo = tmp_path / ("é" * 123 + ".jpg")  # 250 bytes: a temp name beside it must be shorter
    photo.write_bytes(b"old")
    write_atomically(photo, b"new")
    assert photo.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [photo.name]


def test_the_rewritten_file_keeps_its_mode_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "a.jpg"
    target.write_bytes(b"old")
    target.chmod(0o640)
    old = os.umask(0o077)
    try:
        write_atomically(target, "new")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o640
    assert target.read_text() == "new"


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.jpg"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_temp(target, 12345)  # type: ignore[arg-type]  # not bytes: the write itself fails
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.jpg"]
