"""The command line, called in-process: one-line errors with exit status 2, help with examples, version."""

from __future__ import annotations

import pytest

from app import __version__
from app.cli import main
from app.config import load_blocks

BLOCK_NAMES = ", ".join(sorted(n for n in load_blocks() if n != "defaults"))


@pytest.mark.parametrize(("argv", "line"), [
    pytest.param(["train", "--configs", "nonsense"],
                 "ConfigError: unknown config block 'nonsense'; valid blocks: " + BLOCK_NAMES, id="block"),
    pytest.param(["run", "--trainer.batchsize", "3"],
                 "ConfigError: unknown key 'trainer.batchsize' (did you mean 'trainer.batch_size'?)", id="key"),
    pytest.param(["run", "--stream.fps", "0"], "ConfigError: stream.fps = 0: must be between 1 and 120",
                 id="range"),
    pytest.param(["envs", "--stream.fps", "3"], "ConfigError: `dreamstream envs` takes no config overrides "
                 "(--stream.fps)", id="overrides-where-none-apply"),
    pytest.param(["run", "--env-file", "/nonexistent/.env"], "ConfigError: --env-file /nonexistent/.env: no such "
                 "file", id="env-file"),
    pytest.param(["db", "upgrade", "--logdir", "/nonexistent/run"],
                 "ConfigError: --logdir /nonexistent/run: no such run dir", id="db-no-run-dir"),
    pytest.param(["stream", "test", "--target", "foo"], "ConfigError: --target 'foo': must be 'local', 'twitch' or "
                 "an rtmp(s):// URL", id="stream-target"),
])
def test_bad_input_is_one_line_and_status_2(argv, line, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be created for a rejected command
    assert main([*argv, "--logdir", str(tmp_path / "run")] if argv[0] == "run" else argv) == 2
    out, err = capsys.readouterr()
    assert err == line + "\n"
    assert out == ""
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"dreamstream {__version__}\n"


@pytest.mark.parametrize("command", [[], ["run"], ["train"], ["eval"], ["db", "upgrade"], ["config", "show"],
                                     ["envs"], ["render-overlay"], ["stream", "test"]])
def test_help_everywhere_with_examples(command, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "dreamstream" in out


def test_config_show_masks_secrets(capsys, monkeypatch) -> None:
    monkeypatch.setenv("TWITCH_STREAM_KEY", "live_abc_123")
    assert main(["config", "show", "--configs", "twitch", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "stream_key: '***'" in out and "target: twitch" in out and "live_abc_123" not in out


def test_env_file_supplies_secrets_and_environment_wins(tmp_path, capsys, monkeypatch) -> None:
    env_file = tmp_path / "secrets.env"
    env_file.write_text("TWITCH_STREAM_KEY=from_file\nDREAMSTREAM_DASHBOARD_TOKEN=file_token\n")
    monkeypatch.setenv("DREAMSTREAM_DASHBOARD_TOKEN", "env_token")
    monkeypatch.delenv("TWITCH_STREAM_KEY", raising=False)
    from app.cli import _environ

    environ = _environ(env_file)
    assert environ["TWITCH_STREAM_KEY"] == "from_file"
    assert environ["DREAMSTREAM_DASHBOARD_TOKEN"] == "env_token"


def test_config_keys_lists_every_key_with_its_meaning(capsys) -> None:
    assert main(["config", "keys"]) == 0
    out = capsys.readouterr().out
    assert "stream.fps" in out and "Output frame rate" in out and "env TWITCH_STREAM_KEY" in out


def test_envs_lists_registered_games(capsys) -> None:
    assert main(["envs"]) == 0
    assert "crafter" in capsys.readouterr().out


def test_train_dry_run_prints_parameter_counts_and_writes_nothing(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--configs", "crafter", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "resolved model: 687,875 parameters" in out
    assert "size12m:    10,498,259 parameters" in out and "size400m" in out
    assert list(tmp_path.iterdir()) == []


def test_db_upgrade_of_a_run_dir_with_a_broken_config_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("storage: [unclosed\n")
    assert main(["db", "upgrade", "--logdir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.startswith(f"ConfigError: {tmp_path / 'run' / 'config.yaml'} is not valid YAML")
    (tmp_path / "run" / "config.yaml").write_text("storage:\n")  # empty section: the default database
    assert main(["db", "upgrade", "--logdir", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "dreamstream.db").exists()
