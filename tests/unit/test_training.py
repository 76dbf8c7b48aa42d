"""The app's training system: actor pacing and checkpoint snapshots, on the tiny model and PixelCatch."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from app.config import load_blocks, resolve
from app.training import STARTUP_PACE_S, Training, compile_cache_dir


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    cfg = resolve(["tiny", "catch"], [("trainer.train_after", 10)], environ={}, blocks=load_blocks())
    env = envs.make_from_config(cfg.env)
    steps = {"n": 0}
    t = Training(cfg, env.observation_space, env.action_space, run_root=tmp_path_factory.mktemp("run"),
                 env_steps=lambda: steps["n"])
    yield t, steps
    env.close()
    t.checkpointer.close()
    t.agent.close()


def test_actor_runs_free_until_training_can_start(training) -> None:
    t, steps = training
    steps["n"] = 5
    assert t.pace_s() == 0.0


def test_actor_slows_only_while_the_first_update_runs(training) -> None:
    t, steps = training
    steps["n"] = 1000
    t.learner.update_s_ema = None
    for state in ("waiting for data", "training"):  # the learner is about to start, or on its first update
        t.learner.state = state
        assert t.pace_s() == STARTUP_PACE_S
    # A resumed learner that is ahead of its ratio waits for env steps: the actor must not crawl.
    t.learner.state = "waiting for env steps"
    assert t.pace_s() == 0.0


def test_pace_follows_the_measured_update_time(training) -> None:
    t, steps = training
    steps["n"] = 1000
    t.learner.update_s_ema = 2.0
    c = t.cfg
    assert t.pace_s() == pytest.approx(2.0 * c.run.train_ratio / (c.trainer.batch_size * c.trainer.batch_length))


def test_one_very_slow_update_barely_slows_the_actor(training) -> None:
    t, _ = training
    learner = t.learner
    learner.update_s_ema = None
    for _ in range(20):
        learner.observe_update_time(1.0)
    assert learner.update_s_ema == pytest.approx(1.0)
    learner.observe_update_time(60.0)  # e.g. the process was suspended for a minute mid-update
    assert learner.last_update_s == 60.0 and learner.update_s_ema == pytest.approx(1.3)
    for _ in range(10):  # while updates that really are slower still raise the pace's average quickly
        learner.observe_update_time(3.0)
    assert learner.update_s_ema > 2.3


def test_a_state_to_adopt_across_processes_is_taken_by_the_loop_or_withdrawn(training, monkeypatch) -> None:
    """The multi-process rollback's hand-over (one process here: the all-gather of flags is the identity)."""
    import threading

    import jax

    from trainer.errors import TrainerError

    t, steps = training
    learner = t.learner
    steps["n"] = 0  # the loop only waits for data: rounds without updates
    monkeypatch.setattr(learner, "multiprocess", True)
    monkeypatch.setattr(learner, "_agree", lambda stopping, ready, adopt=False: (stopping, ready, adopt))
    state = jax.device_get(t.agent.state)
    shifted = state._replace(params=jax.tree.map(lambda x: x + 1, state.params))
    with pytest.raises(TrainerError, match="nothing was changed"):  # no loop runs to take it
        learner.load_state(shifted, timeout_s=0.3)
    assert learner._adopt is None  # withdrawn: a loop started later does not take it
    stop = threading.Event()
    loop = threading.Thread(target=learner.run, args=(stop, lambda *_: None))
    loop.start()
    try:
        learner.load_state(shifted, timeout_s=30)
        after = jax.device_get(t.agent.state.params)
        assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), after, shifted.params)))
    finally:
        stop.set()
        loop.join(30)
        learner.multiprocess = False
        t.agent.load_state(state)
    assert not loop.is_alive()


def test_checkpoint_step_names_its_state(training) -> None:
    t, _ = training
    t.learner.updates = 7
    t.checkpoint()
    restored = t.checkpointer.restore(t.agent.state, {"updates": 0, "env_step": 0})
    assert restored is not None and restored[0] == 7 and restored[2]["updates"] == 7
    t.checkpoint()  # nothing new: no second save
    assert t.checkpoint_step == 7


