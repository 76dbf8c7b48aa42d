"""`dreamstream eval`: play evaluation episodes with the run's agent and store them as eval matches.

PLACEHOLDER agent: until DreamerV3 lands (issue 4) the evaluated policy is the random agent, so the
figures printed are the random baseline of the game. The storage and report paths are the real ones.
"""

from __future__ import annotations

import logging
import math
import statistics
import time

from rich.table import Table

import envs
from app.config import Config
from app.logs import output
from app.rundir import RunDir
from app.storage import ensure_run, open_database, record_episode, upgrade
from trainer import RandomAgent

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
    agent = RandomAgent(env.action_space, seed=cfg.trainer.seed + 1_000_003)
    state = rundir.read_state()
    step = int(state.get("env_step", 0))
    table = Table("episode", "score", "length", "result", title=f"eval of {rundir.root.name} on {cfg.env.id}")
    scores = []
    with sessions.begin() as session:
        run_id = ensure_run(session, rundir.root.name, cfg.env.id, cfg.trainer.agent).id
    try:
        for i in range(episodes):
            t0 = time.monotonic()
            obs, _ = env.reset(seed=10_000_000 + cfg.env.seed + i)  # eval seeds never meet training seeds
            policy_state = agent.initial_state()
            done, info = False, {}
            while not done:
                action, policy_state = agent.policy(obs, policy_state)
                obs, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
            episode = info["episode"]
            score, length = float(episode["return"]), int(episode["length"])
            with sessions.begin() as session:
                record_episode(session, run_id, env_id=cfg.env.id, episode=episode, env_step=step, mode="eval")
            scores.append(score)
            table.add_row(str(i + 1), f"{score:.2f}", str(length), episode.get("result") or "-")
            log.info("eval episode %d: score %.2f, length %d (%.1fs)", i + 1, score, length, time.monotonic() - t0)
    finally:
        env.close()
        engine.dispose()
    mean = statistics.fmean(scores)
    sem = statistics.stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else float("nan")
    output.print(table)
    output.print(f"mean score {mean:.2f} ± {sem:.2f} (s.e.m.) over {len(scores)} episodes"
                  f"{' - PLACEHOLDER random agent' if cfg.trainer.agent == 'random' else ''}")
    return 0
