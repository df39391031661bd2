"""The journal guards its file: one writer whatever path leads to it, a file deleted or replaced
while in use is noticed (and written no more), and its files and folders are private."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.journal import AsyncJournal, Journal, JournalError, JournalGone
from tests.test_journal import OPEN_WRITER, entry, python, run_python, sha

HOLD_WRITER = """
import sys
from daemon.journal import Journal
with Journal.open(sys.argv[1]) as j:
    j.set_meta("holder", sys.argv[1])
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.sqlite3"


@pytest.fixture
def journal(path: Path) -> Iterator[Journal]:
    with Journal.open(path) as j:
        j.add_file(entry(1))
        yield j


def siblings(path: Path) -> list[Path]:
    return [path.with_name(path.name + s) for s in ("", "-wal", "-shm", ".lock")]


# -- one writer through symlinks ------------------------------------------------------------------


def symlinked(tmp_path: Path, how: str) -> tuple[Path, Path]:
    """A journal path and another path to the same file, through a symlink made ``how``."""
    real = tmp_path / "state" / "journal.sqlite3"
    real.parent.mkdir()
    if how == "file":
        other = tmp_path / "link.sqlite3"
        other.symlink_to(real)
    elif how == "relative file":
        other = tmp_path / "state" / "alias.sqlite3"
        other.symlink_to("journal.sqlite3")
    elif how == "folder":
        (tmp_path / "linked").symlink_to(tmp_path / "state", target_is_directory=True)
        other = tmp_path / "linked" / "journal.sqlite3"
    else:  # a symlinked folder and a symlink to the file in it
        (tmp_path / "linked").symlink_to(tmp_path / "state", target_is_directory=True)
        other = tmp_path / "both.sqlite3"
        other.symlink_to(tmp_path / "linked" / "journal.sqlite3")
    return real, other


