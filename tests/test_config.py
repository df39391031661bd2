"""The configuration: one TOML file, environment and flags, in that order, with clear refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.core import config


def test_file_then_environment_then_flags_each_win_over_the_one_before(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[pipeline]\ntz = "Europe/Berlin"\ntime_offset = 3.5\n'
        "[sources]\nsettle_seconds = 2\n[upload]\nconcurrency = 2\n"
    )
    env = {"MAPILLARY_DAEMON_TIME_OFFSET": "-1", "NUMBER_THREADS": "6"}
    s = config.load(path, overrides={"settle_seconds": 0.5, "tz": None}, env=env)
    assert s.tz == "Europe/Berlin"  # file (the flag was not given)
    assert s.time_offset == -1.0  # environment over file
    assert s.concurrency == 6  # the old scripts' NUMBER_THREADS over the file
    assert s.settle_seconds == 0.5  # flag over file
    assert s.batch_quiet_seconds == config.Settings().batch_quiet_seconds  # default


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("setle_seconds = 5\n", "unknown key 'setle_seconds'"),
        ('settle_seconds = "soon"\n', "settle_seconds"),
        ("[pipeline]\ntz = 'Mars/Olympus'\n", "tz"),
        ("concurrency = 0\n", "concurrency"),
        ("watch = [\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, text: str, said: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as caught:
        config.load(path, env={})
    assert str(path) in str(caught.value) and said in str(caught.value)


def test_config_init_writes_every_key_and_reads_back_as_the_defaults(tmp_path: Path) -> None:
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    env = {k: v for k, v in env.items() if not k.startswith("MAPILLARY_")}
    run = [sys.executable, "-m", "daemon", "config"]
    made = subprocess.run([*run, "init"], env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    where = subprocess.run([*run, "path"], env=env, capture_output=True, text=True, timeout=60)
    path = Path(where.stdout.strip().splitlines()[-1])
    assert path.is_file() and str(tmp_path) in str(path)
    text = path.read_text()
    for keys in config.SECTIONS.values():
        for key in keys:
            assert f"{key} = " in text
    assert config.load(path, env={}) == config.Settings()
    again = subprocess.run([*run, "init"], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and path.read_text() == text  # never overwritten silently


def test_run_refuses_an_unknown_key_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[sources]\nwatch = ['/tmp']\nbatch_quiet = 3\n")
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--config", str(path), "--once"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"{path}: unknown key 'batch_quiet'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_duplicate_window_is_a_setting_with_the_pipelines_default(tmp_path: Path) -> None:
    from daemon.pipeline import PipelineOptions

    assert config.Settings().duplicate_window == PipelineOptions().duplicate_window == 30.0
    path = tmp_path / "config.toml"
    path.write_text("[pipeline]\nduplicate_window = 12\n")
    assert config.load(path, env={}).duplicate_window == 12.0
    env = {"MAPILLARY_DAEMON_DUPLICATE_WINDOW": "0"}
    assert config.load(path, env=env).duplicate_window == 0.0
    with pytest.raises(config.ConfigError, match="'duplicate_window' must not be negative"):
        config.load(path, overrides={"duplicate_window": -1}, env={})
    assert PipelineOptions.from_settings(config.load(path, env={})).duplicate_window == 12.0


def _parsed(command: str, *argv: str) -> object:
    from daemon import cli

    return cli.build_parser(command.replace("-", "_")).parse_args([command, *argv])


def test_run_and_process_accept_duplicate_window_from_flag_and_file(tmp_path: Path) -> None:
    from daemon.commands import process, run

    path = tmp_path / "config.toml"
    path.write_text("[pipeline]\nduplicate_window = 12\n")
    flag = ["--config", str(path), "--duplicate-window", "5"]
    settings = run.settings_from_args(_parsed("run", *flag, "--watch", str(tmp_path)))
    assert settings.duplicate_window == 5.0
    assert run.settings_from_args(_parsed("run", "--config", str(path))).duplicate_window == 12.0
    options = process.options_from_args(_parsed("process", str(tmp_path), *flag))
    assert options.duplicate_window == 5.0
    options = process.options_from_args(_parsed("process", str(tmp_path), "--config", str(path)))
    assert options.duplicate_window == 12.0


def _help(command: str) -> str:
    import argparse

    from daemon import cli

    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command].format_help()


def test_every_flag_of_the_table_is_a_flag_of_run_and_the_pipeline_ones_of_process() -> None:
    helps = {command: _help(command) for command in ("run", "process")}
    for row in config.FIELDS.values():
        if not row.spec.flag:
            continue
        assert f"[{row.spec.flag}" in helps["run"], row.name
        assert (f"[{row.spec.flag}" in helps["process"]) == (row.spec.section == "pipeline")


def test_doctests_of_the_settings_helpers() -> None:
    import doctest

    from daemon.core import flags, toml_write

    for module in (flags, toml_write):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_what_the_toml_writer_writes_reads_back_the_same() -> None:
    import tomllib

    from daemon.core import toml_write

    values = {"plain": "a", "quoted": 'say "hi" \\o/', "control": "tab\there\x7f", "n": 2.5}
    lines = [toml_write.assignment(k, v) for k, v in values.items()]
    lines.append(toml_write.assignment("a key", [Path("/x y"), "z"]))
    read = tomllib.loads("\n".join(lines))
    assert read == {**values, "a key": ["/x y", "z"]}
