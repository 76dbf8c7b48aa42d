"""`dreamstream eval`: play evaluation episodes with the run's agent and store them as eval matches.

The agent is restored from the run's newest good checkpoint (a run without one plays the freshly
initialised agent, and says so); `--configs` with `trainer.agent: random` gives the random baseline.
"""

from __future__ import annotations

import logging

from rich.table import Table

import envs
from app.config import Config
from app.evaluation import EVAL_SEED_OFFSET, Score, play_episodes
from app.logs import output
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
    env = envs.make_from_config(cfg.env)
    agent, checkpoint = load_policy(cfg, env.observation_space, env.action_space, rundir.root)
    if cfg.trainer.agent == "random":
        who = "the random baseline"
    elif checkpoint is None:
        who = "an untrained DreamerV3 agent (this run has no checkpoint yet)"
    else:
        who = f"DreamerV3 from checkpoint {checkpoint}"
    log.info("evaluating %s on %s", who, cfg.env.id)
    state = rundir.read_state()
    step = int(state.get("env_step", 0))
    table = Table("episode", "score", "length", "result", title=f"eval of {rundir.root.name} on {cfg.env.id}")
    scores = []
    with sessions.begin() as session:
        run_id = ensure_run(session, rundir.root.name, cfg.env.id, cfg.trainer.agent).id

    def on_episode(i: int, episode: dict) -> None:
        score, length = float(episode["return"]), int(episode["length"])
        with sessions.begin() as session:
            record_episode(session, run_id, env_id=cfg.env.id, episode=episode, env_step=step, mode="eval",
                           checkpoint=checkpoint)
        scores.append(score)
        table.add_row(str(i + 1), f"{score:.2f}", str(length), episode.get("result") or "-")
        log.info("eval episode %d: score %.2f, length %d", i + 1, score, length)

    try:
        play_episodes(env, agent.policy, episodes, seed=cfg.env.seed + EVAL_SEED_OFFSET, on_episode=on_episode)
    finally:
        env.close()
        engine.dispose()
    score = Score.of(scores)
    output.print(table)
    output.print(f"mean score {score.mean:.2f} ± {score.sem:.2f} (s.e.m.) over {score.episodes} episodes of {who}")
    return 0
