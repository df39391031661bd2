"""`authenticate`: check an access token with the graph API, then store it for a profile."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from daemon.commands.common import add_command, add_config_flag
from daemon.core import auth, config, log
from daemon.core.errors import EXIT_OK, EXIT_SET_ASIDE, EXIT_USAGE, UsageError
from daemon.mapillary import AuthError, RejectedError, RetriesExhausted, RetryPolicy
from daemon.upload.client import UploadClient

# A person is waiting at the terminal: give up on an unreachable server sooner than uploads do.
VERIFY_POLICY = RetryPolicy(max_attempts=3, max_delay=4.0)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "authenticate",
        "check a Mapillary access token and store it for a profile",
        "Check a Mapillary user access token with the graph API (/me) and store it "
        "(mode 0600) for a profile. Without --token or --token-file the token is read from "
        "standard input. The token is never printed or logged.",
        "examples:\n  mapillary-daemon authenticate --token-file ~/mly-token.txt\n"
        "  mapillary-daemon authenticate --profile work < token.txt\n"
        "  mapillary-daemon authenticate --profile work --delete",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--token", help="the access token (visible in the process list)")
    source.add_argument("--token-file", type=Path, help="read the token from this file")
    p.add_argument("--profile", help="profile name (default: the configured one, 'default')")
    p.add_argument("--delete", action="store_true", help="forget the profile's stored token")
    add_config_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = config.load(args.config, overrides={"profile": args.profile})
        profile = auth.check_profile(settings.profile)
    except ValueError as exc:  # a bad profile name (a bad configuration raises ConfigError)
        raise UsageError(str(exc)) from None
    log.setup(settings.log_level, settings.log_format)
    try:
        if args.delete:
            return _delete(profile)
        token = _read_token(args)
        return _verify_and_save(settings, profile, token)
    except auth.TokenStoreError as exc:
        print(f"authenticate: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _delete(profile: str) -> int:
    if auth.delete_token(profile):
        print(f"removed the stored token of profile '{profile}'")
    else:
        print(f"no token stored for profile '{profile}'")
    return EXIT_OK


def _read_token(args: argparse.Namespace) -> str:
    if args.token is not None:
        token = args.token
    elif args.token_file is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"{args.token_file}: cannot read: {exc.strerror}") from None
    elif sys.stdin.isatty():
        token = getpass.getpass("Mapillary access token: ")
    else:
        token = sys.stdin.readline()
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        where = args.token_file or "the token given"
        raise UsageError(f"{where}: not a token (empty, or more than one word)")
    log.register_secret(token)
    return token


def _verify_and_save(settings: config.Settings, profile: str, token: str) -> int:
    try:
        account = asyncio.run(_me(settings, token))
    except AuthError:
        print(
            f"authenticate: the token was refused by {settings.graph_endpoint}; nothing saved",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except (RetriesExhausted, RejectedError) as exc:
        print(
            f"authenticate: could not check the token with {settings.graph_endpoint}: {exc}; "
            "nothing saved",
            file=sys.stderr,
        )
        return EXIT_SET_ASIDE
    username = str(account.get("username") or account.get("id"))
    path = auth.save_token(profile, token, username)
    print(f"authenticated as {username} (profile '{profile}'); token stored in {path}")
    return EXIT_OK


async def _me(settings: config.Settings, token: str) -> dict:
    client = UploadClient(
        token, settings.graph_endpoint, settings.upload_endpoint, policy=VERIFY_POLICY
    )
    async with client:
        return await client.me()