def test_a_checkpoint_of_a_snapshot_records_the_env_step_of_the_snapshot(training) -> None:
    t, steps = training
    t.learner.updates, steps["n"] = 8, 500
    snapshot = t.snapshot()
    steps["n"] = 900  # the actor played on while the snapshot was evaluated
    assert t.checkpoint(None, snapshot) == 8
    restored = t.checkpointer.restore(t.agent.state, {"updates": 0, "env_step": 0}, steps=[8])
    assert restored is not None and restored[2] == {"updates": 8, "env_step": 500}


def test_rollback_restores_the_best_scored_checkpoint_and_the_update_count_goes_on(training) -> None:
    import jax

    from app.evaluation import Score
    from trainer.errors import TrainerError

    t, _ = training
    base = t.agent.state

    def shifted(delta: float):
        return base._replace(params=jax.tree.map(lambda x: x + delta, base.params), step=base.step + int(delta))

    for step, delta, mean in [(101, 1.0, 5.0), (102, 2.0, 9.0), (103, 3.0, 1.0)]:
        assert t.checkpoint(Score(mean, 0.5, 10), (step, shifted(delta))) == step
    assert t.checkpoint(Score(0.0, 0.5, 10), (103, shifted(4.0))) is None  # that step is saved already
    best = t.best()
    assert best is not None and best[0] == 102 and best[1] == Score(9.0, 0.5, 10)
    t.learner.updates = 110
    assert t.rollback() == 102
    same = jax.tree.map(lambda a, b: bool((np.asarray(a) == np.asarray(b)).all()), t.agent.state, shifted(2.0))
    assert all(jax.tree.leaves(same))  # the whole train state: parameters, optimizer, step, ...
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool((np.asarray(a) == np.asarray(b)).all()),
                                            t.agent.params, shifted(2.0).params)))  # what the actor acts with
    assert t.learner.updates == 110  # later checkpoints get new steps
    assert t.checkpointer.steps() == [102, 103, 110]  # the rolled-back state is the newest: a restart resumes it
    assert t.rollback(103) == 103 and float(t.agent.state.step) == float(shifted(3.0).step)
    newest = t.checkpointer.restore(t.agent.state, {"updates": 0, "env_step": 0})
    assert newest[0] == 110 and float(newest[1].step) == float(shifted(3.0).step)  # 110 was replaced
    with pytest.raises(TrainerError, match="there is no checkpoint 7777"):
        t.rollback(7777)
    assert t.status()["paused"] is False
    t.learner.paused.set()
    try:
        t.learner.update_s_ema = None
        assert t.pace_s() == 0.0  # paused before any update: the actor is not slowed to a crawl
    finally:
        t.learner.paused.clear()


def test_a_run_without_scored_checkpoints_has_nothing_to_roll_back_to(tmp_path) -> None:
    from trainer.errors import TrainerError

    cfg = resolve(["tiny", "catch"], [], environ={}, blocks=load_blocks())
    env = envs.make_from_config(cfg.env)
    t = Training(cfg, env.observation_space, env.action_space, run_root=tmp_path, env_steps=lambda: 0)
    try:
        t.learner.updates = 3
        assert t.checkpoint() == 3  # saved without a score (a shutdown checkpoint)
        assert t.best() is None
        with pytest.raises(TrainerError, match="no checkpoint has a score yet"):
            t.rollback()
    finally:
        env.close()
        t.checkpointer.close()
        t.agent.close()

