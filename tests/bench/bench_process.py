"""Our `process` and `geotag` against mapillary_tools and exiftool, on the same synthetic drive.

For each size (default 2,000 and 20,000 small JPEGs; 64x48, about 3 KB each, EXIF time in the
camera's zone +02:00 with sub-seconds, no GPS) and one GPX log of the drive (1 Hz, noisy), four
tools run one after another, each on its own fresh copy of the same files:

- ``mapillary-daemon process --gpx`` (writes the description file, leaves the photos alone)
  against mapillary_tools 0.14.7 ``process --geotag_source gpx`` (the same job; installed into
  its own venv, default settings, so it uses a worker per CPU);
- ``mapillary-daemon geotag`` (rewrites every photo: temp file, fsync, rename) against
  ``exiftool -geotag`` (rewrites every photo with -overwrite_original, no fsync).

Every tool reads the naive camera times in the same zone: ours by ``--tz``, the others through
the TZ variable (they take naive times as local time), and exiftool interpolates at the
sub-second time as ours does. Afterwards the outputs are checked against the GPS log at each
photo's true time: how many photos each tool placed and how many within 3 m, so a tool that
failed quietly cannot look fast. Peak RSS is the most any one process of the tool held (wait4)
and the most its whole process tree held at once (polled from /proc every 50 ms).

Targets (PASS/FAIL): process >= 3x mapillary_tools' images/s, geotag >= 5x exiftool's, and each
of our commands <= 150 MB peak RSS at 20,000 photos.

    python tests/bench/bench_process.py                  # 2,000 and 20,000
    python tests/bench/bench_process.py --sizes 2000     # one size
    python tests/bench/bench_process.py --quick          # 200 photos, a check that all runs
    python tests/bench/bench_process.py --tools ours     # only our commands
    git archive main | tar -x -C /tmp/main-src
    python tests/bench/bench_process.py --baseline /tmp/main-src   # ours before and after too

exiftool: Debian's libimage-exiftool-perl; when missing and running as root the script installs
it with apt-get, else that column is skipped. mapillary_tools: installed by
``tests.tools.mapillary_tools_bin`` into its own venv, or MAPILLARY_TOOLS_BIN.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import piexif

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from daemon.core.geo import distance_m  # noqa: E402
from daemon.demo import drive as sample  # noqa: E402
from tests import tools as tools_module  # noqa: E402
from tests.tools import mapillary_tools_bin  # noqa: E402

START = datetime(2024, 6, 1, 7, 0, tzinfo=UTC)
CAMERA_TZ = "+02:00"
POSIX_TZ = "<+02>-2"  # the same zone for tools that read naive times as local time
PHOTOS_PER_LAP = 184
NEAR_M = 3.0  # a photo placed this close to the log at its true time is placed right
ALL_TOOLS = ("ours", "exiftool", "mapillary_tools")
TARGET_PROCESS = 3.0
TARGET_GEOTAG = 5.0
TARGET_RSS_MB = 150.0
RSS_AT = 20_000


# -- running one tool and measuring it ----------------------------------------------------------


@dataclass
class Run:
    tool: str
    seconds: float
    cpu_seconds: float  # user + system of the tool and every process it waited for
    rss_largest_mb: float  # the most any one process of the tool held
    rss_tree_mb: float  # the most the tool's processes held at once (sampled)
    code: int
    stderr_tail: str


# Not wait4's ru_maxrss of our own child: Linux carries the parent's high-water mark into a
# child through fork/vfork and exec, so every tool would look at least as big as this script.
# GNU time forks the tool from a process of a megabyte or two, so its %M is the tool's own.
GNU_TIME = "/usr/bin/time"


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB; zeros once it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def _sample_tree(root: int, hwm: dict[int, int]) -> int:
    """RSS of ``root`` and its descendants now (KiB); records each one's high-water mark."""
    kids = _children()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        rss, high = _memory_kb(pid)
        total += rss
        hwm[pid] = max(hwm.get(pid, 0), high)
        todo += kids.get(pid, [])
    return total


