"""The 10-minute outage of tests/test_upload_outage.py at any time scale, with figures.

    python tests/bench/bench_outage.py            # real time: the outage lasts 10 minutes
    python tests/bench/bench_outage.py 20         # 20 times faster (30 s)

Prints, for the upload through the outage and for the same upload without one (the
baseline, same run: the same half-kept body and 500, no outage): wall time, passes, passes
that gave up, requests refused, bytes sent again and bytes the server lost.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.test_upload_outage import OUTAGE_S, Figures, ride_out, serve  # noqa: E402


async def once(scale: float, outage_on: bool) -> Figures:
    with tempfile.TemporaryDirectory() as folder:
        async with serve(scale, OUTAGE_S) as served:
            figures, journal, _uuids = await ride_out(Path(folder), served, outage_on)
            await journal.aclose()
    return figures


def line(name: str, f: Figures) -> str:
    return (
        f"{name:9} wall {f.wall_s:7.2f} s  passes {f.passes}  gave up {f.passes_given_up}  "
        f"refused {f.refused:3}  sent again {f.received - f.stored:6} B  lost {f.lost:6} B  "
        f"bodies into the outage {f.bodies_into_outage}"
    )


def main() -> None:
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    base = asyncio.run(once(scale, outage_on=False))
    down = asyncio.run(once(scale, outage_on=True))
    print(f"outage of {OUTAGE_S:.0f} s of server time, time scale {scale:g}")
    print(line("baseline", base))
    print(line("outage", down))
    print(
        f"outage lasted {down.outage_s:.0f} server s; sent again / lost = "
        f"{(down.received - down.stored) / max(down.lost, 1):.2f}; "
        f"bytes on the wire vs baseline = {down.received / base.received:.4f}"
    )


if __name__ == "__main__":
    main()
