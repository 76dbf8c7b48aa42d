"""Measure every registered env as the app makes it: random-agent steps/s at 64x64 after a warm-up, and reset
time. Prints one JSON line per env (an `error` line when one cannot be made, a `skipped` line for envs that
need a display unless --with-display). Not a test; it asserts nothing.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/env_speed.py [--seconds 5] [--ids catch atari/pong] [--with-display]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

import envs

EXTRA_IDS = ("atari/breakout",)
"""Measured besides each family's default task."""


def default_ids() -> list[str]:
    """Return each registered env with its default task (atari/pong, dmc/cartpole_balance, ...) plus EXTRA_IDS."""
    ids = [f"{s.id}/{s.default_task}" if s.is_family else s.id for s in envs.specs()]
    return ids + [i for i in EXTRA_IDS if i not in ids]


def timed_reset(env: Any, seed: int) -> tuple[Any, float]:
    """Return the first observation and the reset's duration in seconds."""
    t0 = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    return obs, time.perf_counter() - t0


def play(env: Any, seconds: float, first_seed: int) -> dict[str, Any]:
    """Step with random actions for `seconds`, resetting (with the app's seed sequence) at episode ends."""
    steps, episodes, step_s, reset_times = 0, 0, 0.0, []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        action = env.action_space.sample()
        t0 = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        step_s += time.perf_counter() - t0
        steps += 1
        if terminated or truncated:
            episodes += 1
            reset_times.append(timed_reset(env, first_seed + episodes)[1])
    return {"steps": steps, "episodes": episodes, "step_s": step_s, "reset_times": reset_times}


def measure(env_id: str, seconds: float, warmup_s: float) -> dict[str, Any]:
    """Return the speed figures of one env (64x64 images, its config section's defaults)."""
    t0 = time.perf_counter()
    env = envs.make_from_config(envs.EnvConfig(id=env_id, image_size=64))
    try:
        make_s = time.perf_counter() - t0
        env.action_space.seed(0)
        _, first_reset_s = timed_reset(env, 0)
        play(env, warmup_s, first_seed=10_000)  # JIT, caches, GL contexts
        reset_times = [timed_reset(env, seed)[1] for seed in range(1, 4)]
        run = play(env, seconds, first_seed=100)
        reset_times += run["reset_times"]
        return {"id": env_id, "steps_per_s": round(run["steps"] / seconds, 1),
                "step_ms": round(1000 * run["step_s"] / max(run["steps"], 1), 3),
                "reset_ms": round(1000 * float(np.mean(reset_times)), 2), "episodes": run["episodes"],
                "make_ms": round(1000 * make_s, 1), "first_reset_ms": round(1000 * first_reset_s, 1),
                "seconds": seconds}
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per env (after the warm-up)")
    parser.add_argument("--warmup-seconds", type=float, default=1.0)
    parser.add_argument("--ids", nargs="+", help="env ids to measure (default: every registered env)")
    parser.add_argument("--with-display", action="store_true", help="also measure envs that need an X display")
    args = parser.parse_args()
    for env_id in args.ids or default_ids():
        try:
            if envs.spec(env_id).needs_display and not args.with_display:
                print(json.dumps({"id": env_id, "skipped": "needs an X display; pass --with-display"}), flush=True)
                continue
            print(json.dumps(measure(env_id, args.seconds, args.warmup_seconds)), flush=True)
        except Exception as exc:  # one broken env must not hide the others' figures
            print(json.dumps({"id": env_id, "error": f"{type(exc).__name__}: {exc}"}), flush=True)


if __name__ == "__main__":
    main()
