"""The real `dreamstream` console script: one-line errors, headless train, eval, db upgrade."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time

import pytest

from app.config import load_blocks
from tests.conftest import DREAMSTREAM

pytestmark = pytest.mark.integration

BLOCK_NAMES = ", ".join(sorted(n for n in load_blocks() if n != "defaults"))


def run(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([DREAMSTREAM, *args], capture_output=True, text=True, timeout=timeout_s)


@pytest.mark.parametrize(("args", "line"), [
    pytest.param(["train", "--configs", "nonsense"],
                 "ConfigError: unknown config block 'nonsense'; valid blocks: " + BLOCK_NAMES, id="block"),
    pytest.param(["run", "--trainer.batchsize", "3"],
                 "ConfigError: unknown key 'trainer.batchsize' (did you mean 'trainer.batch_size'?)", id="key"),
])
def test_config_errors_are_one_line_with_status_2(args, line, tmp_path) -> None:
    out = subprocess.run([DREAMSTREAM, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert (out.returncode, out.stdout, out.stderr) == (2, "", line + "\n")
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_train_headless_eval_and_db_upgrade(tmp_path) -> None:
    logdir = tmp_path / "run"
    train = run("train", "--configs", "tiny", "--logdir", str(logdir), "--run.steps", "300")
    assert train.returncode == 0, train.stderr
    state = json.loads((logdir / "state.json").read_text())
    assert state["env_step"] == 300
    assert not list((logdir / "recordings").iterdir()), "train is headless: no stream"
    assert not (logdir / "dashboard.url").exists()

    ev = run("eval", "--logdir", str(logdir), "--episodes", "2", "--env.max_episode_steps", "50")
    assert ev.returncode == 0, ev.stderr
    saved = max(int(p.name) for p in (logdir / "checkpoints").iterdir() if p.name.isdigit())
    assert f"over 2 episodes of DreamerV3 from checkpoint {saved}" in ev.stdout  # the trained agent, restored
    with sqlite3.connect(logdir / "dreamstream.db") as db:
        rows = db.execute("select mode, length from episodes where mode = 'eval'").fetchall()
    assert rows == [("eval", 50), ("eval", 50)]
    assert "max_episode_steps: 50" not in (logdir / "config.yaml").read_text()  # eval's overrides are its own

    up = run("db", "upgrade", "--logdir", str(logdir))
    assert up.returncode == 0 and up.stdout.strip().endswith("schema already at 0001"), up.stdout
    fresh = tmp_path / "other.db"
    up = run("db", "upgrade", "--database", str(fresh))
    assert up.returncode == 0 and f"{fresh}: schema empty -> 0001" in up.stdout.replace("\n", "")


def test_eval_rates_a_chess_agent_against_the_ladder(tmp_path) -> None:
    logdir = tmp_path / "chess"
    ev = run("eval", "--configs", "tiny", "--logdir", str(logdir), "--env.id", "chess", "--episodes", "3",
             "--env.chess.max_plies", "30")
    assert ev.returncode == 0, ev.stderr
    assert "over 3 episodes of an untrained DreamerV3 agent" in " ".join(ev.stdout.split())
    # No rating yet: the games go to the three rungs nearest the training opponent (the random mover).
    with sqlite3.connect(logdir / "dreamstream.db") as db:
        opponents = sorted(o for (o,) in db.execute("select opponent from episodes where mode = 'eval'"))
    assert opponents == ["epsilon 0.5", "epsilon 0.75", "random"]
    assert re.search(r"Elo -?\d+ ± \d+ \(s\.e\.; Stockfish 15\.1 engine scale\) from 3 games against the ladder",
                     " ".join(ev.stdout.split())), ev.stdout  # rich wraps long lines


def test_a_closed_terminal_stops_the_run_cleanly(tmp_path) -> None:
    # SIGHUP (an SSH session dropped under a foreground `make run`) killed the process at once: no last state
    # save, no session_stopped event, a stale dashboard.url. It now stops like Ctrl-C.
    logdir = tmp_path / "run"
    # SIGHUP as a terminal leaves it (a test worker may run with it ignored, as under nohup, which is kept).
    proc = subprocess.Popen([DREAMSTREAM, "train", "--configs", "tiny", "--trainer.agent", "random", "--env.id",
                             "catch", "--logdir", str(logdir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))

    def episodes() -> int:
        if not (logdir / "dreamstream.db").exists():
            return 0
        with sqlite3.connect(logdir / "dreamstream.db") as db:
            return db.execute("select count(*) from episodes").fetchone()[0]

    try:
        log = logdir / "logs" / "dreamstream.log"
        deadline = time.monotonic() + 240
        while not episodes():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.2)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=240) == 0
    finally:
        proc.kill()
    assert "stopping: received SIGHUP" in log.read_text()
    with sqlite3.connect(logdir / "dreamstream.db") as db:
        kinds = [k for (k,) in db.execute("select kind from events order by id")]
    assert kinds[0] == "session_started" and kinds[-1] == "session_stopped"
    assert json.loads((logdir / "state.json").read_text())["env_step"] > 0