def measure(tool: str, cmd: list[str], env: dict[str, str], log: Path) -> Run:
    """Run ``cmd`` to its end; wall time, CPU time, return code and peak RSS."""
    os.sync()  # the copy just made is on disk before the clock starts
    rss_file = log.with_suffix(".maxrss")
    timed = os.access(GNU_TIME, os.X_OK)
    if timed:
        cmd = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *cmd]
    tree_peak = 0
    hwm: dict[int, int] = {}
    done = threading.Event()
    with open(log, "wb") as out:
        begin = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)

        def poll() -> None:
            nonlocal tree_peak
            while not done.wait(0.05):
                tree_peak = max(tree_peak, _sample_tree(proc.pid, hwm))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - begin
        done.set()
        poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    largest = max(hwm.values(), default=0)
    if timed:
        with contextlib.suppress(OSError, ValueError):
            largest = max(largest, int(rss_file.read_text().split()[-1]))
    cpu = usage.ru_utime + usage.ru_stime
    tree = max(tree_peak, largest)
    return Run(tool, seconds, cpu, largest / 1024, tree / 1024, proc.returncode, "\n".join(tail))


# -- the tools ----------------------------------------------------------------------------------


def tool_env(repo: Path = REPO) -> dict[str, str]:
    env = dict(os.environ, TZ=POSIX_TZ, PYTHONPATH=str(repo))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def find_exiftool(install: bool) -> str | None:
    found = shutil.which("exiftool")
    if found or not install:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    print("exiftool missing: apt-get install -y libimage-exiftool-perl ...", flush=True)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if subprocess.run(["apt-get", "install", "-y", "libimage-exiftool-perl"], **quiet).returncode:
        subprocess.run(["apt-get", "update"], **quiet)
        subprocess.run(["apt-get", "install", "-y", "libimage-exiftool-perl"], **quiet)
    return shutil.which("exiftool")


def ours_process(folder: Path, gpx: Path) -> list[str]:
    return [sys.executable, "-m", "daemon", "process", str(folder), "--gpx", str(gpx),
            "--tz", CAMERA_TZ]  # fmt: skip


def ours_geotag(folder: Path, gpx: Path) -> list[str]:
    return [sys.executable, "-m", "daemon", "geotag", str(folder), str(gpx), "--tz", CAMERA_TZ]


def mt_process(binary: str, folder: Path, gpx: Path) -> list[str]:
    return [binary, "process", str(folder), "--geotag_source", "gpx",
            "--geotag_source_path", str(gpx)]  # fmt: skip


def exiftool_geotag(binary: str, folder: Path, gpx: Path) -> list[str]:
    # Interpolate at the sub-second time, as ours does (DateTimeOriginal alone is up to 1 s off).
    return [binary, "-q", "-q", "-m", "-overwrite_original", "-geotag", str(gpx),
            "-geotime<SubSecDateTimeOriginal", str(folder)]  # fmt: skip


# -- the drive and the checks of each tool's output ---------------------------------------------


def make_drive(n: int, root: Path) -> tuple[Path, Path, dict[str, sample.Photo]]:
    """``root/photos`` with n JPEGs, ``root/track.gpx``; and the photos by file name."""
    laps = math.ceil(n / PHOTOS_PER_LAP)
    drive = sample.plan_drive(START, laps=laps)
    photos = drive.photos[:n]
    if len(photos) < n:
        raise SystemExit(f"the drive has {len(photos)} photos, fewer than {n}")
    cut = sample.Drive(drive.start, drive.origin, drive.phases, photos, drive.track)
    paths = sample.write_drive(cut, root / "photos", camera_tz=CAMERA_TZ, gpx_name=None)
    gpx = root / "track.gpx"
    gpx.write_text(drive.gpx_text(), encoding="utf-8")
    return root / "photos", gpx, {p.name: ph for p, ph in zip(paths, photos, strict=True)}


@dataclass
class Placed:
    placed: int = 0  # photos the tool gave a position
    near: int = 0  # of them, within NEAR_M of the GPS log at the photo's true time
    duplicates: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def text(self, n: int) -> str:
        parts = [f"placed {self.placed}/{n}", f"{self.near} within {NEAR_M:g} m"]
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicates")
        parts += [f"{k}: {v}" for k, v in sorted(self.errors.items())]
        return ", ".join(parts)

    def valid(self, n: int) -> bool:
        """Did the tool do the job on (almost) every photo, and in the right place?"""
        return self.placed + self.duplicates >= 0.95 * n and self.near >= 0.95 * self.placed


def _near(photo: sample.Photo, lat: float, lon: float) -> bool:
    return distance_m(lat, lon, photo.gps_lat, photo.gps_lon) <= NEAR_M


