"""Scoring checkpoints and the rollback rule: scores with standard errors, 'clearly below', evaluation episodes."""

from __future__ import annotations

import math
import threading

import pytest

import envs
from app.evaluation import RollbackRule, Score, play_episodes


def test_score_is_the_mean_with_its_standard_error_and_round_trips_through_checkpoint_metrics() -> None:
    score = Score.of([1.0, 2.0, 3.0, 6.0])
    assert score.mean == 3.0 and score.episodes == 4
    assert score.sem == pytest.approx(math.sqrt(14 / 3) / 2)  # sample s.d. / sqrt(n)
    assert Score.of([5.0]) == Score(5.0, 0.0, 1)
    saved = {"score": score.mean, **score.extra_metrics()}
    assert Score.from_metrics(saved) == score
    assert Score.from_metrics({"score": 2.5}) == Score(2.5, 0.0, 0)  # a checkpoint ranked before the s.e.m. was kept
    with pytest.raises(ValueError):
        Score.of([])


def test_clearly_below_needs_more_than_z_combined_standard_errors() -> None:
    best = Score(10.0, 3.0, 10)
    assert not Score(1.0, 4.0, 10).clearly_below(best, z=2.0)  # 9 below, but 2 x 5 = 10 s.e. allowed
    assert Score(-0.5, 4.0, 10).clearly_below(best, z=2.0)
    assert not Score(10.0, 0.0, 10).clearly_below(Score(10.0, 0.0, 10), z=2.0)  # equal is never worse
    assert not Score(-100.0, 0.0, 1).clearly_below(best, z=2.0)  # one episode: no standard error to judge by
    assert not Score(-100.0, 0.0, 10).clearly_below(Score(10.0, 0.0, 1), z=2.0)


def test_rollback_only_after_the_given_number_of_clearly_worse_checkpoints_in_a_row() -> None:
    best, bad, fine = Score(10.0, 0.5, 10), Score(2.0, 0.5, 10), Score(9.5, 0.5, 10)
    rule = RollbackRule(after=3, z=2.0)
    assert [rule.observe(s, best) for s in (bad, bad, fine, bad, bad)] == [False] * 5  # a fine one restarts the count
    assert rule.worse_in_a_row == 2
    assert rule.observe(bad, best) is True and rule.worse_in_a_row == 0  # the third in a row; the count restarts
    assert rule.observe(bad, None) is False  # no scored checkpoint yet: nothing to compare with
    never = RollbackRule(after=0, z=2.0)
    assert not any(never.observe(bad, best) for _ in range(10)) and never.worse_in_a_row == 10


def test_play_episodes_plays_whole_seeded_episodes_and_stops_when_asked() -> None:
    env = envs.make_from_config(envs.EnvConfig(id="catch"))
    calls = {"n": 0}

    def act(obs, state, is_first):
        assert (state is None) == is_first  # every episode starts from a fresh state
        calls["n"] += 1
        return 1, "state"

    try:
        episodes = play_episodes(env, act, 3, seed=5)
        assert len(episodes) == 3 and all(e["length"] == 9 for e in episodes)
        assert calls["n"] == 27
        again = play_episodes(env, act, 3, seed=5)
        assert [e["return"] for e in again] == [e["return"] for e in episodes]  # same seeds, same balls
        stop = threading.Event()
        seen = []
        got = play_episodes(env, act, 5, seed=5, stop=stop,
                            on_episode=lambda i, e: (seen.append(i), stop.set() if i == 1 else None))
        assert len(got) == 2 and seen == [0, 1]
    finally:
        env.close()


