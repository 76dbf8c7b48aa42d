"""Scoring checkpoints and deciding rollbacks: evaluation episodes, score summaries, the rollback rule.

Every checkpoint the app writes is ranked by a score: the mean return of `scheduler.eval_episodes`
evaluation episodes played with the checkpoint's own parameters on a separate env (seeds that never meet
training's), or, with evaluation off, the mean of the last training episodes. Orbax keeps the best-ranked
checkpoint beside the newest ones, and `RollbackRule` says when to go back to it: after
`scheduler.rollback_after` checkpoints in a row scored clearly (by `scheduler.rollback_z` standard errors)
below it.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from app.rating import GAME_SCORE, LADDER, fit_rating, nearest_rungs, rung_of
from envs import EnvConfig

if TYPE_CHECKING:
    from app.config import Config

__all__ = ["EVAL_SEED_OFFSET", "Deadline", "RollbackRule", "Score", "eval_plan", "first_elo_estimate", "held_out",
           "play_episodes", "ranking_metric", "score_of", "with_opponent"]

EVAL_SEED_OFFSET = 10_000_000
"""Evaluation episode i uses seed env.seed + EVAL_SEED_OFFSET + i; training seeds count up from env.seed."""

Act = Callable[[dict[str, Any], Any, bool], tuple[Any, Any]]
"""policy(obs, state, is_first) -> (action, state); state None starts an episode."""


@dataclass(frozen=True)
class Score:
    """A checkpoint's score: the mean return of `episodes` episodes and its standard error."""

    mean: float
    sem: float
    episodes: int

    @classmethod
    def of(cls, returns: Sequence[float]) -> Score:
        if not returns:
            raise ValueError("a score needs at least one episode")
        sem = statistics.stdev(returns) / math.sqrt(len(returns)) if len(returns) > 1 else 0.0
        return cls(statistics.fmean(returns), sem, len(returns))

    @classmethod
    def from_metrics(cls, metrics: dict[str, float], key: str = "score") -> Score:
        """The score a checkpoint was saved with (see `as_metrics`); older checkpoints have no s.e.m."""
        return cls(metrics[key], metrics.get(f"{key}_sem", 0.0), int(metrics.get("episodes", 0)))

    def extra_metrics(self, key: str = "score") -> dict[str, float]:
        """What a checkpoint keeps beside its ranking metric."""
        return {f"{key}_sem": self.sem, "episodes": float(self.episodes)}

    def clearly_below(self, best: Score, z: float) -> bool:
        """True when this score is more than `z` combined standard errors below `best`; never when either
        rests on fewer than two episodes (no standard error to judge by)."""
        if self.episodes < 2 or best.episodes < 2:
            return False
        return self.mean < best.mean - z * math.hypot(self.sem, best.sem)

    def __str__(self) -> str:
        return f"{self.mean:.3g} ± {self.sem:.2g} ({self.episodes} episodes)"


class RollbackRule:
    """Counts checkpoints in a row that scored clearly below the best; says when to roll back.

    `after` = 0 never rolls back. The count restarts after a rollback and whenever a checkpoint is not
    clearly worse, so one unlucky evaluation never triggers it.
    """

    def __init__(self, after: int, z: float) -> None:
        self.after, self.z = after, z
        self.worse_in_a_row = 0

    def observe(self, score: Score, best: Score | None) -> bool:
        """Record the newest checkpoint's score against the best one's; True: roll back now."""
        if best is None or not score.clearly_below(best, self.z):
            self.worse_in_a_row = 0
            return False
        self.worse_in_a_row += 1
        if self.after and self.worse_in_a_row >= self.after:
            self.worse_in_a_row = 0
            return True
        return False


def ranking_metric(cfg: Config) -> str:
    """The checkpoint metric a run ranks by: 'elo' for chess rated against the ladder, else 'score' (a mean
    return). Kept under its own name so checkpoints ranked on another scale are never compared with it."""
    rated = cfg.env.id == "chess" and cfg.scheduler.elo_ladder and cfg.scheduler.eval_episodes > 0
    return "elo" if rated else "score"


def with_opponent(env: EnvConfig, spec: str) -> EnvConfig:
    """`env` with another chess opponent (a spec such as 'greedy' or 'stockfish:elo=1700')."""
    return replace(env, chess=replace(env.chess, opponent=spec))


def held_out(env: EnvConfig) -> EnvConfig:
    """The env a checkpoint is scored on: for mate-in-1, the held-out positions (the training ones would score
    memory, not what the agent can do on positions it never saw); other games as configured."""
    if env.id == "chess-mate-in-1" and env.mate.split == "train":
        return replace(env, mate=replace(env.mate, split="test"))
    return env


def eval_plan(env: EnvConfig, episodes: int, *, elo_estimate: float | None = None,
              rungs: int = 3) -> list[tuple[EnvConfig, int, float | None]]:
    """Where the evaluation episodes are played: [(env config, episodes, the rung's Elo or None)].

    Without `elo_estimate`, all on `env` as configured; with it (chess rated against the ladder), spread
    evenly over the `rungs` ladder rungs nearest the estimate, each one the opponent of its env.
    """
    if elo_estimate is None:
        return [(env, episodes, None)]
    nearest = nearest_rungs(elo_estimate, rungs)
    plan = []
    for i, (spec, elo) in enumerate(nearest):
        count = episodes // len(nearest) + (1 if i < episodes % len(nearest) else 0)
        if count:
            plan.append((with_opponent(env, spec), count, elo))
    return plan


def first_elo_estimate(env: EnvConfig, best: float | None) -> float:
    """Where rating starts: the best checkpoint's Elo, else the training opponent's rung, else the weakest rung."""
    if best is not None:
        return best
    found = rung_of(env.chess.opponent)
    return found if found is not None else LADDER[0][1]


def score_of(played: Sequence[tuple[dict[str, Any], float | None]], *, rated: bool) -> Score:
    """The score of evaluation episodes [(info['episode'], rung Elo or None)]: the mean return, or (rated) the
    Elo fitted from the games' results against the rungs, with its standard error."""
    if not rated:
        return Score.of([float(episode["return"]) for episode, _ in played])
    elo, se = fit_rating([(rung, GAME_SCORE[episode["result"]]) for episode, rung in played if rung is not None])
    return Score(elo, se, len(played))


class Deadline:
    """A stop flag for `play_episodes`: set once `stop` is, or once `seconds` have passed (0: never)."""

    def __init__(self, stop: threading.Event, seconds: float) -> None:
        self.stop = stop
        self.at = time.monotonic() + seconds if seconds > 0 else math.inf

    def is_set(self) -> bool:
        return self.stop.is_set() or time.monotonic() >= self.at


def play_episodes(env: gym.Env, act: Act, episodes: int, *, seed: int, stop: threading.Event | Deadline | None = None,
                  on_episode: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Play `episodes` whole episodes (episode i from seed `seed + i`); return each one's `info["episode"]`.

    With `stop` set, returns at once with the episodes finished so far (an unfinished one is dropped).
    """
    done_episodes: list[dict[str, Any]] = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        state, is_first, done, info = None, True, False, {}
        while not done:
            if stop is not None and stop.is_set():
                return done_episodes
            action, state = act(obs, state, is_first)
            obs, _, terminated, truncated, info = env.step(action)
            is_first, done = False, terminated or truncated
        done_episodes.append(info["episode"])
        if on_episode is not None:
            on_episode(i, info["episode"])
    return done_episodes
