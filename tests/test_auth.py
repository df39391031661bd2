"""Token storage: private file, profiles, environment override, atomic replacement."""

from __future__ import annotations

import doctest
import os
import stat
from pathlib import Path

import pytest

from daemon import auth, log


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
