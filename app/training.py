"""The training system as the app runs it: the agent, its replay on disk, the learner loop, checkpoints.

Acting and learning are decoupled: the actor calls `policy` (which reads the latest parameters) and
`record` (which appends to replay) and never waits on an update; the learner is its own supervised
component. With `run.pace_to_learner` the actor is slowed, never paused, to the env-step rate at which
the learner keeps `run.train_ratio`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from app.config import Config
from app.evaluation import Score, ranking_metric
from app.settings import RunConfig
from trainer import RandomAgent
from trainer.errors import TrainerError

__all__ = ["Training", "compile_cache_dir", "enable_compile_cache", "load_policy"]

STARTUP_PACE_S = 0.5
"""Seconds per env step while the first update runs (its duration is not known yet)."""

log = logging.getLogger(__name__)


def compile_cache_dir(cfg: Config, run_root: Path) -> Path:
    """Where `run.compile_cache` puts compiled programs (JAX_COMPILATION_CACHE_DIR when the key is not set)."""
    configured = cfg.run.compile_cache
    if configured == RunConfig.compile_cache and os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).expanduser()
    path = Path(configured).expanduser()
    return path if path.is_absolute() else run_root / path


def enable_compile_cache(directory: Path) -> None:
    """Keep XLA's compiled programs on disk, so a resumed run does not pay the compile again."""
    import jax

    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def load_policy(cfg: Config, obs_space: gym.spaces.Dict, action_space: gym.Space,
                run_root: Path) -> tuple[Any, int | None]:
    """Return (agent, checkpoint step) for acting only: the newest good checkpoint, or a fresh agent (None)."""
    if cfg.trainer.agent == "random":
        return RandomAgent(action_space, seed=cfg.trainer.seed + 1_000_003), None
    from trainer.agent import DreamerAgent
    from trainer.checkpoint import Checkpointer

    enable_compile_cache(compile_cache_dir(cfg, run_root))
    agent = DreamerAgent(cfg.trainer, obs_space, action_space)
    checkpointer = Checkpointer(run_root / "checkpoints", read_only=True)
    try:
        restored = checkpointer.restore(agent.state, {"updates": 0, "env_step": 0})
    finally:
        checkpointer.close()
    if restored is None:
        return agent, None
    step, state, _ = restored
    agent.load_state(state)
    return agent, step