def test_replay_context_end_to_end_latents_from_acting_and_training(tmp_path) -> None:
    import threading

    cfg = resolve(["tiny", "catch"], [("trainer.train_after", 10), ("trainer.replay_context", 1),
                                      ("trainer.policy_process", False), ("run.train_ratio", 8)],
                  environ={}, blocks=load_blocks())
    env = envs.make_from_config(cfg.env)
    steps = {"n": 0}
    t = Training(cfg, env.observation_space, env.action_space, run_root=tmp_path, env_steps=lambda: steps["n"])
    t.open()
    obs, _ = env.reset(seed=0)
    state, first = None, True
    for _ in range(60):
        action, state = t.policy(obs, state, first)
        t.record(obs, action, 0.0, is_first=first, is_last=False, is_terminal=False, latent=state)
        obs, _, terminated, truncated, _ = env.step(action)
        first = terminated or truncated
        if first:
            obs, _ = env.reset()
            state = None
        steps["n"] += 1
    stream = t.replay._streams[0]
    assert stream.data["latent_ok"][:60].all()  # the actor's latents are stored with their steps
    acting = stream.data["deter"][:60].copy()
    stop = threading.Event()
    t.learner.metrics_every, t.learner.metrics_interval_s = 3, 0.0
    reported = []

    def on_metrics(updates: int, metrics: dict[str, float]) -> None:
        reported.append((updates, metrics))
        if updates >= 3:
            stop.set()

    t.learner.run(stop, on_metrics)
    assert t.learner.updates >= 3 and t.replay.sampled_sequences >= 3 * cfg.trainer.batch_size
    # The session's first update is reported at once (a curve to show within seconds), then every 3.
    assert [u for u, _ in reported] == [1, 4]
    assert all(m["fps/updates"] > 0 and np.isfinite(m["loss/image"]) for _, m in reported)
    assert not np.array_equal(stream.data["deter"][:60], acting)  # training wrote its own latents back
    t.close()
    env.close()


def test_compile_cache_is_in_the_run_dir_unless_configured_or_jax_says_otherwise(tmp_path, monkeypatch) -> None:
    def where(*overrides):
        return compile_cache_dir(resolve(["tiny"], list(overrides), environ={}, blocks=load_blocks()), tmp_path / "run")

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    assert where() == tmp_path / "run" / "compile_cache"
    assert where(("run.compile_cache", "xla")) == tmp_path / "run" / "xla"
    assert where(("run.compile_cache", str(tmp_path / "shared"))) == tmp_path / "shared"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    assert where() == tmp_path / "jax"  # JAX's own variable, when the key is left alone
    assert where(("run.compile_cache", str(tmp_path / "shared"))) == tmp_path / "shared"  # the config wins


class ScriptedAgent:
    """Stands in for DreamerAgent in the learner's loop: update n reports loss n, and update 5 is non-finite."""

    local_batch_size, multiprocess = 2, False

    class cfg:  # the attributes the learner reads from a TrainerConfig
        batch_length, train_after, replay_context = 8, 0, 0

    def __init__(self) -> None:
        self.n = 0

    def publish_pending(self) -> bool:
        return False

    def train(self, batch) -> dict[str, float]:
        self.n += 1
        bad = self.n == 5
        return {"loss/x": float("nan") if bad else float(self.n), "opt/finite": 0.0 if bad else 1.0}


