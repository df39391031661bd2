"""Token storage: private file, profiles, environment override, atomic replacement."""

from __future__ import annotations

import asyncio
import doctest
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.core import auth, log
from daemon.server import ServerConfig, running_server
from daemon.upload.client import UploadClient


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_doctests() -> None:
    result = doctest.testmod(auth)
    assert result.attempted > 0 and result.failed == 0


def test_a_saved_token_is_private_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "tokens.toml"
    written = auth.save_token("default", "MLY|123|abcdef", "alice", path=path)
    assert written == path
    assert mode(path) == 0o600
    assert auth.load_token("default", path=path, env={}) == "MLY|123|abcdef"
    assert auth.read_accounts(path)["default"].username == "alice"
    assert [p.name for p in path.parent.iterdir()] == ["tokens.toml"]  # no temp file left


def test_profiles_are_independent_and_delete_forgets_only_one(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    auth.save_token("default", "tok-home-1111", path=path)
    auth.save_token("work", "tok-work-2222", "bob", path=path)
    auth.save_token("default", "tok-home-3333", path=path)  # replaces, keeps work
    assert auth.load_token("default", path=path, env={}) == "tok-home-3333"
    assert auth.delete_token("default", path=path) is True
    assert auth.delete_token("default", path=path) is False
    assert auth.load_token("default", path=path, env={}) is None
    assert auth.load_token("work", path=path, env={}) == "tok-work-2222"
    assert mode(path) == 0o600


def test_environment_token_overrides_the_stored_one(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    auth.save_token("default", "stored-token-1", path=path)
    env = {"MAPILLARY_TOKEN": " env-token-2 \n"}
    assert auth.load_token("default", path=path, env=env) == "env-token-2"
    assert auth.load_token("other", path=path, env=env) == "env-token-2"
    assert auth.load_token("missing", path=tmp_path / "none.toml", env={}) is None


def test_a_world_readable_file_is_replaced_by_a_private_one(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text('[default]\ntoken = "old-token-9"\n')
    os.chmod(path, 0o644)
    old_umask = os.umask(0)
    try:
        auth.save_token("work", "new-token-8", path=path)
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o600
    assert auth.load_token("default", path=path, env={}) == "old-token-9"
    assert auth.load_token("work", path=path, env={}) == "new-token-8"


def test_quotes_and_backslashes_survive_the_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    token = 'we"ird\\token\ttab'
    auth.save_token("default", token, 'na"me', path=path)
    account = auth.read_accounts(path)["default"]
    assert (account.token, account.username) == (token, 'na"me')


def test_a_corrupt_file_is_one_clear_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text("[default\ntoken = ")
    with pytest.raises(auth.TokenStoreError, match="tokens.toml: not valid TOML"):
        auth.load_token("default", path=path, env={})


def test_bad_profile_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad profile name"):
        auth.save_token("../evil", "tok-12345", path=tmp_path / "tokens.toml")
    assert not (tmp_path / "tokens.toml").exists()


def test_loaded_tokens_are_redacted_from_log_text(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    secret = "loaded-secret-" + os.urandom(6).hex()
    path.write_text(f'[default]\ntoken = "{secret}"\n')
    assert secret in log.redact_text(f"value {secret}")  # fresh: not known before loading
    assert auth.load_token("default", path=path, env={}) == secret
    assert secret not in log.redact_text(f"request failed for {secret} at x")


# -- the authenticate command, as a user runs it ------------------------------------------------

GOOD = "MLY|good|" + "k" * 20


@pytest.fixture
async def graph(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """The embedded server knowing one token; yields its graph URL and that token's user name."""
    config = ServerConfig(data_dir=tmp_path / "srv", tokens=(GOOD,))
    async with running_server(config) as server:
        async with UploadClient(GOOD, server.graph_url, server.upload_url) as client:
            username = (await client.me())["username"]
        yield server.graph_url, username


async def authenticate(
    home: Path, graph: tuple[str, str], *args: str, stdin: bytes = b""
) -> tuple[int, str, str]:
    graph_url = graph[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        MAPILLARY_GRAPH_API_ENDPOINT=graph_url,
        MAPILLARY_UPLOAD_ENDPOINT=graph_url.replace("/graph", "/up"),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        "authenticate",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_authenticate_checks_and_stores_a_token_from_a_file(tmp_path: Path, graph) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(GOOD + "\n")
    code, out, err = await authenticate(tmp_path, graph, "--token-file", str(token_file))
    assert code == 0, err
    assert f"authenticated as {graph[1]}" in out and GOOD not in out + err
    stored = tmp_path / "config" / "mapillary-daemon" / "tokens.toml"
    assert mode(stored) == 0o600
    assert auth.load_token("default", path=stored, env={}) == GOOD

    code, out, err = await authenticate(tmp_path, graph, "--delete")
    assert code == 0 and "removed" in out
    assert auth.load_token("default", path=stored, env={}) is None


async def test_a_refused_token_exits_2_and_stores_nothing(tmp_path: Path, graph) -> None:
    bad = "MLY|bad|" + "z" * 20
    code, out, err = await authenticate(tmp_path, graph, "--token", bad)
    assert code == 2
    assert "token was refused" in err and len(err.strip().splitlines()) == 1
    assert bad not in out + err
    assert not (tmp_path / "config" / "mapillary-daemon" / "tokens.toml").exists()


async def test_token_from_stdin_goes_to_the_named_profile(tmp_path: Path, graph) -> None:
    code, out, err = await authenticate(tmp_path, graph, "--profile", "work", stdin=GOOD.encode())
    assert code == 0, err
    assert "profile 'work'" in out and GOOD not in out + err
    stored = tmp_path / "config" / "mapillary-daemon" / "tokens.toml"
    assert auth.read_accounts(stored)["work"] == auth.Account("work", GOOD, graph[1])
    assert "default" not in auth.read_accounts(stored)