def test_eval_plan_spreads_rated_games_over_the_nearest_rungs_and_scores_them() -> None:
    from app.evaluation import eval_plan, first_elo_estimate, score_of
    from app.rating import fit_rating

    env = envs.EnvConfig(id="chess")
    assert eval_plan(env, 10) == [(env, 10, None)]
    plan = eval_plan(env, 10, elo_estimate=1500, rungs=3)
    assert [(cfg.chess.opponent, n, elo) for cfg, n, elo in plan] == [
        ("stockfish", 4, 1496), ("stockfish:elo=1500", 3, 1500), ("stockfish:elo=1700", 3, 1754)]
    assert all(cfg.chess.max_plies == env.chess.max_plies for cfg, _, _ in plan)  # only the opponent changes
    assert [n for _, n, _ in eval_plan(env, 2, elo_estimate=0, rungs=3)] == [1, 1]  # no rung with zero games
    assert first_elo_estimate(env, None) == -153  # the training opponent's rung (random)
    assert first_elo_estimate(env, 812.5) == 812.5
    played = [({"return": 1.0, "result": "win"}, 1496.0), ({"return": -1.0, "result": "loss"}, 1754.0),
              ({"return": 0.0, "result": "draw"}, 1500.0)]
    assert score_of(played, rated=False) == Score.of([1.0, -1.0, 0.0])
    elo, se = fit_rating([(1496.0, 1.0), (1754.0, 0.0), (1500.0, 0.5)])
    assert score_of(played, rated=True) == Score(elo, se, 3)


def test_checkpoints_of_mate_in_one_are_scored_on_held_out_positions() -> None:
    from app.config import load_blocks, resolve
    from app.evaluation import held_out

    mate = resolve(["mate1"], environ={}, blocks=load_blocks()).env
    assert mate.mate.split == "train" and held_out(mate).mate.split == "test"
    assert held_out(held_out(mate)) == held_out(mate)
    other = resolve(["catch"], environ={}, blocks=load_blocks()).env
    assert held_out(other) is other


def test_eval_starts_rating_at_the_best_rated_checkpoint_or_the_curriculum_rung(tmp_path) -> None:
    """`dreamstream eval` restores the newest checkpoint, which is often unscored (the shutdown's save, a
    rollback's): the rating then started at the configured opponent (the random mover), so a strong agent
    played the three weakest rungs and was rated far too low."""
    import jax.numpy as jnp

    from app.config import load_blocks, resolve
    from app.evaluate import _elo_estimate
    from app.rundir import RunDir
    from trainer.checkpoint import Checkpointer

    cfg = resolve(["tiny"], [("env.id", "chess")], environ={}, blocks=load_blocks())
    rundir = RunDir(tmp_path / "run")
    rundir.root.mkdir()
    assert _elo_estimate(cfg, rundir, None) == -153.0  # nothing known: the configured opponent's rung
    rundir.write_state({"env_step": 10, "curriculum": {"opponent": "greedy", "from": "random"}})
    assert _elo_estimate(cfg, rundir, None) == 658.0  # the rung the curriculum reached
    ck = Checkpointer(rundir.checkpoints_dir, best_metric="elo")
    for step, elo in [(1, 900.0), (2, 1200.0), (3, None)]:
        ck.save(step, {"w": jnp.ones(2)}, {"updates": step}, metric=elo)
    ck.close()
    assert _elo_estimate(cfg, rundir, 3) == 1200.0  # the newest is unscored: the best rated one
    assert _elo_estimate(cfg, rundir, 1) == 900.0  # a rated checkpoint: its own rating


def test_eval_scores_mate_in_1_on_the_held_out_positions(tmp_path, monkeypatch) -> None:
    """As the checkpoint job does: on the training positions it measured memory, and stored it as an eval."""
    from app import evaluate as evaluate_module
    from app.config import load_blocks, resolve
    from app.rundir import RunDir

    cfg = resolve(["tiny", "mate1"], [("trainer.agent", "random")], environ={}, blocks=load_blocks())
    assert cfg.env.mate.split == "train"
    made = []
    real_make = envs.make_from_config

    def make(env_cfg):
        made.append(env_cfg.mate.split)
        return real_make(env_cfg)

    monkeypatch.setattr(evaluate_module.envs, "make_from_config", make)
    rundir = RunDir(tmp_path / "run")
    rundir.root.mkdir()
    assert evaluate_module.evaluate(cfg, rundir, episodes=2) == 0
    assert made == ["train", "test"]  # the probe for the spaces, then the episodes
