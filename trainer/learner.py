"""The learner loop: samples replay and trains while keeping the train ratio, without ever blocking acting.

The ratio limiter only ever holds the learner back (when replayed steps would exceed train_ratio x env
steps); the actor never waits. A learner that cannot keep up simply lowers the measured ratio, which is
reported as `replay/ratio`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from trainer.agent import DreamerAgent
from trainer.errors import TrainerError
from trainer.replay import Replay

__all__ = ["Learner", "lower_compute_priority"]

log = logging.getLogger(__name__)

NONFINITE_LOG_EVERY = 1000
"""A streak of non-finite updates is logged at its start, every so many updates, and at its end."""


def lower_compute_priority(niceness: int = 10) -> int:
    """Give the calling thread and XLA's compute threads a lower CPU priority (Linux nice, per thread).

    On a 2-core machine the train step saturates both cores; at a lower priority it still gets every idle
    cycle, but the actor, the policy process and the encoder run first. Returns the threads changed.
    """
    changed = 0
    tids = [threading.get_native_id()]
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/comm") as fh:
                if fh.read().strip().startswith("tf_XLA"):
                    tids.append(int(tid))
    except OSError:
        pass  # not Linux: leave priorities alone
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), niceness))
            changed += 1
        except OSError as exc:
            log.debug("cannot lower the priority of thread %d: %s", tid, exc)
    return changed


class Learner:
    """Trains `agent` from `replay` at `train_ratio` replayed steps per env step."""

    def __init__(self, agent: DreamerAgent, replay: Replay, *, train_ratio: float, env_steps: Callable[[], int],
                 updates: int = 0, metrics_every: int = 10, metrics_interval_s: float = 0.0) -> None:
        """Metrics: the session's first update at once, then one row per `metrics_every` updates and at least
        `metrics_interval_s` seconds, each the mean over the updates since the row before (so a fast GPU writes
        no more rows than a CPU, and no update goes unseen)."""
        self.agent, self.replay = agent, replay
        self.train_ratio = train_ratio
        self.env_steps = env_steps
        self.updates = updates
        self.metrics_every = metrics_every
        self.metrics_interval_s = metrics_interval_s
        # This process's share of each batch (all of it unless training spans processes).
        self.batch_size = agent.local_batch_size
        self.batch_length = agent.cfg.batch_length
        self.multiprocess = agent.multiprocess
        self.peer_stopped = False
        self.train_after = agent.cfg.train_after
        self.last_update_s = 0.0
        self.update_s_ema: float | None = None
        """Smoothed seconds per update (None before the first), for pacing the actor."""
        self.nonfinite = 0
        self._nonfinite_streak = 0
        # (across processes the first round waits for every process to reach its loop, e.g. to finish compiling)
        self.state = "waiting for the other processes" if self.multiprocess else "waiting for data"
        self.paused = threading.Event()
        """Set: no updates until it is cleared (the actor plays on; an operator's pause)."""
        self._lock = threading.Lock()
        # Across processes, a state to adopt everywhere (a rollback in process 0): see load_state.
        self._adopt_lock = threading.Lock()
        self._adopt: Any = None
        self._adopt_sent = False
        self._adopted = threading.Event()
        self._adopt_failed = False
        """Set when this process could not take an adopted state: it stops, so all stop (and resume alike)."""

    @property
    def replayed_steps(self) -> int:
        return self.updates * self.batch_size * self.batch_length

    def ratio(self) -> float:
        steps = self.env_steps()
        return self.replayed_steps / steps if steps else 0.0

    def is_ahead(self) -> bool:
        """True when one more update would replay more than train_ratio x env steps."""
        return self.replayed_steps + self.batch_size * self.batch_length > self.train_ratio * self.env_steps()

    def _agree(self, stopping: bool, ready: bool, adopt: bool = False) -> tuple[bool, bool, bool]:
        """Return (stop, train now, adopt process 0's state) as all processes decide it together.

        Across processes every update is a collective, so they must take the same decisions in the same
        order: each round, one all-gather of every process's flags; any stop stops all, all must be ready, and
        a state to adopt (a rollback in process 0) is taken by all in that round.
        """
        if not self.multiprocess:
            return stopping, ready, False
        from jax.experimental import multihost_utils

        flags = np.asarray(multihost_utils.process_allgather(np.array([stopping, ready, adopt], np.int32)))
        flags = flags.reshape(-1, 3)
        if flags[:, 0].any() and not stopping:
            log.warning("another training process stopped; this one stops learning too")
            self.peer_stopped = True
        return bool(flags[:, 0].any()), bool(flags[:, 1].all()), bool(flags[:, 2].any())

    def _check_taken(self) -> None:
        if self._adopt_failed:
            raise TrainerError("process 0 could not take the rolled-back state; the training stops (re-run the "
                               "same commands to resume every process from the last checkpoint)")

    def _take_adopted(self) -> None:
        """Every process, in the same round: take process 0's state to adopt (see load_state)."""
        from trainer.distributed import broadcast_from_primary, is_primary

        with self._adopt_lock:
            mine = self._adopt if is_primary() else None
        state = broadcast_from_primary(mine if mine is not None else self.agent.host_state())
        try:
            with self._lock:
                self.agent.load_state(state)
        except Exception:
            # The processes' parameters would differ from here on: this one stops, so all stop, and a restart
            # resumes every process from process 0's checkpoint.
            log.exception("could not take the train state of process 0 (a rollback); stopping the training")
            self._adopt_failed = True
            self.peer_stopped = True  # the run stops as when another process stops (its learner must not restart)
        else:
            log.info("took the train state of process 0 (a rollback)")
        with self._adopt_lock:
            self._adopt = None
        self._adopted.set()

    def _write_latents(self, positions: list[tuple[int, int]], deter: np.ndarray, stoch: np.ndarray) -> None:
        if self.multiprocess:  # the latents of the whole batch: this process's rows are its own sequences
            rows = slice(jax.process_index() * self.batch_size, (jax.process_index() + 1) * self.batch_size)
            deter, stoch = deter[rows], stoch[rows]
        self.replay.write_latents(positions, deter, stoch, offset=self.agent.cfg.replay_context)

    def snapshot(self) -> tuple[int, Any]:
        """Return (updates, train state) taken together: a checkpoint's step names exactly its state.

        Waits for at most the update in progress.
        """
        with self._lock:
            return self.updates, self.agent.state

    def load_state(self, state: Any, timeout_s: float = 120.0) -> None:
        """Adopt another train state between two updates (a rollback); the update count goes on, so later
        checkpoints still get new steps.

        Across processes (call it in process 0, with host arrays): every process adopts `state` in the same
        round of its learner loop, which must be running (paused is fine); this waits for that, and raises
        TrainerError with nothing changed when the round does not come within `timeout_s`.
        """
        if not self.multiprocess:
            with self._lock:
                self.agent.load_state(state)
            return
        from trainer.distributed import is_primary

        if not is_primary():
            raise TrainerError("across processes only process 0 gives a state to adopt (it keeps the checkpoints)")
        timeout_s = max(timeout_s, 10 * (self.update_s_ema or 0.0))  # a round may wait for one update
        with self._adopt_lock:
            self._adopted.clear()
            self._adopt, self._adopt_sent = jax.device_get(state), False
        if self._adopted.wait(timeout_s):
            return self._check_taken()
        with self._adopt_lock:
            if self._adopted.is_set():  # taken just now
                return self._check_taken()
            if not self._adopt_sent:  # never asked for: withdrawn
                self._adopt = None
                raise TrainerError(f"the training processes did not reach a point to take the rolled-back state "
                                   f"within {timeout_s:g} s (is the learner running?); nothing was changed")
        if not self._adopted.wait(timeout_s):  # asked for in a round already: it is being taken
            raise TrainerError("the training processes did not confirm taking the rolled-back state in time; they "
                               "may still take it")
        self._check_taken()

    def run(self, stop: threading.Event, on_metrics: Callable[[int, dict[str, float]], None]) -> None:
        """Train until `stop`; after the session's first update, then as the constructor says, pass host
        metrics to `on_metrics` (the first at once: with a big model on a CPU, ten updates can take minutes)."""
        window_t, window_updates, window_nonfinite, first = None, self.updates, self.nonfinite, True
        sums: dict[str, tuple[float, int]] = {}  # the window's finite updates: key -> (sum, count)
        buffer_sets = [self.replay.batch_buffers(self.batch_size) for _ in range(2)]
        lowered = False
        while True:
            if self.paused.is_set():
                waiting, pause = "paused", 0.2
            elif self.env_steps() < self.train_after or not self.replay.can_sample():
                waiting, pause = "waiting for data", 0.2
            elif self.is_ahead():
                waiting, pause = "waiting for env steps", 0.05
            else:
                waiting, pause = "", 0.0
            with self._adopt_lock:
                adopt = self._adopt is not None
                self._adopt_sent = self._adopt_sent or adopt
            stopping, go, adopt = self._agree(stop.is_set() or self._adopt_failed, not waiting, adopt)
            if adopt:  # before any stop: process 0 waits for it
                self._take_adopted()
                continue
            if stopping:
                break
            if not go:
                self.state = waiting or "waiting for the other processes"
                with self._lock:  # no update is coming soon: the actor gets what policy_sync_s held back
                    self.agent.publish_pending()
                stop.wait(pause or 0.05)
                continue
            self.state = "training"
            t0 = time.monotonic()
            if window_t is None:  # the speed window starts with the first update, not with the wait for data
                window_t = t0
            # Safe to refill: agent.train returns only once the update has finished reading its batch. The
            # second set keeps that true if updates are ever queued ahead (JAX dispatches asynchronously).
            buffers = buffer_sets[self.updates % 2]
            batch, positions = self.replay.sample_with_positions(self.batch_size, out=buffers)
            with self._lock:  # the agent's state and the update count change together (see snapshot())
                metrics = self.agent.train(batch)
                self.updates += 1
            # One host sync per update (a few scalars, next to seconds of compute): every update is checked.
            fetched = jax.device_get(metrics)
            if "latent/deter" in fetched:  # replay context: later sequences start from these latents
                deter, stoch = fetched.pop("latent/deter"), fetched.pop("latent/stoch")
                if float(fetched.get("opt/finite", 1.0)) >= 1.0:  # a skipped update's latents may be NaN
                    self._write_latents(positions, deter, stoch)
            host = {k: float(v) for k, v in fetched.items()}
            self.observe_update_time(time.monotonic() - t0)
            if not lowered:  # XLA's compute threads exist once a step has run
                lowered = True
                log.debug("lowered the CPU priority of %d learner threads", lower_compute_priority())
            self._check_finite(host)
            if host.get("opt/finite", 1.0) >= 1.0:  # a skipped update's losses would poison the window's mean
                for key, value in host.items():
                    total, n = sums.get(key, (0.0, 0))
                    sums[key] = (total + value, n + 1)
            now = time.monotonic()
            if first or (self.updates - window_updates >= self.metrics_every
                         and now - window_t >= self.metrics_interval_s):
                skipped = {key for key, value in host.items() if key not in sums}
                host = {**{key: host[key] for key in skipped}, **{key: total / n for key, (total, n) in sums.items()}}
                sums.clear()
                first = False
                host["fps/updates"] = (self.updates - window_updates) / max(now - window_t, 1e-9)
                host["opt/skipped_updates"] = float(self.nonfinite - window_nonfinite)  # non-finite, not applied
                window_t, window_updates, window_nonfinite = now, self.updates, self.nonfinite
                host["replay/ratio"] = self.ratio()
                host["replay/size"] = float(self.replay.size)
                host["replay/write_errors"] = float(self.replay.write_errors)
                host["train/s_per_update"] = self.last_update_s
                on_metrics(self.updates, host)

    def observe_update_time(self, seconds: float) -> None:
        """Fold one update's wall time into `update_s_ema`, which paces the actor. An update far slower than
        usual (the process was suspended, a disk stall, a long GC pause) counts as at most 4x the average, so it
        moves the average by at most 30 %: taken whole, one 60 s outlier would slow the game for minutes, as
        the slowed actor then also holds back the updates that would bring the average down again."""
        self.last_update_s = seconds
        ema = self.update_s_ema
        self.update_s_ema = seconds if ema is None else 0.9 * ema + 0.1 * min(seconds, 4 * ema)

    def _check_finite(self, metrics: dict[str, float]) -> None:
        """Count a skipped (non-finite) update. A streak is logged at its first update, every
        NONFINITE_LOG_EVERY updates and at its end: a model stuck at NaN made one log line per update (at a
        GPU's rate, the whole rotating log in hours, and the lines that explain it rotated away)."""
        if metrics.get("opt/finite", 1.0) >= 1.0:
            if self._nonfinite_streak > 1:
                log.warning("updates %d-%d (%d in a row) were non-finite and skipped; update %d is finite again",
                            self.updates - self._nonfinite_streak, self.updates - 1, self._nonfinite_streak,
                            self.updates)
            self._nonfinite_streak = 0
            return
        self.nonfinite += 1
        self._nonfinite_streak += 1
        if self._nonfinite_streak == 1:
            bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
            log.error("update %d had a non-finite loss or gradient (%s); it was skipped and the parameters "
                      "kept their last good values", self.updates, ", ".join(bad) or "opt/grad_norm")
        elif self._nonfinite_streak % NONFINITE_LOG_EVERY == 0:
            log.error("%d updates in a row were non-finite and skipped (since update %d); the parameters keep "
                      "their last good values; rolling back to a good checkpoint may help",
                      self._nonfinite_streak, self.updates - self._nonfinite_streak + 1)
