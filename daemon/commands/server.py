"""`server`: run the embedded Mapillary-compatible server until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import stat
import sys
from pathlib import Path

from daemon.commands.common import add_command
from daemon.core.errors import EXIT_OK, UsageError
from daemon.server import ServerConfig, parse_outage, running_server

TOKEN_ENV = "MAPILLARY_DAEMON_SERVER_TOKEN"
MB = 2**20

EPILOG = f"""\
examples:
  mapillary-daemon server --data ./mly-server
  mapillary-daemon server --token-file ~/server-tokens.txt --max-image-mb 64 --read-timeout 10
  mapillary-daemon server --port 8765 --fail-rate 0.05 --drop-rate 0.05 --seed 1
  mapillary-daemon server --max-rate 2000000 --outage 30:20 --rate-limit 20

Point a client at it with the two environment lines it prints (mapillary_tools also needs
MAPILLARY_TOOLS__AUTH_VERIFICATION_DISABLED=YES or a token the server accepts).
Accepted tokens come from --token-file (one per line, mode 0600) or {TOKEN_ENV}
(several separated by commas); --token still works but every user sees it in the process list.
Counters: curl http://127.0.0.1:PORT/_admin/stats"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "server",
        "run a local Mapillary-compatible server (for demos, tests and trials)",
        "Serve the Mapillary graph API (me, finish_upload, images search with "
        "thumbnails) and upload service on loopback, storing what it receives and validating "
        "every uploaded image's description, with optional fault injection.",
        EPILOG,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (%(default)s)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--data", type=Path, help="data folder (default: a temporary one)")
    p.add_argument(
        "--token",
        action="append",
        default=[],
        help="accept only this access token (repeatable; visible in the process list: prefer "
        f"--token-file or {TOKEN_ENV}; default: any non-empty token)",
    )
    p.add_argument("--token-file", type=Path, help="accepted tokens, one per line")
    p.add_argument(
        "--max-image-mb", type=float, default=512.0, metavar="MB", help="cap of one image (512)"
    )
    p.add_argument(
        "--max-zip-mb", type=float, default=2048.0, metavar="MB", help="cap of one zip (2048)"
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="close a connection whose request stalls or idles this long (30)",
    )
    p.add_argument(
        "--processing-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="how long a finished sequence takes to get its sequence and image ids (0)",
    )
    p.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="share of requests answered 5xx, 0 to 1 (0: none)",
    )
    p.add_argument(
        "--drop-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="share of uploads and thumbnail downloads cut mid-body, 0 to 1 (0: none)",
    )
    p.add_argument(
        "--latency", type=float, default=0.0, metavar="MS", help="added to every request (0)"
    )
    p.add_argument(
        "--max-rate",
        type=float,
        default=0.0,
        metavar="BYTES_PER_S",
        help="upload bandwidth cap (0: none)",
    )
    p.add_argument(
        "--outage",
        metavar="START_S:DURATION_S",
        help="refuse every request (503, or a reset connection) for DURATION_S seconds, "
        "START_S seconds after start (default: no outage)",
    )
    p.add_argument(
        "--rate-limit",
        type=float,
        default=0.0,
        metavar="N_PER_S",
        help="requests per second, all clients together; more are answered 429 with "
        "Retry-After (0: no limit)",
    )
    p.add_argument(
        "--seed", type=int, help="seed of the fault RNG, for reproducible faults (default: random)"
    )
    p.set_defaults(func=run)


def _tokens(args: argparse.Namespace) -> tuple[str, ...]:
    """The accepted tokens from the flags and the environment; warnings on stderr, never the
    tokens themselves."""
    tokens = [t.strip() for t in args.token if t.strip()]
    if tokens:
        print(
            f"warning: --token is visible to every user in the process list (ps); "
            f"use --token-file or {TOKEN_ENV}",
            file=sys.stderr,
        )
    if args.token_file is not None:
        tokens += _token_file(args.token_file)
    tokens += [t for t in os.environ.get(TOKEN_ENV, "").replace(",", " ").split() if t]
    return tuple(tokens)


def _token_file(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read token file {path}: {reason}") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        print(
            f"warning: token file {path} is readable by other users "
            f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it",
            file=sys.stderr,
        )
    tokens = [line.strip() for line in lines if line.strip()]
    if not tokens:  # an empty list would accept any token: say so instead
        raise UsageError(f"token file {path} holds no token")
    return tokens


def _megabytes(value: float, flag: str) -> int:
    if value <= 0:
        raise UsageError(f"{flag} must be positive, not {value:g}")
    return int(value * MB)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    try:
        return ServerConfig(
            host=args.host,
            port=args.port,
            data_dir=args.data,
            tokens=_tokens(args),
            fail_rate=args.fail_rate,
            drop_rate=args.drop_rate,
            latency_ms=args.latency,
            bandwidth=args.max_rate,
            outage=parse_outage(args.outage) if args.outage else None,
            rate_limit=args.rate_limit,
            seed=args.seed,
            max_image_bytes=_megabytes(args.max_image_mb, "--max-image-mb"),
            max_zip_bytes=_megabytes(args.max_zip_mb, "--max-zip-mb"),
            read_timeout=args.read_timeout,
            processing_seconds=args.processing_seconds,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.data_dir is not None:
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create data folder {config.data_dir}: {exc}") from None
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        print(f"mapillary-daemon server: cannot serve: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a data folder whose log is not ours
        raise UsageError(str(exc)) from None
    return EXIT_OK


async def serve(config: ServerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_server(config) as server:
        print(f"serving on {server.base_url}")
        for name, value in server.environment().items():
            print(f"export {name}={value}")  # for eval or a copy into a shell
        sys.stdout.flush()
        where = "a temporary folder, removed on exit" if config.data_dir is None else "data"
        print(f"{where}: {server.store.root}", file=sys.stderr)
        if config.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"warning: listening on {config.host}, not loopback only", file=sys.stderr)
        if config.tokens:
            print(f"accepting {len(config.tokens)} configured token(s)", file=sys.stderr)
        sys.stderr.flush()
        await stop.wait()
    print("stopped", file=sys.stderr)
