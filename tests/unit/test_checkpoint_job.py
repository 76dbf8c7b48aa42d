"""The app's checkpoint job on the tiny agent: scored by real evaluation episodes, ranked, and rolled back to
the best checkpoint after enough clearly worse ones in a row (the real Runner, Training and SQLite)."""

from __future__ import annotations

import json
import sqlite3

import jax
import numpy as np
import pytest

from app.config import load_blocks, resolve
from app.evaluation import Score
from app.rundir import RunDir
from app.runner import Runner
from tests.conftest import wait_for


@pytest.fixture
def open_runner(tmp_path):
    """open_runner(blocks, overrides) -> a train-mode Runner opened on a new run dir (closed after the test)."""
    opened = []

    def open_(blocks: list[str], overrides: list[tuple[str, object]]) -> Runner:
        rundir = RunDir(tmp_path / "run")
        rundir.create()
        r = Runner(resolve(blocks, overrides, environ={}, blocks=load_blocks()), rundir, mode="train")
        opened.append(r)
        r._open()
        return r

    yield open_
    for r in opened:
        r.training.close()
        r.metrics.close()
        r._engine.dispose()


@pytest.fixture
def runner(open_runner):
    return open_runner(["tiny", "catch"], [("scheduler.eval_episodes", 3), ("scheduler.rollback_after", 2)])


def equal_trees(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool((np.asarray(x) == np.asarray(y)).all()), a, b)))