def test_learner_rows_are_the_mean_of_their_updates_and_at_most_one_per_interval() -> None:
    import threading
    import time

    from tests.unit.test_replay import SPEC, fill
    from trainer.learner import Learner
    from trainer.replay import Replay

    replay = Replay(SPEC, capacity=400, length=8, chunk_steps=16)
    fill(replay, 100)
    agent = ScriptedAgent()
    learner = Learner(agent, replay, train_ratio=1e9, env_steps=lambda: 100, metrics_every=3)
    rows, stop = [], threading.Event()

    def on_metrics(updates: int, metrics: dict[str, float]) -> None:
        rows.append((updates, metrics))
        stop.set() if updates >= 9 else None

    learner.run(stop, on_metrics)
    assert [u for u, _ in rows] == [1, 4, 7, 10]  # the first at once, then every 3 updates
    # Each row is the mean over its updates; update 5 was skipped (non-finite) and counted, not averaged in.
    assert [m["loss/x"] for _, m in rows] == [1.0, 3.0, 6.5, 9.0]
    assert [m["opt/skipped_updates"] for _, m in rows] == [0.0, 0.0, 1.0, 0.0]
    # With an interval, a fast learner writes no more rows than the interval allows.
    learner.metrics_interval_s, rows[:], stop = 0.5, [], threading.Event()
    began = time.monotonic()
    timer = threading.Timer(1.6, stop.set)
    timer.start()
    learner.run(stop, lambda updates, metrics: rows.append((updates, metrics)))
    timer.cancel()
    elapsed = time.monotonic() - began
    assert len(rows) <= 1 + elapsed / 0.5 and rows[-1][0] - rows[0][0] > 3 * (len(rows) - 1)
    assert sum(m["fps/updates"] > 0 for _, m in rows) == len(rows)


def test_a_skipped_updates_latents_are_not_written_into_replay() -> None:
    """With replay context, the learner writes each update's latents back; a non-finite update's may be NaN
    and would start every later sequence on those steps from NaN."""
    import threading

    from tests.unit.test_replay import fill
    from trainer.learner import Learner
    from trainer.replay import Replay, step_spec

    class ContextAgent(ScriptedAgent):
        class cfg:  # the attributes the learner reads from a TrainerConfig
            batch_length, train_after, replay_context = 8, 0, 1

        def train(self, batch) -> dict:
            metrics = super().train(batch)
            value = np.nan if metrics["opt/finite"] < 1 else float(self.n)
            return {**metrics, "latent/deter": np.full((2, 8, 4), value, np.float32),
                    "latent/stoch": np.zeros((2, 8, 2), np.int32)}

    replay = Replay(step_spec((4, 4, 3), latent=(4, 2)), capacity=400, length=9, chunk_steps=16, context=1)
    fill(replay, 100)
    learner = Learner(ContextAgent(), replay, train_ratio=1e9, env_steps=lambda: 100, metrics_every=1)
    stop = threading.Event()
    learner.run(stop, lambda updates, metrics: stop.set() if updates >= 6 else None)
    data = replay._streams[0].data
    assert data["latent_ok"].any() and np.isfinite(data["deter"][data["latent_ok"]]).all()  # none of update 5


def test_a_streak_of_non_finite_updates_is_logged_at_its_start_every_1000_and_at_its_end(caplog) -> None:
    import threading

    from tests.unit.test_replay import SPEC, fill
    from trainer.learner import Learner
    from trainer.replay import Replay

    stop = threading.Event()

    class StuckAgent(ScriptedAgent):
        def train(self, batch) -> dict[str, float]:
            self.n += 1
            if self.n >= 2510:
                stop.set()
            bad = 3 <= self.n <= 2502
            return {"loss/x": float("nan") if bad else 1.0, "opt/finite": 0.0 if bad else 1.0}

    replay = Replay(SPEC, capacity=400, length=8, chunk_steps=16)
    fill(replay, 100)
    agent = StuckAgent()
    learner = Learner(agent, replay, train_ratio=1e9, env_steps=lambda: 100, metrics_every=10_000)
    learner.run(stop, lambda updates, metrics: None)
    assert learner.nonfinite == 2500 and agent.n == 2510
    lines = [r.getMessage() for r in caplog.records if r.name == "trainer.learner" and "non-finite" in r.message]
    assert lines[0].startswith("update 3 had a non-finite loss or gradient (loss/x)")
    assert lines[1:] == ["1000 updates in a row were non-finite and skipped (since update 3); the parameters keep "
                         "their last good values; rolling back to a good checkpoint may help",
                         "2000 updates in a row were non-finite and skipped (since update 3); the parameters keep "
                         "their last good values; rolling back to a good checkpoint may help",
                         "updates 3-2502 (2500 in a row) were non-finite and skipped; update 2503 is finite again"]
