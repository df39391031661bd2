"""NMEA 0183 logs as tracks: every corpus log (gpsd's test logs) gives gpsd's fixes; checksums,
noise, talkers and midnight handled."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime
from functools import reduce
from pathlib import Path

import pytest

from daemon.intake.complete import verdict
from daemon.media.gpx import GpxError, load_gpx_files
from daemon.media.nmea import _CHUNK, load_nmea
from tests.corpus import CORPUS

SHARED = CORPUS
NMEA_CORPUS = SHARED / "nmea"


def sentence(body: str) -> str:
    return f"${body}*{reduce(lambda a, c: a ^ ord(c), body, 0):02X}\r\n"


def rmc(talker: str, hms: str, ddmmyy: str, lat: str = "5230.0000", lon: str = "01324.0000") -> str:
    return sentence(f"{talker}RMC,{hms},A,{lat},N,{lon},E,10.0,90.0,{ddmmyy},,,A")


def gga(
    talker: str,
    hms: str,
    alt: str = "35.5",
    q: str = "1",
    lat: str = "5230.0000",
    hdop: str = "0.9",
) -> str:
    return sentence(f"{talker}GGA,{hms},{lat},N,01324.0000,E,{q},08,{hdop},{alt},M,40.0,M,,")


def void_rmc(talker: str, hms: str, ddmmyy: str) -> str:
    """An RMC with status V (no fix) that still carries a position, as many receivers write."""
    return sentence(f"{talker}RMC,{hms},V,5230.0000,N,01324.0000,E,,,{ddmmyy},,,N")


def gll(talker: str, hms: str, lat: str = "5230.0000", status: str = "A", mode: str = "A") -> str:
    """A GLL of NMEA 2.3 (mode letter last; an empty ``mode`` writes the older form without)."""
    tail = f",{mode}" if mode else ""
    return sentence(f"{talker}GLL,{lat},N,01324.0000,E,{hms},{status}{tail}")


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()


def test_any_talker_rmc_with_gga_altitude(tmp_path: Path) -> None:
    p = tmp_path / "ublox.nmea"
    p.write_text(
        rmc("GN", "235959.00", "311224")
        + gga("GN", "235959.00")
        + rmc("BD", "000000.00", "010125")
        + gga("GA", "000000.00", alt="36.0")
    )
    track = load_nmea(p)
    assert list(track.times) == [at(2024, 12, 31, 23, 59, 59), at(2025, 1, 1)]
    assert track.lats[0] == pytest.approx(52.5) and track.lons[0] == pytest.approx(13.4)
    assert list(track.eles) == [35.5, 36.0] and track.notes == []


def test_gga_past_midnight_takes_the_next_day(tmp_path: Path) -> None:
    p = tmp_path / "a.nmea"
    p.write_text(rmc("GP", "235959", "311224") + gga("GP", "000001", lat="5230.0060"))
    track = load_nmea(p)
    assert list(track.times) == [at(2024, 12, 31, 23, 59, 59), at(2025, 1, 1, 0, 0, 1)]


def test_gga_before_the_first_date_takes_the_date_that_follows(tmp_path: Path) -> None:
    """A receiver that sends GGA first in each cycle: the first fix (and its altitude) waits for
    the date of the RMC after it, the day before when that RMC is past midnight."""
    p = tmp_path / "sirf.log"
    p.write_text(gga("GP", "235958", alt="20.0") + gga("GP", "235959", alt="21.0"))
    with pytest.raises(GpxError, match="no fix with a date"):
        load_nmea(p)  # GGA alone gives no date
    p.write_text(p.read_text() + rmc("GP", "000000", "010125") + gga("GP", "000000", alt="22.0"))
    track = load_nmea(p)
    assert list(track.times) == [
        at(2024, 12, 31, 23, 59, 58),
        at(2024, 12, 31, 23, 59, 59),
        at(2025, 1, 1),
    ]
    assert list(track.eles) == [20.0, 21.0, 22.0] and track.notes == []


def test_bad_checksums_and_noise_are_skipped_and_counted(tmp_path: Path) -> None:
    good = [rmc("GP", f"1200{s:02d}", "010624", lat=f"5230.{s:04d}") for s in range(10)]
    broken = good[3].replace("5230.0003", "5230.0009")  # a flipped digit, old checksum
    data = (
        "".join(good[:3]).encode()
        + b"\xb5b\x01\x07\x5c\x00\xff\x00binary UBX\x00\r\n"  # a u-blox binary message
        + broken.encode()
        + b"\x00\x00garbage$GPRMC,broken"  # a sentence cut by noise
        + ("".join(good[4:])).encode()
        + sentence("GPRMC,120010,V,,,,,,,010624,,,N").encode()  # no fix
        + gga("GP", "120011", q="0").encode()
    )
    p = tmp_path / "noise.log"
    p.write_bytes(data)
    track = load_nmea(p)
    assert len(track) == 9
    assert at(2024, 6, 1, 12, 0, 3) not in track.times
    assert track.notes == [f"{p}: sentences dropped: 1 bad checksum, 1 no checksum"]


def test_a_second_with_hdop_over_the_limit_gives_no_fix_whichever_sentence_comes_first(
    tmp_path: Path,
) -> None:
    """A GGA (or GNS) with HDOP over 20 drops the RMC fix of its second, read before or after
    it; 17.5 (4 satellites in the corpus's myguide-3100 log) and 20 itself are kept."""
    p = tmp_path / "canyon.nmea"
    p.write_text(
        rmc("GN", "120000.00", "010624")
        + gga("GN", "120000.00", hdop="17.5")
        + rmc("GN", "120001.00", "010624")
        + gga("GN", "120001.00", hdop="20.1")  # after its RMC: undoes it
        + gga("GN", "120002.00", hdop="99.99")  # before its RMC: the RMC is ignored
        + rmc("GN", "120002.00", "010624")
        + sentence("GNGNS,120003.00,5230.0000,N,01324.0000,E,AA,08,25.0,35.5,40.0,,,V")
        + rmc("GN", "120003.00", "010624")
        + rmc("GN", "120004.00", "010624")
        + gga("GN", "120004.00", hdop="20.0")
        + gga("GN", "120005.00", hdop="")  # no HDOP given: no veto
        + rmc("GN", "120005.00", "010624")
    )
    track = load_nmea(p)
    assert [t - at(2024, 6, 1, 12) for t in track.times] == [0, 4, 5]
    assert list(track.eles) == [35.5, 35.5, 35.5]
    assert track.notes == [f"{p}: sentences dropped: 3 HDOP over 20"]


def test_an_rmc_void_drops_the_gga_fix_of_its_second_in_either_order(tmp_path: Path) -> None:
    """RMC status V and a GGA with a fix in the same second: no fix, whichever came first, also
    for a GGA held for a date; each such GGA is counted once, the void seconds around it not."""
    p = tmp_path / "void.nmea"
    p.write_text(
        gga("GP", "115958")  # held for a date, then undone by its RMC
        + void_rmc("GP", "115958", "010624")
        + void_rmc("GP", "115959", "010624")  # no fix anywhere: not counted
        + gga("GP", "115959", q="0")
        + rmc("GP", "120000", "010624")
        + gga("GP", "120000", alt="40.0")
        + gga("GP", "120001")  # a fix, then its RMC says void
        + void_rmc("GP", "120001", "010624")
        + void_rmc("GP", "120002", "010624")  # void, then its GGA claims a fix
        + gga("GP", "120002")
        + rmc("GP", "120003", "010624")
    )
    track = load_nmea(p)
    assert [t - at(2024, 6, 1, 12) for t in track.times] == [0, 3]
    assert track.eles[0] == 40.0 and math.isnan(track.eles[1])
    assert track.notes == [f"{p}: sentences dropped: 3 void in RMC"]


def test_a_vetoed_fix_among_recent_ones_leaves_the_others_in_place(tmp_path: Path) -> None:
    """A late GGA undoes the fix of its own second only, though later seconds came between (a
    log with sentences out of order): the fixes around it keep their positions and altitudes."""
    p = tmp_path / "late.nmea"
    p.write_text(
        "".join(rmc("GN", f"1200{s:02d}", "010624", lat=f"5230.{s:04d}") for s in range(6))
        + gga("GN", "120002", hdop="45.0", lat="5230.0002")
        + "".join(gga("GN", f"1200{s:02d}", alt=f"{s}.5", lat=f"5230.{s:04d}") for s in (3, 4))
    )
    track = load_nmea(p)
    assert [t - at(2024, 6, 1, 12) for t in track.times] == [0, 1, 3, 4, 5]
    assert [round((lat - 52.5) * 60, 4) for lat in track.lats] == [
        0,
        0.0001,
        0.0003,
        0.0004,
        0.0005,
    ]
    assert [e if math.isfinite(e) else None for e in track.eles] == [None, None, 3.5, 4.5, None]


def test_gll_gives_the_fixes_of_the_seconds_it_alone_covers(tmp_path: Path) -> None:
    """A Garmin 48 writes RMC and GGA at even seconds and GLL alone at odd ones (its own line
    in the corpus, NMEA 2.0 without a mode letter): every second is a fix, the GLL ones
    without altitude; a GLL after the GGA of its cycle (u-blox) moves the fix, its altitude
    stays."""
    p = tmp_path / "garmin48.log"
    p.write_text(
        rmc("GP", "225308", "060601")
        + gga("GP", "225308", alt="14.7")
        + gll("GP", "225309", lat="5230.0010", mode="")
        + rmc("GP", "225310", "060601")
        + gga("GP", "225310", alt="14.6")
        + gll("GP", "225310", lat="5230.0020")
        + sentence("GPGLL,4527.458,S,16709.165,E,225311,A")  # the corpus's Garmin 48 text
    )
    track = load_nmea(p)
    assert [t - at(2001, 6, 6, 22, 53, 8) for t in track.times] == [0, 1, 2, 3]
    assert [round((lat - 52.5) * 60, 4) for lat in track.lats[:3]] == [0, 0.001, 0.002]
    assert track.lats[3] == pytest.approx(-45.457633333) and track.lons[3] == pytest.approx(
        167.15275
    )
    assert [e if math.isfinite(e) else None for e in track.eles] == [14.7, None, 14.6, None]
    assert track.notes == []


def test_gll_void_or_not_valid_or_without_time_gives_no_fix(tmp_path: Path) -> None:
    """Status V, mode N (NMEA 2.3: not valid, whatever the status) and the old GLL without
    time or status give nothing, and are not dropped sentences (receivers send them every
    second before a fix)."""
    p = tmp_path / "cold.log"
    p.write_text(
        rmc("GP", "120000", "010624")
        + gll("GP", "120001", status="V", mode="N")
        + gll("GP", "120002", mode="N")
        + sentence("GPGLL,,,,,,V,N")
        + sentence("GPGLL,5230.0000,N,01324.0000,E")
        + gll("GP", "120003", mode="D")  # differential: a fix
        + gll("GP", "120004", status="V", mode="")
    )
    track = load_nmea(p)
    assert [t - at(2024, 6, 1, 12) for t in track.times] == [0, 3] and track.notes == []


def test_gll_is_dated_as_gga_is_across_midnight_and_before_the_first_date(
    tmp_path: Path,
) -> None:
    """GLL has no date: the fixes before the first RMC wait for it (the day before when that
    RMC is past midnight), one past midnight takes the next day; a log of GLL alone has no
    fix with a date."""
    p = tmp_path / "gll.log"
    p.write_text(gll("GN", "235958.00") + gll("GN", "235959.00"))
    with pytest.raises(GpxError, match="no fix with a date"):
        load_nmea(p)
    p.write_text(p.read_text() + rmc("GN", "000000.00", "010125") + gll("GN", "000001.00"))
    track = load_nmea(p)
    assert list(track.times) == [
        at(2024, 12, 31, 23, 59, 58),
        at(2024, 12, 31, 23, 59, 59),
        at(2025, 1, 1),
        at(2025, 1, 1, 0, 0, 1),
    ]
    zda = sentence("GNZDA,235959.00,31,12,2024,00,00")
    p.write_text(zda + gll("GN", "235959.50") + gll("GN", "000000.50"))
    track = load_nmea(p)
    assert list(track.times) == [at(2024, 12, 31, 23, 59, 59) + 0.5, at(2025, 1, 1) + 0.5]


def test_an_rmc_void_or_a_gga_over_the_hdop_limit_drops_the_gll_fix_of_its_second(
    tmp_path: Path,
) -> None:
    """The vetoes of RMC and GGA hold for GLL in either order, also for a GLL held for a date;
    a second claimed by both GGA and GLL is counted once."""
    p = tmp_path / "veto.log"
    p.write_text(
        gll("GP", "115959")  # held for a date, undone by its RMC
        + void_rmc("GP", "115959", "010624")
        + rmc("GP", "120000", "010624")
        + void_rmc("GP", "120001", "010624")
        + gll("GP", "120001")  # after the void RMC: ignored
        + gll("GP", "120002")
        + gga("GP", "120002", hdop="25.0")  # undoes the GLL before it
        + gga("GP", "120003", hdop="99.99")
        + gll("GP", "120003")  # after the GGA over the limit: ignored, counted once
        + gll("GP", "120004")
    )
    track = load_nmea(p)
    assert [t - at(2024, 6, 1, 12) for t in track.times] == [0, 4]
    assert track.notes == [f"{p}: sentences dropped: 2 HDOP over 20, 2 void in RMC"]


def _drive(n: int) -> str:
    """n seconds of a u-blox log (RMC then GGA), the fixes 11 cm apart."""
    out = []
    for s in range(n):
        hms, lat = f"12{s // 60:02d}{s % 60:02d}.00", f"5230.{s:04d}"
        out.append(rmc("GN", hms, "010624", lat=lat) + gga("GN", hms, f"{s}.5", lat=lat))
    return "".join(out)


def test_a_sentence_across_a_chunk_boundary_is_read_whole(tmp_path: Path) -> None:
    """The log is read a chunk at a time: wherever a chunk ends (mid-sentence, between CR and
    LF), every fix is there with its altitude, and nothing is counted as dropped."""
    drive = _drive(40).encode()
    pair = len(drive) // 40
    p = tmp_path / "gps.log"
    for shift in range(pair + 2):  # the boundary at each byte of one RMC+GGA pair
        pad = b"# " + b"x" * (_CHUNK - 1200 + shift) + b"\r\n"
        p.write_bytes(pad + drive)
        track = load_nmea(p)
        assert [t - at(2024, 6, 1, 12) for t in track.times] == list(range(40)), shift
        assert list(track.eles) == [s + 0.5 for s in range(40)], shift
        assert track.lats[-1] == pytest.approx(52.5 + 0.0039 / 60) and track.notes == [], shift


def test_a_sentence_in_a_long_run_of_binary_noise_is_found_wherever_it_sits(
    tmp_path: Path,
) -> None:
    """Noise without a line end (a binary protocol on the port) is cut into pieces to bound the
    memory held; a sentence is never split by a cut, wherever in the run it sits."""
    rng = random.Random(7)
    noise = bytearray(
        rng.choice([b for b in range(256) if b not in b"\r\n"]) for _ in range(140_000)
    )
    one = rmc("GP", "120000", "010624").strip().encode()
    p = tmp_path / "noise.log"
    for where in range(2 * _CHUNK - 400, 2 * _CHUNK + 20, 3):
        data = bytearray(noise)
        data[where : where + len(one)] = one
        p.write_bytes(bytes(data))
        track = load_nmea(p)
        assert list(track.times) == [at(2024, 6, 1, 12)], where


def test_a_log_without_fix_or_sentences_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "x.nmea"
    p.write_text(sentence("GPRMC,120010,V,,,,,,,010624,,,N"))
    with pytest.raises(GpxError, match="no fix"):
        load_nmea(p)
    p.write_text("hello\n")
    with pytest.raises(GpxError, match=f"^{p}: not an NMEA log"):
        load_gpx_files([p])


def test_the_completeness_check_knows_nmea(tmp_path: Path) -> None:
    nmea = tmp_path / "gps.log"
    nmea.write_text(rmc("GN", "120000", "010624") + rmc("GN", "120001", "010624")[:-10])
    assert verdict(nmea).complete
    other = tmp_path / "app.log"
    other.write_text("2024-06-01 started\n")
    found = verdict(other)
    assert found.hopeless and "no NMEA sentence" in (found.reason or "")
    gpx = tmp_path / "track.txt"
    gpx.write_text("<gpx><trk>")
    assert verdict(gpx).complete


def _gpsd_fixes(chk: Path) -> dict[float, list[tuple[float, float]]]:
    out: dict[float, list[tuple[float, float]]] = {}
    for line in chk.read_text(errors="replace").splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("class") == "TPV" and "time" in r and "lat" in r and r.get("mode", 0) >= 2:
            t = datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp()
            out.setdefault(t, []).append((r["lat"], r["lon"]))
    return out


@pytest.mark.skipif(not NMEA_CORPUS.is_dir(), reason=f"the NMEA corpus is not here ({NMEA_CORPUS})")
def test_every_corpus_log_gives_gpsds_fixes() -> None:
    logs = sorted(NMEA_CORPUS.glob("*.log"))
    assert logs
    compared = missed = total = 0
    for log in logs:
        theirs = _gpsd_fixes(log.with_name(log.name + ".chk"))
        try:
            track = load_nmea(log)
        except GpxError:
            assert not theirs, log.name  # we find no fix only where gpsd reports none
            continue
        for t, lat, lon in zip(track.times, track.lats, track.lons, strict=True):
            assert math.isfinite(lat) and math.isfinite(lon)
            if t in theirs:
                assert any(abs(lat - a) < 1e-6 and abs(lon - b) < 1e-6 for a, b in theirs[t]), (
                    log.name,
                    t,
                )
                compared += 1
        missed += len(set(theirs) - set(track.times))
        total += len(theirs)
    # every gpsd fix is ours, at the same place (684 in 26 logs; 7 of them are GLL alone)
    assert total > 600 and missed == 0 and compared == total, (compared, missed, total)
