"""The reader and writer against 20,000+ damaged camera files. Prints figures; exits 1 when a
target is missed.

Each mutant of a ../shared/corpus/exif photo (the mutator of tests/test_exif_fuzz.py, fixed
seed) is written to a file, read with read_exif, then tagged (tagged_bytes; every 40th with
write_description, atomic and fsynced, on the file itself). Targets: 0 exceptions other than
MediaError (OSError for a write), 0 mutants taking over 5 s (an alarm stops one that hangs),
peak RSS under 150 MB, every file we refuse byte-identical afterwards, and every readable
photo reading back the same once tagged.

    python tests/bench/bench_exif_fuzz.py                 # 24,000 mutants
    python tests/bench/bench_exif_fuzz.py --mutants 2000 --seed 7
"""

from __future__ import annotations

import argparse
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from tests import test_exif_fuzz as fuzz  # noqa: E402
from tests.test_exif_read import CORPUS  # noqa: E402

RSS_LIMIT_MB = 150


class Hang(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=24_000)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    if not CORPUS.is_dir():
        print(f"the camera corpus is not here ({CORPUS}); set MAPILLARY_TEST_CORPUS")
        return 2
    seeds = fuzz.corpus_seeds()
    signal.signal(signal.SIGALRM, _alarm)
    out = fuzz.Outcome()
    hangs = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for n, (index, what, blob) in enumerate(fuzz.mutants(seeds, args.mutants, args.seed)):
            label = f"mutant {n} of seed {index} ({what})"
            signal.setitimer(signal.ITIMER_REAL, fuzz.HANG_S)
            try:
                fuzz.check(Path(folder) / f"m{n % 8}.jpg", blob, label, out, n % 40 == 0)
            except Hang:
                hangs += 1
                out.failures.append(f"{label}: stopped after {fuzz.HANG_S:.0f} s")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    elapsed = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    exceptions = sum("raised" in f for f in out.failures)
    changed = sum("changed the file" in f or "was changed" in f for f in out.failures)
    differ = sum("reads back differently" in f for f in out.failures)
    print(
        f"{args.mutants:,} mutants of {len(seeds)} corpus photos (seed {args.seed}) in {elapsed:.1f} s"
    )
    print(f"  read: {out.read:,}   set aside with a reason: {out.refused:,}")
    print(f"  tagged: {out.written:,}   tagging refused: {out.write_refused:,}")
    print(f"  uncaught exceptions: {exceptions}   hangs > {fuzz.HANG_S:.0f} s: {hangs}")
    print(f"  slowest mutant: {out.slowest * 1000:.0f} ms   peak RSS: {rss_mb:.1f} MB")
    print(f"  refused files changed: {changed}   tagged photos reading back differently: {differ}")
    print("  most common reasons:")
    for reason, count in sorted(out.reasons.items(), key=lambda kv: -kv[1])[:8]:
        print(f"    {count:6,}  {reason}")
    for failure in out.failures[:20]:
        print("  FAIL", failure)
    ok = not out.failures and rss_mb < RSS_LIMIT_MB
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
