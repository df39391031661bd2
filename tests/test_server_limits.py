"""The embedded server against hostile clients, over real sockets on 127.0.0.1: oversized
bodies, zip bombs, slow and silent connections, and where its accepted tokens come from.

The hostile side is raw asyncio streams (no HTTP client would misbehave on purpose); big bodies
are one reused 1 MiB block sent again and again, so the test itself stays small.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from daemon.server import ServerConfig, running_server
from daemon.server.runner import RunningServer
from tests.test_server import AUTH, TOKEN, walk

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20
BLOCK = bytes(MIB)
TOKEN_ENV = "MAPILLARY_DAEMON_SERVER_TOKEN"


def test_doctests() -> None:
    import doctest

    from daemon.server import limits as limits_module

    result = doctest.testmod(limits_module)
    assert result.attempted > 0 and result.failed == 0


@asynccontextmanager
async def serving(tmp_path: Path, **settings: Any) -> AsyncIterator[RunningServer]:
    async with running_server(ServerConfig(data_dir=tmp_path / "data", **settings)) as server:
        yield server


def written_by_this_process() -> int:
    """Bytes this process has passed to write() so far (the server runs in it)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


needs_proc_io = pytest.mark.skipif(
    not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io to count bytes written"
)


# -- bodies over their cap ------------------------------------------------------------------------


async def hostile_post(
    srv: RunningServer, key: str, megabytes: int, chunked: bool
) -> tuple[int, dict[str, Any], int]:
    """POST ``megabytes`` MiB of zeros to ``key`` until the server answers; (status, JSON
    reply, bytes sent). With ``chunked`` no length is announced."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {megabytes * MIB}"
    head = (
        f"POST /mapillary_public_uploads/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: OAuth {TOKEN}\r\nOffset: 0\r\n{framing}\r\n\r\n"
    )
    writer.write(head.encode())
    reply = asyncio.create_task(read_reply(reader))
    sent = 0
    try:
        for _ in range(megabytes):
            if reply.done():
                break
            writer.write(b"%x\r\n%s\r\n" % (MIB, BLOCK) if chunked else BLOCK)
            await writer.drain()
            sent += MIB
        else:
            writer.write(b"0\r\n\r\n" if chunked else b"")
    except ConnectionError:
        pass
    try:
        status, body = await asyncio.wait_for(reply, 30)
    finally:
        writer.close()
    return status, body, sent


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    status = int(head.split()[1])
    length = next(
        int(line.split(":", 1)[1])
        for line in head.split("\r\n")
        if line.lower().startswith("content-length:")
    )
    return status, json.loads(await reader.readexactly(length))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@needs_proc_io
async def test_a_300_mb_body_is_refused_with_413_and_never_held(tmp_path: Path) -> None:
    async with serving(tmp_path / "default") as srv:
        rss_before, wrote_before = peak_rss_mb(), written_by_this_process()
        # Announced, to a manifest key (16 MiB by default): refused from Content-Length,
        # before a byte of the body is stored.
        status, body, _ = await hostile_post(srv, "uuid_big.json", 300, chunked=False)
        assert status == 413, body
        info = body["debug_info"]
        assert info["type"] == "PayloadTooLargeError" and info["retriable"] is False
        assert f"at most {16 * MIB} bytes for a manifest" in info["message"]
        assert written_by_this_process() - wrote_before < MIB
        # Not announced (chunked): cut at the cap, and what it wrote is removed.
        status, body, sent = await hostile_post(srv, "uuid_big2.json", 300, chunked=True)
        assert status == 413, body
        assert srv.stats()["bytes_received"] <= 16 * MIB
        assert written_by_this_process() - wrote_before < 17 * MIB
        assert peak_rss_mb() - rss_before < 64, "the body was held in memory"
        assert not list((srv.store.root / "objects").iterdir())
    image_key = f"mly_tools_{'0' * 32}.jpg"
    async with serving(tmp_path / "small", max_image_bytes=8 * MIB) as srv:
        status, body, _ = await hostile_post(srv, image_key, 300, chunked=True)
        assert status == 413, body
        assert f"at most {8 * MIB} bytes for an image" in body["debug_info"]["message"]
        assert not (srv.store.root / "objects" / image_key).exists()
        # A body within the cap still goes through.
        async with aiohttp.ClientSession(headers=AUTH) as http:
            url = f"{srv.upload_url}/uuid_small.json"
            async with http.post(url, data=b"{}", headers={"Offset": "0"}) as resp:
                assert resp.status == 200, await resp.text()


# -- zip bombs ------------------------------------------------------------------------------------


def zip_bomb(name: str, megabytes: int, declared: int | None = None) -> bytes:
    """A zip of one entry of ``megabytes`` MiB of zeros, built without compressing it all:
    after a full flush, deflate turns each identical MiB into the same bytes. ``declared``
    writes a smaller size into the headers (a lying archive)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = packer.compress(BLOCK) + packer.flush(zlib.Z_FULL_FLUSH)
    data = piece * megabytes + packer.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(BLOCK, crc)
    size = megabytes * MIB if declared is None else declared
    raw = name.encode()
    local = struct.pack(
        "<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), size, len(raw), 0
    )
    central = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(data), size, len(raw),
        0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(raw), len(local) + len(raw)
        + len(data), 0,
    )  # fmt: skip
    return local + raw + data + central + raw + end