def _dms(value: tuple) -> float:
    d, m, s = (a / b for a, b in value)
    return d + m / 60 + s / 3600


def check_files(folder: Path, truth: dict[str, sample.Photo]) -> Placed:
    """GPS tags in the rewritten photos, read with piexif (not our reader)."""
    result = Placed()
    for name, photo in truth.items():
        try:
            gps = piexif.load(str(folder / name)).get("GPS", {})
        except Exception as exc:  # a tool that broke a file: count it, keep checking the rest
            result.errors[type(exc).__name__] = result.errors.get(type(exc).__name__, 0) + 1
            continue
        g = piexif.GPSIFD
        if g.GPSLatitude not in gps or g.GPSLongitude not in gps:
            continue
        lat = _dms(gps[g.GPSLatitude]) * (-1 if gps.get(g.GPSLatitudeRef) == b"S" else 1)
        lon = _dms(gps[g.GPSLongitude]) * (-1 if gps.get(g.GPSLongitudeRef) == b"W" else 1)
        result.placed += 1
        result.near += _near(photo, lat, lon)
    return result


def check_description(path: Path, truth: dict[str, sample.Photo]) -> Placed:
    """Positions in a mapillary_tools-format description file."""
    result = Placed()
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        result.errors[f"no description file ({exc.__class__.__name__})"] = 1
        return result
    for entry in entries:
        photo = truth.get(Path(entry.get("filename", "")).name)
        if photo is None:
            continue
        error = entry.get("error")
        if error:
            kind = error.get("type", "?")
            if "Duplicat" in kind:
                result.duplicates += 1
            else:
                result.errors[kind] = result.errors.get(kind, 0) + 1
            continue
        if "MAPLatitude" in entry and "MAPLongitude" in entry:
            result.placed += 1
            result.near += _near(photo, entry["MAPLatitude"], entry["MAPLongitude"])
    return result


# -- one size -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    run: Run
    placed: Placed


def run_tool(
    label: str,
    cmd_for: object,
    base: Path,
    gpx: Path,
    truth: dict[str, sample.Photo],
    work: Path,
    check: str,
    repo: Path = REPO,
) -> Outcome:
    folder = work / label.replace(" ", "_").replace("(", "").replace(")", "")
    shutil.copytree(base, folder)
    cmd = cmd_for(folder, gpx)  # type: ignore[operator]
    run = measure(label, cmd, tool_env(repo), folder.with_suffix(".log"))
    if check == "files":
        placed = check_files(folder, truth)
    else:
        placed = check_description(folder / "mapillary_image_description.json", truth)
    shutil.rmtree(folder)
    n = len(truth)
    print(
        f"  {label:<24} {run.seconds:7.2f} s {n / run.seconds:6.0f} img/s  CPU {run.cpu_seconds:6.1f} s"
        f"  RSS {run.rss_largest_mb:6.1f} MB (tree {run.rss_tree_mb:6.1f})"
        f"  exit {run.code}  {placed.text(n)}",
        flush=True,
    )
    if not placed.valid(n):
        print(f"    ! {label} did not do the job; its log ends:\n    {run.stderr_tail}")
    return Outcome(run, placed)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def compare(what: str, ours: Outcome | None, theirs: Outcome | None, n: int, target: float) -> str:
    if ours is None or theirs is None:
        return f"  {what}: skipped (a tool is missing)"
    ratio = theirs.run.seconds / ours.run.seconds
    valid = ours.placed.valid(n) and theirs.placed.valid(n)
    state = verdict(ratio >= target) if valid else "INVALID (a tool did not place the photos)"
    cpu = theirs.run.cpu_seconds / max(ours.run.cpu_seconds, 1e-9)
    return f"  {what}: {ratio:.1f}x (target >= {target:g}x) {state}; CPU time {cpu:.1f}x less"