class Training:
    """Agent + replay + learner + checkpoints for one run; the random agent has none of the last three."""

    def __init__(self, cfg: Config, obs_space: gym.spaces.Dict, action_space: gym.Space, *, run_root: Path,
                 env_steps: Callable[[], int]) -> None:
        self.cfg = cfg
        self.run_root = run_root
        self.action_space = action_space
        self.env_steps = env_steps
        self.compile_s = 0.0
        self.learner = None
        self.replay = None
        self.checkpointer = None
        self.checkpoint_step: int | None = None
        self.checkpoint_at: float | None = None
        self.last_metrics: dict[str, float] = {}
        self._save_lock = threading.Lock()
        self._snapshot_env_step: tuple[int, int] = (-1, 0)
        """(update step, env step) of the last snapshot."""
        self._best: tuple[int, Score] | bool | None = False
        self._listing: list[dict[str, Any]] = []  # every kept checkpoint, read with _best
        """best()'s answer; False: not read yet."""
        if cfg.trainer.agent == "random":
            self.agent: Any = RandomAgent(action_space, seed=cfg.trainer.seed)
            return
        from trainer.agent import DreamerAgent
        from trainer.checkpoint import Checkpointer
        from trainer.learner import Learner
        from trainer.replay import Replay, step_spec

        enable_compile_cache(compile_cache_dir(cfg, run_root))
        self.agent = DreamerAgent(cfg.trainer, obs_space, action_space)
        t = cfg.trainer
        act = self.agent.act_space
        spec = step_spec(self.agent.image_shape, () if act.discrete else (act.n,),
                         "int32" if act.discrete else "float32",
                         latent=(t.deter, t.stoch) if t.replay_context else None,
                         mask=act.n if act.masked else None)
        # With replay context, each sampled window has the context steps before the trained sequence.
        self.replay = Replay(spec, capacity=t.replay_capacity, length=t.batch_length + t.replay_context,
                             context=t.replay_context,
                             directory=run_root / "replay",
                             chunk_steps=t.replay_chunk, seed=t.seed)
        from trainer.distributed import is_primary

        # Across processes only process 0 keeps checkpoints (the parameters are the same everywhere).
        self.checkpointer = Checkpointer(run_root / "checkpoints", keep=cfg.scheduler.keep_checkpoints,
                                         keep_best=1, best_metric=ranking_metric(cfg)) if is_primary() else None
        self.learner = Learner(self.agent, self.replay, train_ratio=cfg.run.train_ratio, env_steps=env_steps,
                               metrics_interval_s=cfg.run.train_metrics_interval_s)

    @property
    def is_learning(self) -> bool:
        return self.learner is not None

    # -- start and stop -----------------------------------------------------------------------------------

    def open(self) -> None:
        """Restore the newest good checkpoint and the replay, then compile (slow: tens of seconds on CPU)."""
        if not self.is_learning:
            return
        restored = self._restore()
        if restored is not None:
            step, state, meta = restored
            self.agent.load_state(state)
            self.learner.updates = int(meta["updates"])
            self.checkpoint_step, self.checkpoint_at = step, time.monotonic()
        self.replay.load()
        t = self.cfg.trainer
        self.compile_s = self.agent.compile(t.batch_size, t.batch_length)
        from trainer.distributed import is_primary

        if is_primary():
            log.info("compiled the train and policy steps in %.1fs (cached for the next start in %s)",
                     self.compile_s, compile_cache_dir(self.cfg, self.run_root))
        else:  # jax writes its persistent cache from process 0 only (to spare shared filesystems)
            log.info("compiled the train and policy steps in %.1fs (not cached: JAX's compile cache is written by "
                     "process 0 only, so this process compiles again at every start)", self.compile_s)

    def _restore(self) -> tuple[int, Any, dict[str, int]] | None:
        """The newest good checkpoint; across processes, process 0's, sent to every process."""
        if not self.agent.multiprocess:
            return self.checkpointer.restore(self.agent.state, {"updates": 0, "env_step": 0})
        from trainer.distributed import broadcast_from_primary

        template = self.agent.host_state()
        restored = self.checkpointer.restore(template, {"updates": 0, "env_step": 0}) \
            if self.checkpointer is not None else None
        step, state, meta = restored or (-1, template, {"updates": 0, "env_step": 0})
        step, state, updates = broadcast_from_primary((np.int64(step), state, np.int64(meta["updates"])))
        if int(step) < 0:
            return None
        return int(step), state, {"updates": int(updates)}

    def close(self) -> None:
        if not self.is_learning:
            return
        self.agent.close()
        self.replay.close()
        self.checkpoint()
        if self.checkpointer is not None:
            self.checkpointer.close()

    # -- acting -------------------------------------------------------------------------------------------

    def policy(self, obs: dict[str, np.ndarray], state: Any, is_first: bool) -> tuple[Any, Any]:
        return self.agent.policy(obs, state, is_first)

    def stored_action(self, action: Any) -> Any:
        """Return the action as replay (and the dream strips) store it."""
        return self.agent.env_action_to_stored(action) if self.is_learning else action

    def record(self, obs: dict[str, np.ndarray], action: Any, reward: float, *, is_first: bool, is_last: bool,
               is_terminal: bool, latent: Any = None) -> None:
        """Append one step to replay: the observation, the action taken after it (zero at the last step)."""
        if not self.is_learning:
            return
        stored = self.agent.env_action_to_stored(action) if action is not None else \
            np.zeros(self.replay.spec.action_shape, self.replay.spec.action_dtype)
        step = {"image": obs["image"], "action": stored, "reward": np.float32(reward), "is_first": is_first,
                "is_last": is_last, "is_terminal": is_terminal}
        if self.replay.spec.mask is not None and "action_mask" in obs:
            step["action_mask"] = obs["action_mask"]  # the legal actions at this step (the world model learns them)
        if latent is not None and self.replay.spec.latent is not None:
            step.update(self.agent.latent_to_stored(latent))  # the actor's posterior after seeing obs
        self.replay.add(step)

    def pace_s(self) -> float:
        """Seconds per env step that keep the train ratio at the learner's speed (0: no pacing needed).

        Before training starts the actor runs free (it fills replay); once it could train but no update has
        finished yet, it slows to STARTUP_PACE_S per step (slowed, never paused) until the speed is known.
        """
        if not (self.is_learning and self.cfg.run.pace_to_learner) or self.env_steps() < self.cfg.trainer.train_after:
            return 0.0
        ema = self.learner.update_s_ema
        if ema is None and self.learner.paused.is_set():
            return 0.0  # paused before its first update: no speed to pace to
        if ema is None:
            # Until the first update of this session has finished; but a learner that waits for env steps
            # (it is ahead after a resume with a lower train ratio) needs them at full speed.
            return 0.0 if self.learner.state == "waiting for env steps" else STARTUP_PACE_S
        t = self.cfg.trainer
        return ema * self.cfg.run.train_ratio / (t.batch_size * t.batch_length)

    # -- learning -----------------------------------------------------------------------------------------

    def learn(self, stop: threading.Event, on_metrics: Callable[[int, dict[str, float]], None]) -> None:
        """The learner component's loop (supervised by the app)."""
        if not self.is_learning:
            stop.wait()
            return

        def handle(updates: int, metrics: dict[str, float]) -> None:
            self.last_metrics = metrics
            on_metrics(updates, metrics)

        self.learner.run(stop, handle)
        if self.learner.peer_stopped:
            stop.wait()  # the run stops too (see peer_stopped); a restarted learner would wait for peers forever

    @property
    def peer_stopped(self) -> bool:
        """True once another process of a multi-process training has stopped (so this one stops as well)."""
        return self.learner is not None and self.learner.peer_stopped

    @property
    def updates(self) -> int:
        return self.learner.updates if self.learner is not None else 0

    def snapshot(self) -> tuple[int, Any]:
        """(update step, train state) taken together; immutable arrays, so it stays valid while training goes on."""
        step, state = self.learner.snapshot()
        self._snapshot_env_step = (step, self.env_steps())
        return step, state

    def held(self, snapshot: tuple[int, Any]) -> tuple[int, Any]:
        """The snapshot as host arrays, to keep while it is evaluated (minutes): on a GPU, one more whole train
        state (parameters, optimizer moments, slow critic) beside the learner's own could run a big model out of
        memory; only its parameters go back to the device to act (params_of). Across processes as it is."""
        if self.agent.multiprocess:
            return snapshot
        import jax

        step, state = snapshot
        return step, jax.device_get(state)

    def params_of(self, state: Any) -> Any:
        """The parameters of a snapshot, on this process's device, as it can act with them (e.g. to evaluate it)."""
        import jax

        return jax.device_put(self.agent._local(state.params))

    def checkpoint(self, score: Score | None = None, snapshot: tuple[int, Any] | None = None,
                   extra: dict[str, float] | None = None) -> int | None:
        """Save the current train state, or `snapshot`, ranked by `score` (with `extra` metrics beside it, e.g.
        the training opponent's Elo); return the step saved (None: none).

        A scheduler job, and at shutdown. Nothing is saved when that step is saved already or nothing trained.
        """
        if not self.is_learning or self.checkpointer is None:
            return None
        with self._save_lock:
            step, state = snapshot if snapshot is not None else self.learner.snapshot()
            saved = self.checkpointer.steps()
            if step == self.checkpoint_step or step == 0 or step in saved:
                return None
            if saved and step < saved[-1]:  # a newer one was written meanwhile (a rollback): the newest stays newest
                log.info("checkpoint %d not written: checkpoint %d is newer", step, saved[-1])
                return None
            if self.agent.multiprocess:
                import jax

                state = jax.device_get(state)  # process 0 writes the replicas' host copy alone
            try:
                # The env step of the snapshot, not of the save (an evaluation may have run in between).
                at, env_step = self._snapshot_env_step
                self.checkpointer.save(step, state, {"updates": step, "env_step": env_step if at == step else
                                                     self.env_steps()},
                                       None if score is None else score.mean,
                                       None if score is None else
                                       {**score.extra_metrics(self.checkpointer.best_metric), **(extra or {})})
            except (OSError, ValueError, TrainerError) as exc:
                log.error("checkpoint %d failed: %s; the previous checkpoint stays usable", step, exc)
                return None
            self.checkpoint_step, self.checkpoint_at = step, time.monotonic()
            self._best = self._read_best()
            return step

    def best(self) -> tuple[int, Score] | None:
        """The best-scored checkpoint on disk and its score (None: no checkpoint has a score yet). Read from
        disk once, then kept up to date by every save here (the dashboard asks every few seconds)."""
        if self.checkpointer is None:
            return None
        if self._best is False:
            with self._save_lock:
                self._best = self._read_best()
        return self._best or None

    def checkpoints(self) -> list[dict[str, Any]]:
        """Every kept checkpoint, newest first: {step, score, sem} (score None: saved unscored). Read with best()."""
        if self.checkpointer is None:
            return []
        self.best()  # the first call reads them from disk
        return list(self._listing)

    def _read_best(self) -> tuple[int, Score] | None:
        key = self.checkpointer.best_metric
        ranked = self.checkpointer.ranked()
        scores = {step: Score.from_metrics(metrics, key) for step, metrics in ranked}
        self._listing = [{"step": step, "score": round(scores[step].mean, 4) if step in scores else None,
                          "sem": round(scores[step].sem, 4) if step in scores else None}
                         for step in sorted(self.checkpointer.steps(), reverse=True)]
        return (ranked[0][0], scores[ranked[0][0]]) if ranked else None

    def rollback(self, step: int | None = None) -> int:
        """Go back to checkpoint `step`, by default the best-scored one (the next best if it is unreadable):
        the learner continues from its whole train state (parameters, optimizer, normalisers, slow critic),
        the actor gets its parameters, replay and counters stay. Return the step restored."""
        if not self.is_learning:
            raise TrainerError("the random agent does not learn: there is nothing to roll back")
        if self.checkpointer is None:  # across processes, process 0 keeps the checkpoints and rolls back for all
            raise TrainerError("only process 0 of a multi-process training keeps checkpoints and rolls back; "
                               "ask its dashboard")
        candidates = [s for s, _ in self.checkpointer.ranked()] if step is None else [step]
        if not candidates:
            raise TrainerError("no checkpoint has a score yet: there is nothing to roll back to")
        if step is not None and step not in self.checkpointer.steps():
            raise TrainerError(f"there is no checkpoint {step}; kept: {self.checkpointer.steps()}")
        # Across processes as host arrays: process 0 reads the checkpoint alone, then sends it to every process.
        # In one process, into host memory too (a template of shapes placed on the CPU): restored onto a GPU, it
        # sat there beside the live state and an update in flight, three train states at once.
        template = self.agent.host_state() if self.agent.multiprocess else self.agent.host_template()
        with self._save_lock:
            restored = self.checkpointer.restore(template, {"updates": 0, "env_step": 0}, steps=candidates)
        if restored is None:
            raise TrainerError(f"checkpoint(s) {candidates} could not be read: nothing was changed")
        restored_step, state, _ = restored
        self.learner.load_state(state)
        log.warning("rolled back to checkpoint %d (the learner goes on from its state at update %d)",
                    restored_step, self.learner.updates)
        self._save_rolled_back(restored_step)
        return restored_step

    def _save_rolled_back(self, restored_step: int) -> None:
        """Write the rolled-back state as the newest checkpoint, so a restart resumes from it, not from the
        checkpoint it replaced. Unscored: it is ranked when the next checkpoint is scored."""
        with self._save_lock:
            step, state = self.learner.snapshot()
            if step == restored_step:
                return
            exists = step in self.checkpointer.steps()  # no update since the last save: that save is replaced
            best = self._read_best() if exists else None
            if best is not None and best[0] == step:
                log.warning("checkpoint %d is the best one and stays; a restart before the next checkpoint "
                            "resumes from it, not from the rollback to %d", step, restored_step)
                return
            if self.agent.multiprocess:
                import jax

                state = jax.device_get(state)  # process 0 writes the replicas' host copy alone
            meta = {"updates": step, "env_step": self.env_steps()}
            try:
                if exists:  # renamed aside first: a kill -9 in between keeps one of the two
                    self.checkpointer.replace(step, state, meta)
                else:
                    self.checkpointer.save(step, state, meta)
            except (OSError, ValueError, TrainerError) as exc:
                log.error("the rolled-back state could not be saved as checkpoint %d: %s", step, exc)
                return
            self.checkpoint_step, self.checkpoint_at = step, time.monotonic()
            self._best = self._read_best()

    def status(self) -> dict[str, Any]:
        if not self.is_learning:
            return {"agent": "random (baseline, not learning)"}
        return {
            "learner": self.learner.state,
            "updates": self.learner.updates,
            "train_ratio": round(self.learner.ratio(), 2),
            "s_per_update": round(self.learner.update_s_ema or 0.0, 2),
            "replay_steps": self.replay.size,
            "compile_s": round(self.compile_s, 1),
            "paused": self.learner.paused.is_set(),
            "checkpoint": self.checkpoint_step,
            "checkpoint_age_s": round(time.monotonic() - self.checkpoint_at, 0) if self.checkpoint_at else None,
        }