def plain_zip(images: list[bytes]) -> bytes:
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        for data in images:
            archive.writestr(f"{hashlib.md5(data).hexdigest()}.jpg", data)
    return packed.getvalue()


async def finish_zip(http: aiohttp.ClientSession, srv: RunningServer, data: bytes) -> Any:
    key = f"mly_tools_{hashlib.md5(data).hexdigest()}.zip"
    async with http.post(f"{srv.upload_url}/{key}", data=data, headers={"Offset": "0"}) as resp:
        assert resp.status == 200, await resp.text()
        handle = (await resp.json())["h"]
    payload = {"file_handle": handle, "file_type": "zip"}
    async with http.post(f"{srv.graph_url}/finish_upload", json=payload) as resp:
        return resp.status, await resp.json()


@needs_proc_io
async def test_zip_bombs_are_refused_before_more_than_the_cap_is_written(tmp_path: Path) -> None:
    images = walk(3)
    cases = [
        # (archive, server settings, what the refusal says, most bytes it may write)
        (zip_bomb("bomb.jpg", 1024), {}, "more than the 536870912 this server takes for an image", 0),
        (zip_bomb("bomb.jpg", 256), {}, "refused as a zip bomb", 0),
        (zip_bomb("liar.jpg", 256, declared=MIB), {}, "Bad CRC-32", MIB),
        (plain_zip(images), {"max_unzipped_bytes": 1000}, "more than the 1000 this server", 0),
    ]  # fmt: skip
    for number, (data, settings, reason, most) in enumerate(cases):
        assert len(data) < 1.1 * MIB
        async with (
            serving(tmp_path / str(number), **settings) as srv,
            aiohttp.ClientSession(headers=AUTH) as http,
        ):
            before = written_by_this_process() + len(data)  # the upload itself is written once
            status, body = await finish_zip(http, srv, data)
            wrote = written_by_this_process() - before
            assert status == 400 and body["error"]["type"] == "MLYUploadError", body
            assert reason in body["error"]["message"]
            assert wrote <= most + 64 * 1024, f"{reason}: {wrote} bytes written"
            assert srv.stats()["sequences"] == 0
            assert not list((srv.store.root / "extracted").iterdir())
    # A real zip of photos is unpacked as before.
    async with serving(tmp_path / "ok") as srv, aiohttp.ClientSession(headers=AUTH) as http:
        status, body = await finish_zip(http, srv, plain_zip(images))
        assert status == 200, body
        assert [len(s["images"]) for s in srv.sequences()] == [3]


# -- slow and silent connections ------------------------------------------------------------------


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    got = b""
    try:
        while chunk := await reader.read(65536):
            got += chunk
    except ConnectionError:
        pass
    return got


async def test_300_slow_connections_are_closed_after_the_read_timeout(tmp_path: Path) -> None:
    timeout = 1.0
    async with serving(tmp_path, read_timeout=timeout, min_body_rate=100.0) as srv:
        connections = []
        for i in range(300):
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            if i % 3 == 0:  # a body promised and never sent
                writer.write(
                    f"POST /mapillary_public_uploads/uuid_s{i}.json HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: OAuth {TOKEN}\r\nOffset: 0\r\nContent-Length: 1000\r\n"
                    "\r\nab".encode()
                )
            elif i % 3 == 1:  # headers never finished
                writer.write(b"GET /graph/me HTTP/1.1\r\nHost: x\r\n")
            connections.append((reader, writer))  # i % 3 == 2: connected, silent
        started = time.monotonic()
        replies = await asyncio.wait_for(
            asyncio.gather(*(closed_by_server(r) for r, _ in connections)), 10 * timeout + 10
        )
        elapsed = time.monotonic() - started
        for _, writer in connections:
            writer.close()
        assert elapsed < 5 * timeout + 5
        stalled = replies[0::3]
        assert all(r.startswith(b"HTTP/1.1 408") for r in stalled), stalled[0][:200]
        body = json.loads(stalled[0].split(b"\r\n\r\n", 1)[1])
        assert body["debug_info"]["type"] == "RequestTimeoutError"
        assert "came too slowly: 2 bytes" in body["debug_info"]["message"]
        assert all(r == b"" for r in replies[1::3] + replies[2::3])
        # What came before the stall is kept: the next POST resumes after it.
        async with (
            aiohttp.ClientSession(headers=AUTH) as http,
            http.get(f"{srv.upload_url}/uuid_s0.json") as resp,
        ):
            assert (await resp.json())["offset"] == 2


