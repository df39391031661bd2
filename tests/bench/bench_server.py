"""Figures for the embedded server run as `mapillary-daemon server` in a subprocess.

Prints upload throughput into it (several connections, chunked bodies), the time to finish one
sequence of many images, images-search latency over everything uploaded, thumbnail time, and
the server's peak RSS. Run: python tests/bench/bench_server.py [--images 2000] [--big 40]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import piexif
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": "OAuth bench-token"}


def tagged(index: int, size: tuple[int, int], noise: bool) -> bytes:
    if noise:
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        image = Image.new("RGB", size, (index % 256, (index // 256) % 256, 7))
    desc = {
        "MAPLatitude": 50.0 + (index % 100) * 0.001,
        "MAPLongitude": 8.0 + (index // 100) * 0.001,
        "MAPCaptureTime": f"2024_01_01_{index // 3600 % 24:02d}_{index // 60 % 60:02d}_{index % 60:02d}_000",
        "MAPFilename": f"IMG_{index:06d}.jpg",
    }
    exif = piexif.dump({"0th": {piexif.ImageIFD.ImageDescription: json.dumps(desc).encode()}})
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


async def put(session: aiohttp.ClientSession, upload: str, key: str, data: bytes) -> str:
    async def chunks():
        for start in range(0, len(data), 256 * 1024):
            yield data[start : start + 256 * 1024]

    headers = {"Offset": "0", "X-Entity-Name": key}
    async with session.post(f"{upload}/{key}", data=chunks(), headers=headers) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"{key}: {resp.status} {body}")
        return body["h"]


async def put_all(session, upload, items: list[bytes], concurrency: int) -> list[str]:
    gate = asyncio.Semaphore(concurrency)

    async def one(data: bytes) -> str:
        async with gate:
            return await put(
                session, upload, f"mly_tools_{hashlib.md5(data).hexdigest()}.jpg", data
            )

    return list(await asyncio.gather(*(one(d) for d in items)))


async def finish(session, graph: str, upload: str, handles: list[str], name: str) -> float:
    body = json.dumps({"image_handles": handles, "upload_type": "images", "version": "1"})
    manifest = await put(session, upload, f"uuid_{name}.json", body.encode())
    started = time.perf_counter()
    payload = {"file_handle": manifest, "file_type": "mly_bundle_manifest"}
    async with session.post(f"{graph}/finish_upload", json=payload) as resp:
        assert resp.status == 200, await resp.text()
    return time.perf_counter() - started


async def measure(base: str, args: argparse.Namespace) -> dict[str, float]:
    graph, upload = f"{base}/graph", f"{base}/mapillary_public_uploads"
    big = [tagged(i, (2000, 1500), noise=True) for i in range(args.big)]
    small = [tagged(100_000 + i, (64, 48), noise=False) for i in range(args.images)]
    figures: dict[str, float] = {}
    async with aiohttp.ClientSession(headers=AUTH) as session:
        started = time.perf_counter()
        big_handles = await put_all(session, upload, big, args.concurrency)
        seconds = time.perf_counter() - started
        figures["upload_mb_per_s"] = sum(map(len, big)) / seconds / 1e6
        figures["big_image_mb"] = len(big[0]) / 1e6
        await finish(session, graph, upload, big_handles, "big")

        started = time.perf_counter()
        handles = await put_all(session, upload, small, args.concurrency)
        figures["small_uploads_per_s"] = len(small) / (time.perf_counter() - started)
        figures[f"finish_{len(handles)}_images_s"] = await finish(
            session, graph, upload, handles, "many"
        )

        started = time.perf_counter()
        queries = 50
        for i in range(queries):
            lon = 8.0 + (i % 10) * 0.002
            params = {"bbox": f"{lon},50.0,{lon + 0.01},50.05", "fields": "id,geometry"}
            async with session.get(f"{graph}/images", params=params) as resp:
                assert resp.status == 200
                await resp.read()
        figures["search_ms"] = (time.perf_counter() - started) / queries * 1000

        params = {"bbox": "-180,-90,180,90", "fields": "id,thumb_1024_url", "limit": "5"}
        async with session.get(f"{graph}/images", params=params) as resp:
            first = (await resp.json())["data"][0]
        started = time.perf_counter()
        async with session.get(first["thumb_1024_url"]) as resp:
            await resp.read()
        figures["first_thumbnail_ms"] = (time.perf_counter() - started) * 1000
    return figures


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2000, help="small images in one sequence")
    parser.add_argument("--big", type=int, default=40, help="~2.7 MB photos for throughput")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "server", "--data", data],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            base = proc.stdout.readline().strip().removeprefix("serving on ")
            figures = asyncio.run(measure(base, args))
            figures["server_peak_rss_mb"] = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    for name, value in figures.items():
        print(f"{name:28s} {value:10.2f}")


if __name__ == "__main__":
    main()
