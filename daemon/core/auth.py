"""Access tokens per profile, stored privately in the user config dir.

One file, ``tokens.toml`` (mode 0600, replaced atomically), one table per profile::

    [default]
    token = "MLY|..."
    username = "alice"

``MAPILLARY_TOKEN`` in the environment overrides the stored token of every profile, as it does
for mapillary_tools. Under systemd the system service gets the file as a credential
(``LoadCredential=tokens.toml:/etc/mapillary-daemon/tokens.toml``): the service user cannot read
the root-owned original, only the copy systemd hands it in ``$CREDENTIALS_DIRECTORY``.
Every token loaded or saved is registered with the log redactor at once.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from daemon.core import config, log, toml_write
from daemon.core.durable import write_atomically
from daemon.core.errors import TokenStoreError, UsageError

TOKEN_ENV = "MAPILLARY_TOKEN"
TOKENS_FILE = "tokens.toml"
CREDENTIAL = "tokens.toml"  # the credential name the systemd unit passes with LoadCredential=
_PROFILE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HEADER = "# mapillary-daemon access tokens. Secrets: keep this file private (mode 0600).\n"


@dataclass(frozen=True)
class Account:
    """A stored token and the user name the server gave for it."""

    profile: str
    token: str
    username: str | None = None


def tokens_path(directory: Path | None = None) -> Path:
    return (directory or config.config_dir()) / TOKENS_FILE


def check_profile(profile: str) -> str:
    """A profile name is a plain word, so it is safe as a TOML key and in messages.

    >>> check_profile("work-2")
    'work-2'
    >>> check_profile("a b")
    Traceback (most recent call last):
    ...
    ValueError: bad profile name 'a b': use letters, digits, '.', '_' or '-'
    """
    if not _PROFILE.match(profile):
        raise ValueError(f"bad profile name {profile!r}: use letters, digits, '.', '_' or '-'")
    return profile


def load_token(
    profile: str = "default",
    *,
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """The token for ``profile``: ``MAPILLARY_TOKEN`` if set, else the stored one (from ``path``
    if given, else the systemd credential if there is one, else the user's file), else None."""
    environ = os.environ if env is None else env
    token = (environ.get(TOKEN_ENV) or "").strip()
    if not token:
        store = path or credential_path(environ) or tokens_path()
        account = read_accounts(store).get(check_profile(profile))
        token = account.token if account else ""
    if not token:
        return None
    log.register_secret(token)
    return token


def require_token(profile: str) -> str:
    """The token for ``profile`` (see :func:`load_token`); none is a usage error saying how to
    get one (the commands' wording: the daemon itself waits for a token instead)."""
    token = load_token(profile)
    if not token:
        raise UsageError(
            "no access token: run 'mapillary-daemon authenticate' or set MAPILLARY_TOKEN"
        )
    return token


def credential_path(env: Mapping[str, str]) -> Path | None:
    """The token file systemd passed with ``LoadCredential=``, if it did."""
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    file = Path(directory) / CREDENTIAL
    return file if file.is_file() else None


def read_accounts(path: Path | None = None) -> dict[str, Account]:
    """Every stored profile; an absent file means none."""
    file = path or tokens_path()
    try:
        with file.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise TokenStoreError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise TokenStoreError(f"{file}: cannot read: {exc.strerror}") from None
    accounts = {}
    for profile, table in data.items():
        if isinstance(table, dict) and isinstance(table.get("token"), str) and table["token"]:
            log.register_secret(table["token"])
            username = table.get("username")
            accounts[profile] = Account(
                profile, table["token"], username if isinstance(username, str) else None
            )
    return accounts


def save_token(
    profile: str, token: str, username: str | None = None, *, path: Path | None = None
) -> Path:
    """Store (or replace) the token of ``profile``; returns the file written."""
    token = token.strip()
    if not token:
        raise ValueError("an empty token cannot be saved")
    log.register_secret(token)
    file = path or tokens_path()
    accounts = read_accounts(file)
    accounts[check_profile(profile)] = Account(profile, token, username)
    _write(file, accounts)
    return file


def delete_token(profile: str, *, path: Path | None = None) -> bool:
    """Forget the token of ``profile``; False when there was none."""
    file = path or tokens_path()
    accounts = read_accounts(file)
    if accounts.pop(check_profile(profile), None) is None:
        return False
    _write(file, accounts)
    return True


def _write(file: Path, accounts: dict[str, Account]) -> None:
    """Replace the whole file atomically, its temp file created 0600: no reader ever sees a
    partial file and the token is never world-readable."""
    text = _HEADER + "".join(_render(a) for a in accounts.values())
    try:
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(file, text, mode=0o600)
    except OSError as exc:
        raise TokenStoreError(f"{file}: cannot write: {exc.strerror}") from None


def _render(account: Account) -> str:
    lines = [
        f"\n[{toml_write.string(account.profile)}]",
        toml_write.assignment("token", account.token),
    ]
    if account.username:
        lines.append(toml_write.assignment("username", account.username))
    return "\n".join(lines) + "\n"
