"""Measure DreamerV3 training speed with a live actor beside it. Prints one JSON line. Not a test.

An actor thread plays the env with the agent's policy and fills replay while the learner thread trains
at the configured train ratio (learner waits when ahead; the actor never waits). Reported: seconds per
update and updates/s (after warm-up), env steps/s, the actor's stall (the longest policy call: where acting could wait
for the learner), its longest replay insert (chunk files are written to a temp dir as in the app) and
its longest env step (or step + reset) and its longest gap between two env steps (policy + insert + env
step/reset, beside the pacing it was asked for), peak RSS, compile time, and the parameter count.

    .venv/bin/python benchmarks/train_speed.py --configs crafter size1m --run.train_ratio 32 --updates 20
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

import envs
from app.config import parse_overrides, resolve
from trainer.agent import DreamerAgent
from trainer.config import compute_dtype
from trainer.learner import Learner
from trainer.replay import Replay, step_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="*", default=["crafter", "size1m"])
    parser.add_argument("--updates", type=int, default=20, help="updates to time after the warm-up")
    parser.add_argument("--warmup-updates", type=int, default=3)
    parser.add_argument("--actor-fps", type=float, default=0.0,
                        help="cap the actor (0: paced to the learner at the train ratio, as the app does)")
    args, rest = parser.parse_known_args()
    overrides = [("trainer.batch_size", 16), ("trainer.batch_length", 64), ("run.train_ratio", 32),
                 *parse_overrides(rest)]
    cfg = resolve(args.configs, overrides, environ={})
    t = cfg.trainer
    env = envs.make_from_config(cfg.env)
    agent = DreamerAgent(t, env.observation_space, env.action_space)
    act = agent.act_space
    compile_s = agent.compile(t.batch_size, t.batch_length)
    if "--no-gc-freeze" not in rest:
        gc.freeze()  # as the app does after start-up: full collections then skip the long-lived objects
    spec = step_spec(agent.image_shape, () if act.discrete else (act.n,), "int32" if act.discrete else "float32",
                     latent=(t.deter, t.stoch) if t.replay_context else None, mask=act.n if act.masked else None)
    replay_dir = Path(tempfile.mkdtemp(prefix="train_speed-replay-"))
    replay = Replay(spec, capacity=200_000, length=t.batch_length + t.replay_context, context=t.replay_context,
                    chunk_steps=1024,
                    directory=replay_dir)
    steps = {"n": 0}
    learner = Learner(agent, replay, train_ratio=cfg.run.train_ratio, env_steps=lambda: steps["n"])
    stop = threading.Event()
    gaps: list[float] = []
    policy_s: list[float] = []
    add_s: list[float] = []
    env_s: list[float] = []
    pace = {"s": 1.0 / args.actor_fps if args.actor_fps else 0.0}

    def actor() -> None:
        obs, _ = env.reset(seed=0)
        state, reward, first = None, 0.0, True
        last = time.monotonic()
        while not stop.is_set():
            t_policy = time.monotonic()
            action, state = agent.policy(obs, state, first)
            t_add = time.monotonic()
            policy_s.append(t_add - t_policy)
            replay.add({"image": obs["image"], "action": agent.env_action_to_stored(action),
                        "reward": np.float32(reward), "is_first": first, "is_last": False, "is_terminal": False,
                        **(agent.latent_to_stored(state) if t.replay_context else {}),
                        **({"action_mask": obs["action_mask"]} if act.masked else {})})
            t_env = time.monotonic()
            add_s.append(t_env - t_add)
            obs, reward, term, trunc, _ = env.step(action)
            first = False
            steps["n"] += 1
            if term or trunc:
                obs, _ = env.reset()
                state, reward, first = None, 0.0, True
            env_s.append(time.monotonic() - t_env)
            wait = pace["s"]
            if wait:
                stop.wait(wait)
            now = time.monotonic()
            gaps.append(now - last - wait)
            last = now

    times: list[float] = []

    def on_metrics(updates: int, metrics: dict[str, float]) -> None:
        times.append(metrics["train/s_per_update"])
        if not args.actor_fps:  # pace like the app: the rate at which the learner keeps the ratio
            pace["s"] = metrics["train/s_per_update"] * cfg.run.train_ratio / (t.batch_size * t.batch_length)
        if len(times) >= args.warmup_updates + args.updates:
            stop.set()

    learner.metrics_every = 1
    threads = [threading.Thread(target=actor, daemon=True),
               threading.Thread(target=learner.run, args=(stop, on_metrics), daemon=True)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    peak_rss = 0
    while not stop.wait(1.0):
        peak_rss = max(peak_rss, psutil.Process().memory_info().rss)
    wall = time.monotonic() - t0
    for th in threads:
        th.join(timeout=60)
    timed = times[args.warmup_updates:]
    s_per_update = float(np.mean(timed)) if timed else float("nan")
    print(json.dumps({
        "configs": args.configs, "overrides": rest, "env": cfg.env.id, "batch": [t.batch_size, t.batch_length],
        "train_ratio": cfg.run.train_ratio, "compute_dtype": compute_dtype(t), "imag_last": t.imag_last,
        "replay_context": t.replay_context,
        "s_per_update": round(s_per_update, 3), "s_per_update_min": round(float(np.min(timed)), 3),
        "updates_per_s": round(1 / s_per_update, 4), "env_steps_per_s": round(steps["n"] / wall, 2),
        "max_actor_stall_s": round(max(policy_s[10:]), 4),
        "p99_policy_s": round(float(np.percentile(policy_s[10:], 99)), 4),
        "max_replay_add_s": round(max(add_s[10:]), 4), "replay_chunks_written": len(list(replay_dir.glob("*.npz"))),
        "max_env_s": round(max(env_s[10:]), 4), "max_step_gap_s": round(max(gaps[10:]), 4),
        "peak_rss_mb": round(max(peak_rss, psutil.Process().memory_info().rss) / 1e6, 1),
        "compile_s": round(compile_s, 1), "param_count": agent.param_count, "cpus": os.cpu_count(),
        "jax_devices": [str(d) for d in __import__("jax").devices()],
    }))
    sys.stdout.flush()
    shutil.rmtree(replay_dir, ignore_errors=True)
    os._exit(0)  # skip slow interpreter teardown of XLA threads


if __name__ == "__main__":
    main()