@pytest.mark.parametrize("how", ["file", "relative file", "folder", "folder and file"])
@pytest.mark.parametrize("first", ["real", "symlink"])
def test_a_second_writer_process_through_a_symlink_is_refused(
    tmp_path: Path, how: str, first: str
) -> None:
    real, other = symlinked(tmp_path, how)
    held, second = (real, other) if first == "real" else (other, real)
    holder = python(HOLD_WRITER, str(held), stdin=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, out, err = run_python(OPEN_WRITER, str(second))
        assert code == 3, (out, err)
        assert out.strip() == f"journal {second} is locked by another process (pid {holder.pid})"
    finally:
        holder.communicate("\n", timeout=20)
    assert holder.returncode == 0
    # one lock file, beside the real journal, and the data went there
    assert [p.name for p in real.parent.glob("*.lock")] == ["journal.sqlite3.lock"]
    assert not list(tmp_path.glob("*.lock"))
    code, out, err = run_python(OPEN_WRITER, str(second))
    assert (code, out.strip()) == (0, "opened"), err
    with Journal.open_readonly(real) as reader:
        assert reader.get_meta("holder") == str(held)


def test_the_same_process_cannot_open_two_writers_through_a_symlink(tmp_path: Path) -> None:
    real, other = symlinked(tmp_path, "file")
    locked = f"journal {other} is locked by another process"
    with Journal.open(real), pytest.raises(JournalError, match=locked):
        Journal.open(other, busy_timeout=0.2)


def test_a_dangling_symlink_makes_the_journal_where_it_points(tmp_path: Path) -> None:
    link = tmp_path / "link.sqlite3"
    link.symlink_to(tmp_path / "elsewhere" / "journal.sqlite3")
    with Journal.open(link) as j:
        j.add_file(entry(1))
        assert j.check_in_place() is None
    assert link.is_symlink()
    with Journal.open_readonly(tmp_path / "elsewhere" / "journal.sqlite3") as reader:
        assert reader.get_file(sha(1)) is not None


# -- watched --------------------------------------------------------------------------------------


def test_all_well_is_none(path: Path, journal: Journal) -> None:
    assert journal.check_in_place() is None
    journal.add_file(entry(2))  # commits still go through
    with Journal.open_readonly(path) as reader:
        assert reader.check_in_place() is None
    assert journal.check_in_place() is None
    journal.close()
    assert journal.check_in_place() is None  # nothing held any more


def test_a_deleted_journal_is_noticed_and_written_no_more(path: Path, journal: Journal) -> None:
    for each in siblings(path)[:3]:
        each.unlink()
    reason = journal.check_in_place()
    assert reason == f"journal {path} was deleted while in use"
    with pytest.raises(JournalGone, match="deleted while in use.*not recorded") as info:
        journal.add_file(entry(2))
    assert isinstance(info.value, JournalError) and "\n" not in str(info.value)
    with pytest.raises(JournalGone):
        journal.set_meta("k", 1)
    assert journal.get_file(sha(1)) is not None  # reads still answer from the file held open
    assert journal.get_file(sha(2)) is None
    journal.close()
    assert not path.exists()


def test_the_main_file_deleted_alone_is_noticed(path: Path, journal: Journal) -> None:
    path.unlink()
    assert journal.check_in_place() == f"journal {path} was deleted while in use"


def test_a_journal_replaced_by_another_file_is_noticed(path: Path, journal: Journal) -> None:
    other = path.with_name("other.sqlite3")
    with Journal.open(other) as j:
        j.add_file(entry(9))
    os.replace(other, path)
    reason = journal.check_in_place()
    assert reason == f"journal {path} was replaced while in use"
    with pytest.raises(JournalGone, match="replaced"):
        journal.add_file(entry(2))


def test_a_journal_copied_back_over_itself_is_a_replacement(path: Path, journal: Journal) -> None:
    shutil.copyfile(path, path.with_name("copy"))
    os.replace(path.with_name("copy"), path)
    assert "replaced" in (journal.check_in_place() or "")


def test_moved_away_and_back_is_in_place_again(path: Path, journal: Journal) -> None:
    aside = path.with_name("aside.sqlite3")
    os.rename(path, aside)
    assert "deleted" in (journal.check_in_place() or "")
    os.rename(aside, path)
    assert journal.check_in_place() is None  # the same file: nothing was lost
    journal.add_file(entry(2))


def test_the_folder_removed_is_noticed(path: Path, journal: Journal) -> None:
    shutil.rmtree(path.parent)
    assert journal.check_in_place() == (
        f"journal {path}: its folder {path.parent} was removed or moved while in use"
    )
    with pytest.raises(JournalGone, match="folder"):
        journal.add_file(entry(2))
    journal.close()  # closing what is gone is fine


def test_the_folder_renamed_away_is_noticed(path: Path, journal: Journal) -> None:
    path.parent.rename(path.parent.with_name("moved"))
    assert "was removed or moved" in (journal.check_in_place() or "")


def test_the_write_ahead_log_deleted_is_noticed(path: Path, journal: Journal) -> None:
    wal = path.with_name(path.name + "-wal")
    wal.unlink()
    assert journal.check_in_place() == (
        f"journal {path}: its write-ahead log {wal} was deleted while in use"
    )


def test_a_symlink_pointed_elsewhere_is_a_replacement(tmp_path: Path) -> None:
    link = tmp_path / "link.sqlite3"
    link.symlink_to(tmp_path / "a.sqlite3")
    with Journal.open(tmp_path / "b.sqlite3"):
        pass
    with Journal.open(link) as j:
        link.unlink()
        link.symlink_to(tmp_path / "b.sqlite3")
        assert j.check_in_place() == f"journal {link} was replaced while in use"
        link.unlink()
        assert j.check_in_place() == f"journal {link} was deleted while in use"


def test_a_reader_notices_too(path: Path, journal: Journal) -> None:
    with Journal.open_readonly(path) as reader:
        path.unlink()
        assert reader.check_in_place() == f"journal {path} was deleted while in use"


def test_a_commit_after_the_journal_went_is_rolled_back(path: Path, journal: Journal) -> None:
    with pytest.raises(JournalGone), journal.transaction():
        journal.add_file(entry(2))
        path.unlink()
    assert journal.get_file(sha(2)) is None
    assert not journal._conn.in_transaction


async def test_async_journal_checks_on_its_thread(path: Path) -> None:
    aj = await AsyncJournal.open(path)
    try:
        assert await aj.check_in_place() is None
        path.unlink()
        assert await aj.check_in_place() == f"journal {path} was deleted while in use"
        with pytest.raises(JournalGone):
            await aj.add_file(entry(1))
    finally:
        await aj.aclose()


def test_a_daemon_process_notices_its_journal_deleted(path: Path) -> None:
    code = """
import sys
from daemon.journal import Journal, JournalGone, NewFile
with Journal.open(sys.argv[1]) as j:
    print(j.check_in_place(), flush=True)
    sys.stdin.readline()
    print(j.check_in_place(), flush=True)
    try:
        j.set_meta("k", 1)
    except JournalGone as exc:
        print(type(exc).__name__, flush=True)
"""
    proc = python(code, str(path), stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "None"
    for each in siblings(path)[:3]:
        each.unlink()
    out, err = proc.communicate("\n", timeout=20)
    assert out.splitlines() == [f"journal {path} was deleted while in use", "JournalGone"], err


# -- private whatever the umask -------------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
def test_a_new_journal_and_its_folders_are_private(tmp_path: Path) -> None:
    existing = tmp_path / "home"
    existing.mkdir(mode=0o755)
    os.chmod(existing, 0o755)
    path = existing / "state" / "deeper" / "journal.sqlite3"
    with Journal.open(path) as j:
        j.add_file(entry(1))
        files = siblings(path)
        assert all(p.exists() for p in files)
        assert {p.name: mode(p) for p in files} == dict.fromkeys((p.name for p in files), 0o600)
    assert mode(path.parent) == mode(path.parent.parent) == 0o700
    assert mode(existing) == 0o755  # a folder the journal did not make is left as it was
    assert mode(path) == 0o600 and mode(files[3]) == 0o600


@pytest.mark.usefixtures("umask_022")
def test_a_journal_in_an_existing_folder_leaves_the_folder_alone(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    path = tmp_path / "journal.sqlite3"
    with Journal.open(path):
        pass
    assert mode(tmp_path) == 0o755
    assert mode(path) == 0o600


def test_private_even_under_a_umask_that_takes_the_owners_write(tmp_path: Path) -> None:
    old = os.umask(0o277)
    try:
        path = tmp_path / "new" / "journal.sqlite3"
        with Journal.open(path) as j:
            j.add_file(entry(1))
    finally:
        os.umask(old)
    assert mode(path.parent) == 0o700 and mode(path) == 0o600
    with Journal.open(path) as j:
        assert j.get_file(sha(1)) is not None


def test_a_daemon_process_under_umask_022_creates_private_files(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.sqlite3"
    code = "import os, sys; os.umask(0o022); exec(sys.argv[2])"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(path), HOLD_WRITER],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert {p.name: mode(p) for p in siblings(path)} == {p.name: 0o600 for p in siblings(path)}
        assert mode(path.parent) == 0o700
    finally:
        holder.communicate("\n", timeout=20)


def test_an_existing_journal_keeps_its_mode(path: Path) -> None:
    with Journal.open(path):
        pass
    os.chmod(path, 0o640)
    with Journal.open(path):
        assert mode(path) == 0o640
        assert mode(path.with_name(path.name + "-wal")) == 0o640  # SQLite follows the main file


def test_the_lock_file_deleted_is_noticed(path: Path, journal: Journal) -> None:
    lock = path.with_name(path.name + ".lock")
    lock.unlink()  # a second daemon could now lock a new one and start
    assert journal.check_in_place() == (
        f"journal {path}: its lock file {lock} was deleted while in use"
    )


def test_a_relative_path_is_checked_where_it_was_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Journal.open("journal.sqlite3") as j:
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
        assert j.check_in_place() is None
        (tmp_path / "journal.sqlite3").unlink()
        assert j.check_in_place() == "journal journal.sqlite3 was deleted while in use"