def test_evaluation_plays_the_snapshot_and_keeps_its_episodes(runner) -> None:
    t = runner.training
    t.learner.updates = 5
    runner.checkpoint()
    assert t.checkpoint_step == 5
    best = t.best()
    assert best is not None and best[0] == 5 and best[1].episodes == 3
    with sqlite3.connect(runner.rundir.database_path("dreamstream.db")) as db:
        rows = db.execute("select mode, score, details from episodes").fetchall()
    assert [mode for mode, _, _ in rows] == ["eval"] * 3
    assert all(json.loads(details)["checkpoint"] == 5 for _, _, details in rows)
    assert best[1] == Score.of([score for _, score, _ in rows])
    assert runner.last_eval["checkpoint"] == 5 and runner.status()["training"]["best_checkpoint"]["step"] == 5
    assert runner._chat_stats()["last_eval"] == f"score {best[1].mean:.2f} ± {best[1].sem:.2f} (checkpoint 5)"
    rows = [json.loads(line) for line in (runner.rundir.metrics_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/score" in row for row in rows)
    runner.checkpoint()  # nothing trained since: no second evaluation or save
    with sqlite3.connect(runner.rundir.database_path("dreamstream.db")) as db:
        assert db.execute("select count(*) from episodes").fetchone() == (3,)


def test_two_clearly_worse_checkpoints_in_a_row_roll_back_to_the_best(runner, monkeypatch) -> None:
    t = runner.training
    base = t.agent.state

    def shifted(delta: float):
        return base._replace(params=jax.tree.map(lambda x: x + delta, base.params))

    scores = iter([Score(5.0, 0.1, 3), Score(9.0, 0.1, 3), Score(1.0, 0.1, 3), Score(8.9, 0.1, 3),
                   Score(1.0, 0.1, 3), Score(1.0, 0.1, 3)])
    monkeypatch.setattr(runner, "_evaluate", lambda step, state: next(scores))
    for update, delta in zip(range(11, 17), range(1, 7), strict=True):
        t.agent.load_state(shifted(delta))
        t.learner.updates = update
        runner.checkpoint()
        if update < 16:
            assert equal_trees(t.agent.state.params, shifted(delta).params), f"no rollback yet at {update}"
    # 13 was worse, 14 was not (within 2 s.e.: the count restarted), 15 and 16 were: back to 12 (score 9).
    assert equal_trees(t.agent.state.params, shifted(2).params)
    assert equal_trees(t.agent.params, shifted(2).params)
    assert t.learner.updates == 16 and runner.status()["training"]["worse_in_a_row"] == 0
    with sqlite3.connect(runner.rundir.database_path("dreamstream.db")) as db:
        events = db.execute("select kind, message from events where kind = 'rollback'").fetchall()
    assert len(events) == 1 and events[0][1].startswith("to checkpoint 12: 2 checkpoints in a row scored clearly "
                                                         "below the best, checkpoint 12 (9 ± 0.1 (3 episodes))")
    assert runner._overlay_state().notice == "rolled back to checkpoint #12"
    # A restart resumes from the rolled-back state: it replaced the degraded checkpoint 16 on disk.
    step, state, _ = t.checkpointer.restore(t.agent.state, {"updates": 0, "env_step": 0})
    assert step == 16 and equal_trees(state.params, shifted(2).params)
    assert t.best()[0] == 12 and t.checkpointer.metrics(16) is None
    # Its descendants never match 12's score again: no second rollback to it (that would loop forever).
    monkeypatch.setattr(runner, "_evaluate", lambda step, state: Score(1.0, 0.1, 3))
    t.agent.load_state(shifted(7))
    for update in (17, 18):
        t.learner.updates = update
        runner.checkpoint()
    assert equal_trees(t.agent.state.params, shifted(7).params)  # kept: no rollback
    with sqlite3.connect(runner.rundir.database_path("dreamstream.db")) as db:
        kinds = [k for (k,) in db.execute("select kind from events where kind like 'rollback%' order by id")]
    assert kinds == ["rollback", "rollback_skipped"]
    # A restart keeps both the guard and the count (a restart loop rolled back to 12 again and again).
    t.learner.updates = 19
    runner.checkpoint()  # one more clearly worse: the count is 1 of 2
    assert json.loads(runner.rundir.state_path.read_text())["rollback"] == {"worse_in_a_row": 1,
                                                                            "auto_rollback_to": 12}
    again = Runner(runner.cfg, runner.rundir, mode="train")
    assert (again._rollback_rule.worse_in_a_row, again._auto_rollback_to) == (1, 12)
    runner.rundir.write_state({"env_step": 0, "rollback": {"worse_in_a_row": "many"}})
    fresh = Runner(runner.cfg, runner.rundir, mode="train")  # a damaged entry: a warning, the rule starts afresh
    assert (fresh._rollback_rule.worse_in_a_row, fresh._auto_rollback_to) == (0, None)


def test_operator_controls(runner) -> None:
    from app.scheduler import build_scheduler, declare_jobs

    t = runner.training
    assert runner.control("pause") == (False, "the app is still starting")  # no scheduler yet
    cfg = runner.cfg
    runner._scheduler = build_scheduler(declare_jobs(cfg.run, cfg.scheduler, save_state=runner.save_state,
                                                     report_status=runner.report_status,
                                                     checkpoint=runner.checkpoint, prune_disk=runner.prune_disk))
    runner._scheduler.start()
    try:
        operate(runner, t)
    finally:
        runner._scheduler.shutdown(wait=True)
    runner.stop_event.set()
    assert runner.control("resume") == (False, "the app is stopping")


def operate(runner, t) -> None:
    assert runner.control("checkpoint") == (False, "no update yet")
    assert runner.control("rollback") == (False, "no checkpoint has a score yet: there is nothing to roll back to")
    assert runner.control("pause")[0] and t.learner.paused.is_set()
    assert runner.control("pause") == (False, "learning is paused already")
    assert runner.control("resume")[0] and not t.learner.paused.is_set()
    assert runner.control("explode") == (False, "unknown control 'explode'; one of: checkpoint, rollback, pause, "
                                                "resume, stream_reconnect")
    assert runner.control("stream_reconnect") == (False, "this run does not stream (stream.enabled is false, or "
                                                         "`dreamstream train`)")
    t.learner.updates = 4
    assert runner.control("checkpoint") == (True, "checkpoint started (evaluating 3 episodes, then saving); "
                                                  "see the events")
    wait_for(lambda: t.checkpoint_step == 4 and not runner._checkpoint_lock.locked(), "the scheduler to run it")
    assert t.best()[0] == 4 and runner.last_eval["checkpoint"] == 4
    assert runner.control("checkpoint") == (False, "nothing to checkpoint: no update since checkpoint 4")
    with runner._checkpoint_lock:  # the job is scoring a snapshot: no rollback under it
        assert runner.control("rollback") == (False, "a checkpoint is being scored and saved; try again when it "
                                                     "is done")
    assert runner.control("rollback") == (True, "rolled back to checkpoint 4")
    assert runner.control("rollback", 99) == (False, "there is no checkpoint 99; kept: [4]")


def test_a_snapshot_is_held_on_the_host_while_it_is_evaluated_and_saved_from_there(runner, monkeypatch) -> None:
    """On a GPU, the snapshot's whole train state stayed on the device for the evaluation's minutes, beside the
    learner's own: a big model could run out of memory. Only its parameters go back to the device to act."""
    seen = {}

    def capture(step, state):
        seen["state"], seen["params"] = state, runner.training.params_of(state)
        return Score(1.0, 0.1, 3)

    monkeypatch.setattr(runner, "_evaluate", capture)
    t = runner.training
    t.learner.updates = 3
    expected = jax.device_get(t.agent.state)
    runner.checkpoint()
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(seen["state"]))
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(seen["params"]))
    step, restored, _ = t.checkpointer.restore(t.agent.state, {"updates": 0, "env_step": 0})
    assert step == 3 and equal_trees(restored, expected)


