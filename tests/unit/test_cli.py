"""The command line, called in-process: one-line errors with exit status 2, help with examples, version."""

from __future__ import annotations

import pytest

from app import __version__
from app.cli import main
from app.config import load_blocks
from app.errors import ConfigError

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
                                     ["envs"], ["render-overlay"], ["stream", "test"], ["history"]])
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


def test_train_dry_run_keeps_jax_on_the_cpu(tmp_path) -> None:
    # Beside a live run on a GPU, a dry run that started JAX's GPU backend took 75 % of the GPU's memory.
    import os
    import subprocess
    import sys

    code = ("import contextlib, io, jax; from app.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['train', '--configs', 'tiny', '--dry-run'])\n"
            "print(jax.config.jax_platforms)")
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         check=True)
    assert out.stdout.split()[-1] == "cpu"


def test_db_upgrade_of_a_run_dir_with_a_broken_config_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("storage: [unclosed\n")
    assert main(["db", "upgrade", "--logdir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.startswith(f"ConfigError: {tmp_path / 'run' / 'config.yaml'} is not valid YAML")
    (tmp_path / "run" / "config.yaml").write_text("storage:\n")  # empty section: the default database
    assert main(["db", "upgrade", "--logdir", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "dreamstream.db").exists()


SECRETS = {"TWITCH_STREAM_KEY": "live_123456_secretkey"}


def test_session_only_settings_are_not_kept_by_the_run_dir(tmp_path) -> None:
    # Twitch's bandwidth test and a session's duration apply to the start that sets them: the next plain start
    # goes live (a kept ?bandwidthtest=true streams to nobody) and runs until stopped.
    from app.cli import prepare_run

    logdir = tmp_path / "run"
    cfg, rundir, _ = prepare_run(["twitch"], [("stream.twitch_bandwidth_test", True), ("run.duration_s", 60)],
                                 logdir, SECRETS)
    rundir.unlock()
    assert cfg.stream.twitch_bandwidth_test and cfg.run.duration_s == 60
    saved = (logdir / "config.yaml").read_text()
    assert "twitch_bandwidth_test" not in saved and "duration_s" not in saved
    assert "target: twitch" in saved  # everything else is kept
    cfg, rundir, changes = prepare_run([], [], logdir, SECRETS)
    rundir.unlock()
    assert (cfg.stream.target, cfg.stream.twitch_bandwidth_test, cfg.run.duration_s) == ("twitch", False, 0.0)
    assert changes == []
    # A config.yaml written by an older version that kept them is read without them.
    (logdir / "config.yaml").write_text(saved.replace("run:\n", "run:\n  duration_s: 60\n", 1))
    cfg, rundir, changes = prepare_run([], [("run.duration_s", 5)], logdir, SECRETS)
    rundir.unlock()
    assert cfg.run.duration_s == 5 and changes == ["run.duration_s: 0.0 -> 5.0 (this session only)"]


def test_a_run_dir_made_for_twitch_restarts_without_the_stream_key(tmp_path) -> None:
    # The key was revoked or the .env is elsewhere: the run must still start to a file (and `eval` must work).
    from app.cli import prepare_run

    logdir = tmp_path / "run"
    _, rundir, _ = prepare_run(["twitch"], [], logdir, SECRETS)
    rundir.unlock()
    # The config that actually runs is still checked: twitch without a key is refused, naming what is missing.
    with pytest.raises(ConfigError, match="needs the stream key"):
        prepare_run([], [], logdir, {})
    cfg, rundir, changes = prepare_run([], [("stream.target", "file")], logdir, {})
    rundir.unlock()
    assert cfg.stream.target == "file" and cfg.stream.stream_key == ""
    assert changes == ["stream.target: 'twitch' -> 'file'"]


def test_config_show_of_a_run_dir_shows_its_saved_config(tmp_path, capsys) -> None:
    from app.cli import prepare_run

    logdir = tmp_path / "run"
    _, rundir, _ = prepare_run([], [("env.id", "catch"), ("run.name", "myrun")], logdir, {})
    # The run keeps its lock (it is running): show reads the file without taking it.
    assert main(["config", "show", "--logdir", str(logdir)]) == 0
    out = capsys.readouterr().out
    assert "id: catch" in out and "name: myrun" in out
    rundir.unlock()
    assert main(["config", "show", "--logdir", str(logdir), "--run.name", "other"]) == 0
    assert "name: other" in capsys.readouterr().out
    assert main(["config", "show", "--logdir", str(tmp_path / "none")]) == 0
    captured = capsys.readouterr()
    assert "id: crafter" in captured.out and "no run in" in captured.err
    assert not (tmp_path / "none").exists()


def test_the_shipped_systemd_unit_runs_a_valid_command() -> None:
    import configparser
    import shlex
    from pathlib import Path

    from app.cli import build_parser

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(Path(__file__).parents[2] / "docs" / "dreamstream.service")
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/.venv/bin/dreamstream")
    args = build_parser().parse_args(argv[1:])  # argparse exits on an option the CLI does not know
    assert args.command == "run" and args.logdir is not None
    assert service["Restart"] == "always" and service["RestartPreventExitStatus"] == "2"  # 2: a config error
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) >= 120


def test_a_saved_config_from_another_version_is_upgraded_not_refused(tmp_path) -> None:
    # The first release that removes or renames a key would otherwise strand every existing run dir.
    from app import config
    from app.cli import prepare_run

    logdir = tmp_path / "run"
    _, rundir, _ = prepare_run([], [("env.id", "catch"), ("stream.bitrate_kbps", 3000)], logdir, {})
    rundir.unlock()
    text = (logdir / "config.yaml").read_text()
    header, body = text.split("\n", 1)
    text = header.rsplit(" ", 1)[0] + " 0.0.1-old\n" + body.replace("  bitrate_kbps: 3000\n", "")
    text = text.replace("stream:\n", "stream:\n  old_knob: 7\n  bitrate_old: 2500\n", 1)  # the key's old name
    (logdir / "config.yaml").write_text(text + "legacy:\n  panel: true\n")
    config.RENAMED_KEYS["stream.bitrate_old"] = "stream.bitrate_kbps"
    try:
        cfg, rundir, changes = prepare_run([], [], logdir, {})
    finally:
        del config.RENAMED_KEYS["stream.bitrate_old"]
    rundir.unlock()
    assert cfg.env.id == "catch" and cfg.stream.bitrate_kbps == 2500  # the renamed key's value came along
    notes = [c for c in changes if c.startswith("saved config: ")]
    assert notes[0].startswith("saved config: written by dreamstream 0.0.1-old, read by ")
    assert any(n.startswith("saved config: stream.old_knob = 7 is not a key of this version; dropped") for n in notes)
    assert "saved config: legacy.panel = true is not a key of this version; dropped" in notes
    assert "saved config: stream.bitrate_old is now stream.bitrate_kbps" in notes
    (kept,) = logdir.glob("config.yaml.before-*")
    assert "old_knob: 7" in kept.read_text() and notes[-1] == f"saved config: the file as it was is kept as {kept.name}"
    assert "old_knob" not in (logdir / "config.yaml").read_text()
    _, rundir, changes = prepare_run([], [], logdir, {})  # once rewritten, nothing more to say
    rundir.unlock()
    assert changes == []


def test_history_exports_every_match_as_csv_or_json_lines(tmp_path, capsys) -> None:
    import csv
    import io
    import json

    from app.cli import prepare_run
    from app.storage import ensure_run, open_database, record_episode, upgrade

    logdir = tmp_path / "run"
    cfg, rundir, _ = prepare_run([], [("env.id", "chess")], logdir, {})
    engine, sessions = open_database(rundir.database_path(cfg.storage.database))
    upgrade(engine)
    with sessions.begin() as session:
        run_id = ensure_run(session, "run", "chess", "DreamerV3").id
        for i in range(1203):  # more than one read batch
            record_episode(session, run_id, env_id="chess", env_step=10 * i, mode="eval" if i % 3 == 0 else "train",
                           checkpoint=7 if i % 3 == 0 else None,
                           episode={"return": 1.0, "length": 40, "result": "win", "opponent": "random",
                                    "pgn": f'1. e4 e5 {{"game {i}", a, b}}'})
    engine.dispose()  # the run keeps its lock: export reads the database beside it
    assert main(["history", "--logdir", str(logdir)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1203 and [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    assert rows[0]["run"] == "run" and rows[0]["opponent"] == "random" and rows[0]["checkpoint"] == "7"
    assert json.loads(rows[5]["details"]) == {"pgn": '1. e4 e5 {"game 5", a, b}'}  # quotes and commas survive
    out = tmp_path / "evals.jsonl"
    assert main(["history", "--logdir", str(logdir), "--mode", "eval", "--format", "jsonl", "--out", str(out)]) == 0
    evals = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(evals) == 401 and {e["mode"] for e in evals} == {"eval"} and evals[0]["env_step"] == 0
    rundir.unlock()
    assert main(["history", "--logdir", str(tmp_path / "none")]) == 2
    assert "no such run dir" in capsys.readouterr().err
    assert main(["history", "--logdir", str(logdir), "--out", str(tmp_path / "no" / "dir" / "x.csv")]) == 2
    assert "cannot write it" in capsys.readouterr().err
    # Piped into `head`: the reader goes away; no traceback, status 0.
    import subprocess
    import sys

    piped = subprocess.run(f"{sys.executable} -m app.cli history --logdir {logdir} | head -2", shell=True,
                           capture_output=True, text=True, cwd=tmp_path)
    assert piped.stdout.startswith("id,run,ended_at") and "Traceback" not in piped.stderr, piped.stderr


def test_under_nohup_sighup_stays_ignored() -> None:
    import signal

    from app.cli import _install_signal_handlers

    class Stub:
        stop_event = None

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does
        _install_signal_handlers(Stub())
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        _install_signal_handlers(Stub())
        assert callable(signal.getsignal(signal.SIGHUP))
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_reading_an_old_saved_config_copes_with_odd_content() -> None:
    from app import config
    from app.config import upgrade_saved

    config.RENAMED_KEYS["stream.bitrate_old"] = "stream.bitrate_kbps"
    try:
        flat, notes = upgrade_saved({"storage": None, "chat": {},
                                     "stream": {"bitrate_old": 2500, "bitrate_kbps": 3000, "fsp": 30}})
    finally:
        del config.RENAMED_KEYS["stream.bitrate_old"]
    assert flat == {"stream.bitrate_kbps": 3000}  # empty sections are no keys; the new name's value wins
    assert notes == ["stream.bitrate_old was renamed stream.bitrate_kbps, which is set too; stream.bitrate_old = "
                     "2500 dropped", "stream.fsp = 30 is not a key of this version; dropped (did you mean "
                     "'stream.fps'?)"]


def test_a_refused_second_start_leaves_no_backup_of_the_config(tmp_path) -> None:
    from app.cli import prepare_run
    from app.errors import RunDirError

    logdir = tmp_path / "run"
    _, rundir, _ = prepare_run([], [], logdir, {})
    rundir.unlock()
    (logdir / "config.yaml").write_text((logdir / "config.yaml").read_text() + "legacy:\n  panel: true\n")
    _, running, _ = prepare_run([], [], logdir, {})  # the first start: its backup
    try:
        with pytest.raises(RunDirError):
            prepare_run([], [], logdir, {})
        assert len(list(logdir.glob("config.yaml.before-*"))) == 1
    finally:
        running.unlock()


def test_config_show_of_a_twitch_run_dir_without_the_key(tmp_path, capsys, monkeypatch) -> None:
    from app.cli import prepare_run

    monkeypatch.delenv("TWITCH_STREAM_KEY", raising=False)
    logdir = tmp_path / "run"
    _, rundir, _ = prepare_run(["twitch"], [], logdir, SECRETS)
    rundir.unlock()
    assert main(["config", "show", "--logdir", str(logdir)]) == 0
    out = capsys.readouterr().out
    assert "target: twitch" in out and "stream_key: (not set here)" in out and "placeholder" not in out
    monkeypatch.setenv("TWITCH_STREAM_KEY", "")  # set but empty (`TWITCH_STREAM_KEY=` in a .env)
    assert main(["config", "show", "--logdir", str(logdir)]) == 0
    assert "stream_key: (not set here)" in capsys.readouterr().out
