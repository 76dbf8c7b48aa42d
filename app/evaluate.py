"""`dreamstream eval`: play evaluation episodes with the run's agent and store them as eval matches.

The agent is restored from the run's newest good checkpoint (a run without one plays the freshly
initialised agent, and says so); `--configs` with `trainer.agent: random` gives the random baseline.
Chess with `scheduler.elo_ladder` is rated as the checkpoint job rates it: the games are spread over the
ladder rungs nearest the checkpoint's stored rating, and the Elo fitted from them is printed.
"""

from __future__ import annotations

import logging
from typing import Any

from rich.table import Table

import envs
from app.config import Config
from app.evaluation import EVAL_SEED_OFFSET, eval_plan, first_elo_estimate, held_out, play_episodes, score_of
from app.logs import output
from app.rating import rung_of
from app.rundir import RunDir
from app.storage import ensure_run, open_database, record_episode, upgrade
from app.training import load_policy

__all__ = ["evaluate"]

log = logging.getLogger(__name__)


def evaluate(cfg: Config, rundir: RunDir, *, episodes: int) -> int:
    """Play `episodes` episodes, store each as an eval episode, print a summary; return 0."""
    if episodes < 1:
        from app.errors import ConfigError

        raise ConfigError(f"--episodes = {episodes}: must be >= 1")
    engine, sessions = open_database(rundir.database_path(cfg.storage.database))
    upgrade(engine)
    probe = envs.make_from_config(cfg.env)
    obs_space, action_space = probe.observation_space, probe.action_space
    probe.close()
    agent, checkpoint = load_policy(cfg, obs_space, action_space, rundir.root)
    if cfg.trainer.agent == "random":
        who = "the random baseline"
    elif checkpoint is None:
        who = "an untrained DreamerV3 agent (this run has no checkpoint yet)"
    else:
        who = f"DreamerV3 from checkpoint {checkpoint}"
    rated = cfg.env.id == "chess" and cfg.scheduler.elo_ladder
    estimate = _elo_estimate(cfg, rundir, checkpoint) if rated else None
    log.info("evaluating %s on %s", who, cfg.env.id)
    step = int(rundir.read_state().get("env_step", 0))
    table = Table("episode", "opponent", "score", "length", "result",
                  title=f"eval of {rundir.root.name} on {cfg.env.id}")
    played: list[tuple[dict[str, Any], float | None]] = []
    with sessions.begin() as session:
        run_id = ensure_run(session, rundir.database_run_name(cfg.storage.database), cfg.env.id, cfg.trainer.agent).id

    def on_episode(rung: float | None, episode: dict[str, Any]) -> None:
        score, length = float(episode["return"]), int(episode["length"])
        with sessions.begin() as session:
            record_episode(session, run_id, env_id=cfg.env.id, episode=episode, env_step=step, mode="eval",
                           checkpoint=checkpoint)
        played.append((episode, rung))
        table.add_row(str(len(played)), str(episode.get("opponent") or "-"), f"{score:.2f}", str(length),
                      episode.get("result") or "-")
        log.info("eval episode %d: score %.2f, length %d", len(played), score, length)

    try:
        # scored where the checkpoint job scores: mate-in-1 on the held-out positions
        for env_cfg, count, rung in eval_plan(held_out(cfg.env), episodes, elo_estimate=estimate,
                                              rungs=cfg.scheduler.elo_rungs):
            env = envs.make_from_config(env_cfg)
            try:
                play_episodes(env, agent.policy, count, seed=cfg.env.seed + EVAL_SEED_OFFSET + len(played),
                              on_episode=lambda _, episode, rung=rung: on_episode(rung, episode))
            finally:
                env.close()
    finally:
        engine.dispose()
    score = score_of(played, rated=False)
    output.print(table)
    output.print(f"mean score {score.mean:.2f} ± {score.sem:.2f} (s.e.m.) over {score.episodes} episodes of {who}")
    if rated:
        elo = score_of(played, rated=True)
        output.print(f"Elo {elo.mean:.0f} ± {elo.sem:.0f} (s.e.; Stockfish 15.1 engine scale) from {elo.episodes} "
                     "games against the ladder")
    return 0


def _elo_estimate(cfg: Config, rundir: RunDir, checkpoint: int | None) -> float:
    """Where the rating starts, so the games go to the rungs near the agent's strength: the Elo the checkpoint
    was rated with; else the best rated checkpoint's (the newest is often unscored: the shutdown's save, a
    rollback's); else the curriculum's rung from state.json; else the configured opponent's."""
    from trainer.checkpoint import Checkpointer

    stored = None
    if checkpoint is not None:
        checkpointer = Checkpointer(rundir.checkpoints_dir, read_only=True, best_metric="elo")
        try:
            metrics = checkpointer.metrics(checkpoint)  # None unless it was rated in Elo
            ranked = checkpointer.ranked()
        finally:
            checkpointer.close()
        stored = metrics["elo"] if metrics is not None else ranked[0][1]["elo"] if ranked else None
    if stored is None:
        curriculum = rundir.read_state().get("curriculum")
        reached = curriculum.get("opponent") if isinstance(curriculum, dict) else None
        if isinstance(reached, str) and rung_of(reached) is not None:
            stored = rung_of(reached)
    return first_elo_estimate(cfg.env, stored)
