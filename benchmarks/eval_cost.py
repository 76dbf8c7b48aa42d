"""What one checkpoint evaluation costs: the checkpoint job's episodes (or, for chess, its ladder games) played
with a DreamerV3 agent's parameters in this process, as the app plays them beside training. Prints one JSON
line: seconds, episodes, agent steps, ms per step (policy + env), and the score (Elo for rated chess). The
agent is a run's newest checkpoint (--logdir) or freshly initialised. Not a test; it asserts nothing.

    .venv/bin/python benchmarks/eval_cost.py --configs crafter size1m [--episodes 10] [--logdir RUN]
    .venv/bin/python benchmarks/eval_cost.py --configs chess size1m --episodes 10
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import envs
from app.config import load_blocks, resolve
from app.evaluation import EVAL_SEED_OFFSET, eval_plan, first_elo_estimate, play_episodes, score_of
from app.training import load_policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["crafter", "size1m"])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--logdir", type=Path, help="a run dir whose newest checkpoint plays (default: untrained)")
    args = parser.parse_args()
    cfg = resolve(args.configs, [], environ={}, blocks=load_blocks())
    probe = envs.make_from_config(cfg.env)
    obs_space, action_space = probe.observation_space, probe.action_space
    probe.close()
    root = args.logdir or Path(tempfile.mkdtemp(prefix="eval-cost-"))
    agent, checkpoint = load_policy(cfg, obs_space, action_space, root)
    rated = cfg.env.id == "chess" and cfg.scheduler.elo_ladder
    plan = eval_plan(cfg.env, args.episodes, elo_estimate=first_elo_estimate(cfg.env, None) if rated else None,
                     rungs=cfg.scheduler.elo_rungs)
    params = agent.params
    steps = {"n": 0}

    def act(obs, state, is_first):
        steps["n"] += 1
        return agent.policy(obs, state, is_first, params=params)

    # The first evaluation of a session also compiles the in-process policy step (once; cached on disk).
    t0 = time.monotonic()
    env = envs.make_from_config(cfg.env)
    play_episodes(env, act, 1, seed=cfg.env.seed + EVAL_SEED_OFFSET - 1)
    env.close()
    first_s = time.monotonic() - t0
    steps["n"] = 0
    played = []
    t0 = time.monotonic()
    for env_cfg, count, rung in plan:
        env = envs.make_from_config(env_cfg)
        try:
            seed = cfg.env.seed + EVAL_SEED_OFFSET + len(played)
            played += [(e, rung) for e in play_episodes(env, act, count, seed=seed)]
        finally:
            env.close()
    seconds = time.monotonic() - t0
    score = score_of(played, rated=rated)
    print(json.dumps({
        "configs": args.configs, "checkpoint": checkpoint, "episodes": len(played), "seconds": round(seconds, 2),
        "agent_steps": steps["n"], "ms_per_step": round(1000 * seconds / max(steps["n"], 1), 2),
        "warmup_episode_s": round(first_s, 2), "score_kind": "Elo" if rated else "mean return",
        "score": round(score.mean, 3), "sem": round(score.sem, 3),
        "opponents": sorted({str(e.get("opponent")) for e, _ in played}) if rated else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