def test_a_failing_evaluation_still_saves_the_checkpoint_unscored(runner, monkeypatch) -> None:
    def broken(step, state):
        raise RuntimeError("stockfish died")

    monkeypatch.setattr(runner, "_evaluate", broken)
    runner.training.learner.updates = 9
    runner.checkpoint()
    assert runner.training.checkpoint_step == 9 and runner.training.best() is None
    with sqlite3.connect(runner.rundir.database_path("dreamstream.db")) as db:
        events = db.execute("select message from events where kind = 'eval_failed'").fetchall()
    assert events == [("update 9: RuntimeError: stockfish died",)]


def test_an_evaluation_past_its_time_limit_stops_and_the_checkpoint_is_saved_unscored(open_runner,
                                                                                     monkeypatch) -> None:
    """An env without an episode limit (or a hung one) held the checkpoint lock for good: every later checkpoint
    was skipped and the operator's rollback refused."""
    import time

    import app.runner

    r = open_runner(["tiny", "catch"], [("scheduler.eval_episodes", 3), ("scheduler.eval_timeout_min", 0.005)])
    seen = []

    def endless(env, act, episodes, *, seed, stop):
        began = time.monotonic()
        while not stop.is_set():  # an episode that never ends
            time.sleep(0.01)
        seen.append(time.monotonic() - began)
        return []

    monkeypatch.setattr(app.runner, "play_episodes", endless)
    r.training.learner.updates = 5
    r.checkpoint()
    assert len(seen) == 1 and 0.2 < seen[0] < 60
    assert r.training.checkpoint_step == 5 and r.training.best() is None and not r._checkpoint_lock.locked()
    with sqlite3.connect(r.rundir.database_path("dreamstream.db")) as db:
        events = db.execute("select message from events where kind = 'eval_timeout'").fetchall()
    assert len(events) == 1 and "took longer than scheduler.eval_timeout_min = 0.005 min (0 of 3" in events[0][0]