def bench_size(
    n: int,
    work: Path,
    tools: set[str],
    mt: str | None,
    et: str | None,
    baseline: Path | None = None,
) -> list[str]:
    """Run every tool on n photos; returns the summary lines. With ``baseline`` (the source
    tree of another version of ours), its ``process`` runs too, just before ours."""
    begin = time.perf_counter()
    base, gpx, truth = make_drive(n, work / "drive")
    print(f"\n{n:,} photos, {sum(p.stat().st_size for p in base.iterdir()) / 1e6:.1f} MB,"
          f" GPX {gpx.stat().st_size / 1e6:.1f} MB (made in {time.perf_counter() - begin:.1f} s)",
          flush=True)  # fmt: skip
    print(f"  load average before: {os.getloadavg()[0]:.1f} (other work on this machine"
          " slows every tool)")  # fmt: skip
    out: dict[str, Outcome] = {}
    if "ours" in tools and baseline is not None:
        out["baseline process"] = run_tool(
            "ours process (baseline)", ours_process, base, gpx, truth, work, "desc", baseline
        )
    if "ours" in tools:
        out["ours process"] = run_tool("ours process", ours_process, base, gpx, truth, work, "desc")
    if "mapillary_tools" in tools and mt:
        out["mt process"] = run_tool(
            "mapillary_tools process", lambda f, g: mt_process(mt, f, g), base, gpx, truth, work,
            "desc",
        )  # fmt: skip
    if "ours" in tools:
        out["ours geotag"] = run_tool("ours geotag", ours_geotag, base, gpx, truth, work, "files")
    if "exiftool" in tools and et:
        out["exiftool"] = run_tool(
            "exiftool -geotag", lambda f, g: exiftool_geotag(et, f, g), base, gpx, truth, work,
            "files",
        )  # fmt: skip
    shutil.rmtree(work / "drive")
    lines = [f"{n:,} photos:"]
    lines.append(compare("process vs mapillary_tools", out.get("ours process"),
                         out.get("mt process"), n, TARGET_PROCESS))  # fmt: skip
    if "baseline process" in out and "ours process" in out:
        before, after = out["baseline process"].run.seconds, out["ours process"].run.seconds
        lines.append(f"  process, this version vs the baseline: {after:.2f} s vs {before:.2f} s"
                     f" ({before / after:.2f}x)")  # fmt: skip
    lines.append(compare("geotag vs exiftool", out.get("ours geotag"), out.get("exiftool"), n,
                         TARGET_GEOTAG))  # fmt: skip
    for key in ("ours process", "ours geotag"):
        if key in out:
            rss = out[key].run.rss_tree_mb
            judged = verdict(rss <= TARGET_RSS_MB) if n >= RSS_AT else "(target applies at 20,000)"
            lines.append(f"  {key} peak RSS: {rss:.1f} MB (target <= {TARGET_RSS_MB:g}) {judged}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="2000,20000", help="photo counts, comma-separated")
    p.add_argument("--quick", action="store_true", help="one tiny run of 200 photos")
    p.add_argument("--tools", default=",".join(ALL_TOOLS), help=f"of {','.join(ALL_TOOLS)}")
    p.add_argument("--no-install", action="store_true", help="never apt-get or pip install")
    p.add_argument("--dir", type=Path, help="work here (default: a temporary folder)")
    p.add_argument("--baseline", type=Path,
                   help="source tree of another version of ours to time too (git archive)")  # fmt: skip
    args = p.parse_args()
    sizes = [200] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    tools = {t.strip() for t in args.tools.split(",") if t.strip()}
    if tools - set(ALL_TOOLS):
        p.error(f"unknown tools: {', '.join(sorted(tools - set(ALL_TOOLS)))}")

    et = find_exiftool(not args.no_install) if "exiftool" in tools else None
    if "exiftool" in tools and et is None:
        print("exiftool: not found (install libimage-exiftool-perl, as root the script can);"
              " its column is skipped")  # fmt: skip
    mt = None
    if "mapillary_tools" in tools:
        if args.no_install and not os.environ.get("MAPILLARY_TOOLS_BIN"):
            print("mapillary_tools: --no-install and no MAPILLARY_TOOLS_BIN; its column is skipped")
        else:
            mt = mapillary_tools_bin()
            if mt is None:
                print(f"mapillary_tools 0.14.7 unusable ({tools_module.last_failure});"
                      " its column is skipped")  # fmt: skip
    versions = [f"python {platform.python_version()}", f"{os.cpu_count()} CPUs"]
    if et:
        versions.append("exiftool " + subprocess.run([et, "-ver"], capture_output=True,
                                                     text=True).stdout.strip())  # fmt: skip
    if mt:
        versions.append(subprocess.run([mt, "--version"], capture_output=True,
                                       text=True).stdout.strip())  # fmt: skip
    print("; ".join(versions))

    summary: list[str] = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_process.") as tmp:
        for n in sizes:
            summary += bench_size(n, Path(tmp), tools, mt, et, args.baseline)
    print("\nsummary")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
