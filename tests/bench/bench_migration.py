"""Journal migration 4 (clusters, cluster_files) on an old journal full of finished sequences:
how long the first start of the new version takes to open it, against the first form of its
``cluster_files`` fill (each file's position a count of its sequence's earlier files) run on a
copy of the same journal in the same run.

    python tests/bench/bench_migration.py
    python tests/bench/bench_migration.py --photos 50000 --per-sequence 2500
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from daemon.journal import MIGRATIONS, Journal  # noqa: E402

QUADRATIC_FILL = """INSERT INTO cluster_files (file_hash, cluster_id, position)
    SELECT f.hash, s.cluster_id, (SELECT count(*) FROM files g
        WHERE g.sequence_id = f.sequence_id AND g.state = 'finished'
        AND g.seq_index < f.seq_index)
    FROM files f JOIN sequences s ON s.uuid = f.sequence_id
    WHERE s.state = 'finished' AND s.cluster_id IS NOT NULL AND f.state = 'finished'"""


def old_journal(path: Path, photos: int, per_sequence: int) -> None:
    """A version-3 journal whose photos are all finished, in sequences of ``per_sequence``."""
    conn = sqlite3.connect(path)
    for step in MIGRATIONS[:3]:
        for statement in step:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    n = 0
    for i in range(photos // per_sequence):
        seq = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO sequences (uuid, state, cluster_id, created_at, finished_at) "
            "VALUES (?, 'finished', ?, 1.0, 2.0)",
            (seq, str(10**12 + i)),
        )
        rows = []
        for k in range(per_sequence):
            n += 1
            rows.append((f"{n:064x}", seq, k))
        conn.executemany(
            "INSERT INTO files (hash, state, source_kind, source_root, size, mtime, metadata, "
            "sequence_id, seq_index, handle, created_at, updated_at) "
            "VALUES (?, 'finished', 'watch', '/photos', 4000000, 1.0, '{}', ?, ?, 'h', 1.0, 1.0)",
            rows,
        )
    conn.commit()
    conn.close()


def quadratic(path: Path) -> float:
    """Migration 4 with its first fill, as one transaction (as the journal runs it)."""
    conn = sqlite3.connect(path, isolation_level=None)
    start = time.perf_counter()
    conn.execute("BEGIN")
    for statement in MIGRATIONS[3]:
        conn.execute(QUADRATIC_FILL if "INTO cluster_files" in statement else statement)
    conn.execute("COMMIT")
    took = time.perf_counter() - start
    conn.close()
    return took


def ours(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    with Journal.open(path) as journal:
        took = time.perf_counter() - start
        covered = journal._conn.execute("SELECT count(*) FROM cluster_files").fetchone()[0]
    return took, covered


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=20000)
    ap.add_argument("--per-sequence", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_migration_") as tmp:
        made = Path(tmp) / "old.sqlite3"
        old_journal(made, args.photos, args.per_sequence)
        first, now = Path(tmp) / "first.sqlite3", Path(tmp) / "now.sqlite3"
        shutil.copy(made, first)
        shutil.copy(made, now)
        before = quadratic(first)
        after, covered = ours(now)
    print(f"old journal: {args.photos} finished photos in sequences of {args.per_sequence}")
    print(f"first fill (count of earlier files): {before:.2f} s")
    print(f"Journal.open with migration 4 now:   {after:.2f} s ({covered} photos covered)")
    print(f"ratio: {before / after:.1f}x")


if __name__ == "__main__":
    main()
