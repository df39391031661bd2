"""`process`, `geotag` and the daemon on a folder of good camera photos mixed with the worst
mutants of the fuzz test (cut off, bogus IFD offsets and counts, duplicated segments): every
good photo is processed, every bad one is named once with its reason, on one line, and left
byte for byte as it was."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.media.exif import read_exif
from daemon.media.load import load_record
from daemon.pipeline.records import BAD_FILE, BAD_METADATA
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests.corpus import CORPUS
from tests.daemon_proc import TOKEN, DaemonProc, new_daemon, run_cli
from tests.jpegs import write_gpx
from tests.test_exif_fuzz import corpus_seeds, mutants

EXIF_CORPUS = CORPUS / "exif"
# Corpus photos with a capture time and a position (EXIF GPS, or XMP only for the Adobe file)
GOOD = [
    "Kodak_CX7530.jpg",
    "gps_DSCN0010.jpg",
    "gps_DSCN0021.jpg",
    "mapillary_tools_adobe_coords.jpg",
    "mapillary_tools_DSC00001.JPG",
    "tests_87_OSError.jpg",
]
KINDS = {  # what the mutator did → how many refused mutants of it the folder gets
    "truncated": 3,
    "IFD0 offset": 2,
    "value offset": 2,
    "value count": 1,
    "IFD entry count": 1,
    "segment duplicated": 2,
}
DSCN0010_GPS_TIME = datetime(2008, 10, 23, 14, 27, 7, 240000, tzinfo=UTC)

pytestmark = pytest.mark.skipif(
    not all((EXIF_CORPUS / n).is_file() for n in GOOD),
    reason=f"needs the camera corpus ({EXIF_CORPUS})",
)


def _worst_mutants(scratch: Path) -> dict[str, bytes]:
    """The first mutants (fixed seed) of each kind that the reader refuses as a bad file or bad
    EXIF, by the names they get in the folder."""
    scratch.mkdir()
    wanted = dict(KINDS)
    found: dict[str, bytes] = {}
    for n, (_seed, what, blob) in enumerate(mutants(corpus_seeds(), 6_000, seed=29)):
        kind = next((k for k in wanted if wanted[k] and k in what.split("+")), None)
        if kind is None:
            continue
        probe = scratch / f"{n}.jpg"
        probe.write_bytes(blob)
        record = load_record(probe, UTC, "UTC")
        if record.error is None or record.error.type not in (BAD_FILE, BAD_METADATA):
            continue
        wanted[kind] -= 1
        found[f"bad_{len(found):02d}_{kind.replace(' ', '_')}.jpg"] = blob
        if not any(wanted.values()):
            break
    assert not any(wanted.values()), f"the mutator gave too few refused mutants: {wanted}"
    return found


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return _worst_mutants(tmp_path_factory.mktemp("mutants") / "probe")


def _folder(folder: Path, bad: dict[str, bytes]) -> dict[Path, bytes]:
    """The good photos and the mutants in ``folder``; the mutants' paths and bytes."""
    folder.mkdir(parents=True)
    for name in GOOD:
        shutil.copy(EXIF_CORPUS / name, folder / name)
    for name, blob in bad.items():
        (folder / name).write_bytes(blob)
    return {folder / name: blob for name, blob in bad.items()}


def _named_once(lines: list[str], bad: dict[Path, bytes], key: str = "path") -> None:
    """Each bad file on exactly one line, with a reason after its name; no good photo named."""
    for path in bad:
        about = [ln for ln in lines if path.name in ln]
        assert len(about) == 1, (path.name, about)
        if key == "path":  # the commands: "PATH: reason"
            assert about[0].startswith(f"{path}: ") and about[0][len(f"{path}: ") :].strip()
        else:  # the daemon: a JSON log entry naming the file, with its reason
            entry = json.loads(about[0])
            assert entry["event"] in ("file_set_aside", "photo_set_aside"), entry
            assert str(entry.get("reason", "")).strip(), entry
    for name in GOOD:
        assert not [ln for ln in lines if name in ln], name


def _untouched(bad: dict[Path, bytes]) -> None:
    for path, blob in bad.items():
        assert path.read_bytes() == blob, f"{path.name} was changed"


def test_process_keeps_every_good_photo_and_names_every_bad_one(
    tmp_path: Path, bad_files: dict[str, bytes]
) -> None:
    bad = _folder(tmp_path / "p", bad_files)
    done = run_cli(tmp_path, "process", str(tmp_path / "p"), "--tz", "+02:00")
    assert done.returncode == 1, done.stdout + done.stderr
    n = len(GOOD)
    assert f"process: {n} images in {n} sequences, 0 duplicates, {len(bad)} set aside" in (
        done.stdout
    )
    _named_once(done.stderr.splitlines(), bad)
    entries = json.loads((tmp_path / "p" / "mapillary_image_description.json").read_text())
    described = sorted(Path(e["filename"]).name for e in entries if "error" not in e)
    assert described == sorted(GOOD)
    _untouched(bad)


def test_geotag_tags_or_keeps_every_good_photo_and_names_every_bad_one(
    tmp_path: Path, bad_files: dict[str, bytes]
) -> None:
    bad = _folder(tmp_path / "p", bad_files)
    # A short track around DSCN0010's GPS time: that photo is placed from it, the others
    # (outside the track) keep the position they have.
    t0 = DSCN0010_GPS_TIME - timedelta(seconds=30)
    track = [(t0 + timedelta(seconds=i), 43.4670 + i * 1e-5, 11.8851, 250.0) for i in range(61)]
    gpx = write_gpx(tmp_path / "track.gpx", track)
    done = run_cli(tmp_path, "geotag", str(tmp_path / "p"), str(gpx), "--tz", "+02:00")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"geotag: {len(GOOD) + len(bad)} images, 1 tagged, {len(bad)} set aside" in done.stdout
    assert f"{len(GOOD) - 1} outside the track kept the position" in done.stdout
    _named_once(done.stderr.splitlines(), bad)
    _untouched(bad)
    placed = read_exif(tmp_path / "p" / "gps_DSCN0010.jpg")  # from the track, 30 s in
    assert placed.lat == pytest.approx(43.4670 + 30e-5, abs=1e-6), placed
    for name in GOOD:
        if name != "gps_DSCN0010.jpg":  # kept as the camera wrote it
            assert (tmp_path / "p" / name).read_bytes() == (EXIF_CORPUS / name).read_bytes()


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


def test_the_daemon_uploads_every_good_photo_of_a_card_and_names_every_bad_one(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc], bad_files: dict[str, bytes]
) -> None:
    media = tmp_path / "media"
    card = media / "CARD1"
    bad = _folder(card / "DCIM" / "100CAMERA", bad_files)
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--mount-root", str(media))
    done = d.once(timeout=110)
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    stats = server.stats()
    assert stats["images"] == len(GOOD), done.stdout
    names = sorted(i.filename for i in server.server.store.images.values())
    assert names == sorted(GOOD)
    assert f"{len(bad)} set aside" in done.stdout
    _named_once(done.stderr.splitlines(), bad, key="name")
    _untouched(bad)