async def test_a_body_that_trickles_below_the_floor_is_cut(tmp_path: Path) -> None:
    async with serving(tmp_path, read_timeout=0.5, min_body_rate=1000.0) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(
            "POST /mapillary_public_uploads/uuid_t.json HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: OAuth {TOKEN}\r\nOffset: 0\r\nContent-Length: 100000\r\n\r\n".encode()
        )
        reply = asyncio.create_task(closed_by_server(reader))
        started = time.monotonic()
        for _ in range(200):  # 10 bytes every 0.05 s: progress, but 200 B/s
            if reply.done():
                break
            try:
                writer.write(b"x" * 10)
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0.05)
        got = await asyncio.wait_for(reply, 10)
        writer.close()
        assert time.monotonic() - started < 3
        assert got.startswith(b"HTTP/1.1 408"), got[:200]
        assert b"at least 500 bytes every 0.5 s" in got


async def test_graph_bodies_are_small_and_must_come_in_time(tmp_path: Path) -> None:
    async def slow() -> AsyncIterator[bytes]:
        yield b'{"file_handle":'
        await asyncio.sleep(3)
        yield b'"x"}'

    json_type = {"Content-Type": "application/json"}
    async with (
        serving(tmp_path, read_timeout=1.0) as srv,
        aiohttp.ClientSession(headers=AUTH) as http,
    ):
        url = f"{srv.graph_url}/finish_upload"
        async with http.post(url, data=bytes(2 * MIB), headers=json_type) as resp:
            assert resp.status == 413
            error = (await resp.json())["error"]
            assert error["type"] == "PayloadTooLargeError", error
        started = time.monotonic()
        async with http.post(url, data=slow(), headers=json_type) as resp:
            assert resp.status == 408
            assert "did not arrive within 1 s" in (await resp.json())["error"]["message"]
        assert time.monotonic() - started < 2.5


# -- where the accepted tokens come from ----------------------------------------------------------


class ServerCommand:
    """`mapillary-daemon server` as a subprocess, asked with urllib, stopped with SIGTERM."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        full = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        full.update(env or {}, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "server", "--data", str(tmp_path / "srv"), *args],
            cwd=REPO,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().strip()
        self.base = first.removeprefix("serving on ")
        assert self.base.startswith("http://127.0.0.1:"), first + self.stop()

    def me(self, token: str) -> int:
        request = urllib.request.Request(
            f"{self.base}/graph/me", headers={"Authorization": f"OAuth {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def cmdline(self) -> str:
        return Path(f"/proc/{self.proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()

    def stop(self) -> str:
        """Everything it wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return out + err


def test_tokens_come_from_a_private_file_or_the_environment_not_the_process_list(
    tmp_path: Path,
) -> None:
    secret, other = "file-token-" + "f" * 12, "env-token-" + "e" * 12
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(f"{secret}\n\n")
    token_file.chmod(0o600)
    server = ServerCommand(tmp_path, "--token-file", str(token_file), env={TOKEN_ENV: other})
    try:
        assert [server.me(secret), server.me(other), server.me("guess")] == [200, 200, 401]
        assert secret not in server.cmdline() and other not in server.cmdline()
    finally:
        said = server.stop()
    assert "warning" not in said and secret not in said and other not in said
    # The environment alone is enough, and it no longer means "any token".
    server = ServerCommand(tmp_path, env={TOKEN_ENV: f"{other},second-{other}"})
    try:
        assert [server.me(other), server.me(f"second-{other}"), server.me("guess")] == [
            200,
            200,
            401,
        ]
    finally:
        said = server.stop()
    assert other not in said


def test_a_readable_token_file_and_a_command_line_token_are_warned_about(tmp_path: Path) -> None:
    secret = "shared-token-" + "s" * 12
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(secret + "\n")
    token_file.chmod(0o644)
    server = ServerCommand(tmp_path, "--token-file", str(token_file))
    try:
        assert server.me(secret) == 200
    finally:
        said = server.stop()
    assert f"token file {token_file} is readable by other users (mode 0644)" in said
    assert secret not in said
    server = ServerCommand(tmp_path, "--token", secret)
    try:
        assert secret in server.cmdline()  # what everyone sees with ps
        assert [server.me(secret), server.me("guess")] == [200, 401]
    finally:
        said = server.stop()
    assert "--token is visible to every user in the process list" in said
    assert secret not in said


def test_an_empty_token_file_is_refused_rather_than_accepting_any_token(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.txt"
    token_file.write_text("\n  \n")
    token_file.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "server", "--token-file", str(token_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert f"token file {token_file} holds no token" in result.stderr