def test_chess_checkpoints_are_rated_by_games_against_the_ladder(open_runner) -> None:
    """Real games against the two rungs nearest the training opponent (random mover; epsilon 0.75 over a real
    Stockfish), the Elo fitted from them ranks the checkpoint and becomes the next evaluation's estimate."""
    from app.rating import GAME_SCORE, fit_rating

    r = open_runner(["tiny"], [("env.id", "chess"), ("env.chess.max_plies", 40), ("scheduler.eval_episodes", 4),
                               ("scheduler.elo_rungs", 2)])
    rundir = r.rundir
    r.training.learner.updates = 3
    r.checkpoint()
    with sqlite3.connect(rundir.database_path("dreamstream.db")) as db:
        games = db.execute("select opponent, result, details from episodes where mode = 'eval'").fetchall()
    assert sorted(opponent for opponent, _, _ in games) == ["epsilon 0.75", "epsilon 0.75", "random",
                                                            "random"]
    assert {json.loads(details)["agent_color"] for _, _, details in games} == {"white", "black"}
    rung = {"random": -153.0, "epsilon 0.75": 178.0}
    elo, se = fit_rating([(rung[opponent], GAME_SCORE[result]) for opponent, result, _ in games])
    best = r.training.best()
    assert best is not None and best[0] == 3 and best[1] == Score(elo, se, 4)
    assert r._elo_estimate == elo and r.last_eval["kind"] == "Elo"
    assert r._chat_stats()["last_eval"] == f"Elo {elo:.0f} ± {se:.0f} (checkpoint 3)"  # chat's !stats
    assert r.status()["training"]["ranked_by"] == "Elo from 4 games against the ladder"
    rows = [json.loads(line) for line in (rundir.metrics_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(row.get("eval/elo") == elo for row in rows)


def test_chess_curriculum_moves_the_actor_to_the_next_rung_and_a_restart_keeps_it(open_runner, monkeypatch) -> None:
    import threading

    r = open_runner(["tiny"], [("env.id", "chess"), ("env.chess.max_plies", 20), ("scheduler.eval_episodes", 4),
                               ("run.pace_to_learner", False)])
    cfg, rundir = r.cfg, r.rundir
    monkeypatch.setattr(r, "_evaluate", lambda step, state: Score(-100.0, 40.0, 4))
    r.training.learner.updates = 1
    r.checkpoint()  # rated below what beating the random mover (-153) 3 games in 4 takes: it stays
    assert r.training_opponent is None and r.status()["training"]["opponent"] == "random"
    stop = threading.Event()
    actor = threading.Thread(target=r._act, args=(stop,))
    actor.start()
    try:
        wait_for(lambda: r.counters.episodes >= 1, "a game against the random mover")
        monkeypatch.setattr(r, "_evaluate", lambda step, state: Score(300.0, 40.0, 4))
        r.training.learner.updates = 2
        r.checkpoint()
        assert r.training_opponent == "epsilon:0.75"
        assert json.loads(rundir.state_path.read_text())["curriculum"] == {"opponent": "epsilon:0.75",
                                                                           "from": "random"}
        switched_at = r.counters.episodes + 1  # the game in progress ends against its opponent
        wait_for(lambda: r.counters.episodes >= switched_at + 2, "two games against the next rung")
    finally:
        stop.set()
        actor.join(timeout=60)
    with sqlite3.connect(rundir.database_path("dreamstream.db")) as db:
        kinds = db.execute("select kind, message from events where kind = 'opponent'").fetchall()
        opponents = [o for (o,) in db.execute("select opponent from episodes where mode = 'train' order by id")]
    assert kinds == [("opponent", "random -> epsilon:0.75 (Elo 300 ± 40 (4 episodes))")]
    assert opponents[0] == "random" and opponents[switched_at:] == ["epsilon 0.75"] * len(opponents[switched_at:])
    assert len(opponents[switched_at:]) >= 2
    assert Runner(cfg, rundir, mode="train").training_opponent == "epsilon:0.75"  # resumed where it was
    # Resumed with another opponent configured: the operator's choice wins (the climb started elsewhere).
    other = resolve(["tiny"], [("env.id", "chess"), ("env.chess.opponent", "stockfish:nodes=1000")],
                    environ={}, blocks=load_blocks())
    assert Runner(other, rundir, mode="train").training_opponent is None
    # A session with the curriculum off leaves the stored climb for the next one.
    off = resolve(["tiny"], [("env.id", "chess"), ("scheduler.curriculum", False)], environ={}, blocks=load_blocks())
    quiet = Runner(off, rundir, mode="train")
    assert quiet.training_opponent is None and quiet._actor_env_config().chess.opponent == "random"
    quiet.save_state()
    assert json.loads(rundir.state_path.read_text())["curriculum"]["opponent"] == "epsilon:0.75"
    assert Runner(cfg, rundir, mode="train").training_opponent == "epsilon:0.75"
    # A regression (or a rollback) that leaves the agent under 25 % against its rung: back one, not below random.
    for updates in (3, 4):
        monkeypatch.setattr(r, "_evaluate", lambda step, state: Score(-250.0, 40.0, 4))
        r.training.learner.updates = updates
        r.checkpoint()
        assert r.training_opponent == "random"
    assert json.loads(rundir.state_path.read_text())["curriculum"] == {"opponent": "random", "from": "random"}


def test_a_rollback_takes_the_curriculum_back_to_the_rung_of_that_checkpoint(open_runner, monkeypatch) -> None:
    r = open_runner(["tiny"], [("env.id", "chess"), ("env.chess.max_plies", 20), ("scheduler.eval_episodes", 4),
                               ("scheduler.rollback_after", 0)])
    for updates, elo, opponent in [(1, 300.0, "epsilon:0.75"), (2, 700.0, "epsilon:0.5")]:
        monkeypatch.setattr(r, "_evaluate", lambda step, state, elo=elo: Score(elo, 40.0, 4))
        r.training.learner.updates = updates
        r.checkpoint()  # saved with the rung it trained against, then the curriculum climbs
        assert r.training_opponent == opponent
    assert r.training.checkpointer.metrics(1)["opponent_elo"] == -153.0  # trained against the random mover
    assert r.training.checkpointer.metrics(2)["opponent_elo"] == 178.0
    assert r.rollback(1) == 1
    assert r.training_opponent == "random"
    assert json.loads(r.rundir.state_path.read_text())["curriculum"]["opponent"] == "random"
    with sqlite3.connect(r.rundir.database_path("dreamstream.db")) as db:
        last = db.execute("select message from events where kind = 'opponent' order by id desc limit 1").fetchone()
    assert last == ("epsilon:0.5 -> random (rolled back to checkpoint 1)",)


def test_the_operators_pause_is_kept_by_sessions_that_cannot_resume_it(open_runner) -> None:
    """A headless `train` learns, but the next `run` with a dashboard must still start paused; likewise after a
    start that failed before the learner existed."""
    r = open_runner(["tiny", "catch"], [])
    r.rundir.write_state({**r.rundir.read_state(), "paused": True})
    before_open = Runner(r.cfg, r.rundir, mode="train")
    before_open.save_state()  # no Training yet (a start that failed early)
    assert json.loads(r.rundir.state_path.read_text())["paused"] is True
    headless = Runner(r.cfg, r.rundir, mode="train")
    headless.training = r.training  # a learner, but no dashboard to resume it from
    assert not r.training.learner.paused.is_set()
    headless.save_state()
    assert json.loads(r.rundir.state_path.read_text())["paused"] is True


def test_learning_curves_survive_a_restart(open_runner) -> None:
    r = open_runner(["tiny", "catch"], [])
    for step in range(1, 31):
        r._episode_done(step, {"return": float(step % 3), "length": 9})  # drawn from the metrics rows
    r.metrics.write(30, {"eval/score": 0.75, "eval/score_sem": 0.1})
    r.counters.env_step = 30
    r.save_state()
    again = Runner(r.cfg, r.rundir, mode="train")
    assert again.feed.curves_data() == r.feed.curves_data()
    assert again.feed.curves_data()["eval score"]["values"] == [0.75]
    assert again.feed.state({}).curves[0].steps[-1] == 30  # the overlay draws them at once

    # A kill -9 after more episodes: state.json still says 30, but no episode played since is lost to the curves.
    for step in range(31, 36):
        r._episode_done(step, {"return": 5.0, "length": 9})
    killed = Runner(r.cfg, r.rundir, mode="train")
    assert killed.counters.env_step == 30 and killed.feed.curves_data() == r.feed.curves_data()
    assert killed.feed.curves_data()["episode score"]["count"] == 35
    killed.save_state()  # a short session that saves before its env step passes 35 keeps them too
    assert Runner(r.cfg, r.rundir, mode="train").feed.curves_data() == r.feed.curves_data()

    # state.json reset by hand (its counters start again): curves that reach further would be drawn wrongly,
    # and the old rows are not taken in again at the next start.
    r.rundir.write_state({})
    fresh = Runner(r.cfg, r.rundir, mode="train")
    assert fresh.feed.curves_data()["episode score"]["values"] == []
    fresh.save_state()
    assert Runner(r.cfg, r.rundir, mode="train").feed.curves_data()["episode score"]["values"] == []
    # A curves file that cannot be read is rebuilt from metrics.jsonl; nothing there stops a start either.
    r.rundir.write_state({"env_step": 30})
    (r.rundir.metrics_dir / "curves.json").write_text('{"curves": {"Elo": {"per_point": 1, "points": [[1, NaN]], '
                                                      '"pending": []}}}')
    assert Runner(r.cfg, r.rundir, mode="train").feed.curves_data()["Elo"]["values"] == []


def test_low_disk_space_is_warned_once_and_its_end_is_told(open_runner, caplog) -> None:
    """Measured on the real disk of the run dir; a threshold above any disk's size makes it 'low'."""
    import dataclasses

    r = open_runner(["tiny", "catch"], [("storage.min_free_gb", 1e9)])
    disk = r.check_disk()
    assert disk["low"] and 0 <= disk["free_gb"] <= disk["total_gb"] and r.status()["disk"] == disk
    assert r.status()["metrics"] == {"write_errors": 0, "tensorboard_dropped": 0}  # the dashboard's "metrics lost"
    r.prune_disk()  # the minute's job checks again: still low, no second warning
    assert caplog.text.count("GB free on the disk of") == 1 and "storage.min_free_gb = 1e+09" in caplog.text
    free = disk["free_gb"]
    # Back above the threshold only with a margin (recordings move the free space up and down every minute).
    r.cfg = dataclasses.replace(r.cfg, storage=dataclasses.replace(r.cfg.storage, min_free_gb=free - 0.5))
    assert r.check_disk()["low"]
    r.cfg = dataclasses.replace(r.cfg, storage=dataclasses.replace(r.cfg.storage, min_free_gb=0.0))
    assert not r.check_disk()["low"]
    with sqlite3.connect(r.rundir.database_path(r.cfg.storage.database)) as db:
        kinds = [k for (k,) in db.execute("select kind from events where kind like 'disk%' order by id")]
    assert kinds == ["disk_low", "disk_ok"]


def test_the_huds_update_rate_is_measured_so_it_falls_to_zero_when_updates_stop(open_runner) -> None:
    import time

    r = open_runner(["tiny", "catch"], [])
    learner = r.training.learner
    now = time.monotonic()
    r._last_report = (now - 10.0, r.counters.env_step, learner.updates)
    learner.updates += 50  # 50 updates in the last 10 s, none of them reported in a metrics row yet
    r.report_status()
    assert 4.0 < r._overlay_state().hud["updates / s"] <= 5.0
    learner.update_s_ema = 0.2  # the learner's own average stays at its last value when it stops...
    r._last_report = (time.monotonic() - 10.0, r.counters.env_step, learner.updates)
    r.report_status()
    assert r._overlay_state().hud["updates / s"] == 0.0  # ...the HUD does not


def test_the_disk_job_empties_old_training_details_hourly(open_runner, caplog) -> None:
    from datetime import UTC, datetime, timedelta

    from app.storage import Episode, add_episode

    caplog.set_level("INFO")
    r = open_runner(["tiny", "catch"], [("storage.keep_train_details_days", 7)])
    with r.sessions.begin() as session:
        for days in (30, 8, 6):
            ep = add_episode(session, r.run_id, env_id="catch", score=1.0, length=9, env_step=days,
                             details={"pgn": "x" * 100})
            ep.ended_at = datetime.now(UTC) - timedelta(days=days)
    r.prune_disk()
    with r.sessions() as session:
        kept = {e.env_step: e.details for e in session.query(Episode)}
    assert kept == {30: {}, 8: {}, 6: {"pgn": "x" * 100}}
    assert "emptied the details of 2 training episodes older than 7 days" in caplog.text
    with r.sessions.begin() as session:
        session.query(Episode).filter(Episode.env_step == 6).one().ended_at -= timedelta(days=5)
    r.prune_disk()  # within the hour: not again
    with r.sessions() as session:
        assert session.query(Episode).filter(Episode.env_step == 6).one().details == {"pgn": "x" * 100}
    assert r.prune_history() == 1  # (the job's own call, when the hour is up)
