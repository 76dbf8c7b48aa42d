"""Measure ms per composed broadcast frame with every panel on. Prints one JSON line per layout and case. Not a test.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/overlay_speed.py [--frames 500] [--keys version|digest]

Sample data as the app passes it: a 64x64 game frame, three dream strips of 8 frames (with 8 predicted
rewards), four curves of 2,000 points, 10 results, a poll, 5 chat lines and a notice. Two cases per layout:

- steady: only the game frame and the HUD values change, as in most frames of a stream;
- changed: the dream strips and every curve change too (new data and versions), the worst case, which the app
  meets every few seconds when it refreshes them.

`--keys version` (default) sets the version fields as the app should; `--keys digest` leaves them None, so every
frame hashes the strips and curves to find that they did not change. The process is pinned to one core and
OpenCV to one thread (`--cores 0` leaves both alone).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace

import cv2
import numpy as np

from overlays import ChatLine, Curve, Dream, Layout, OverlayState, Poll, Result, clear_caches, compose

STRIP_LEN, CURVE_LEN = 8, 2000


def sample_state(rng: np.random.Generator, version: int | None) -> OverlayState:
    """Return an OverlayState with every panel filled; `version` is set on the strips and curves (or None)."""
    def strip() -> np.ndarray:
        return rng.integers(0, 256, (STRIP_LEN, 64, 64, 3), dtype=np.uint8)

    steps = np.linspace(0, 1.2e6, CURVE_LEN)
    curves = tuple(Curve(label=label, steps=steps, values=np.cumsum(rng.normal(0, 1, CURVE_LEN)), version=version)
                   for label in ("episode score", "world-model loss", "eval score", "Elo"))
    return OverlayState(
        run_name="crafter-dreamer-01", game="crafter", opponent="", notice="rolled back to checkpoint 42",
        hud={"env steps": 1_234_567, "updates": 38_211, "env fps": 29.97, "updates / s": 0.34, "train ratio": 32.0,
             "checkpoint": "#42 · 12m", "uptime": "3d 04:12", "episodes": 812},
        action="move_left",
        dream=Dream(reality=strip(), prediction=strip(), imagined=strip(), imagined_reward=rng.normal(0, 0.3, 8),
                    version=version),
        curves=curves,
        results=tuple(Result(outcome=o) for o in ("win", "loss", "draw", "win", "win") * 2),
        poll=Poll(question="next opponent?", votes={"stockfish-1": 12, "random": 5, "stockfish-3": 8},
                  seconds_left=23),
        chat=tuple(ChatLine(user=f"viewer{i}", text=f"!vote stockfish-{i}") for i in range(5)),
    )


def measure(layout: Layout, frames: int, changed: bool, keys: str, rng: np.random.Generator) -> np.ndarray:
    """Return the ms of each of `frames` composed frames after a warm-up frame."""
    version = 0 if keys == "version" else None
    state = sample_state(rng, version)
    games = rng.integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    fresh = [sample_state(rng, None) for _ in range(8)] if changed else []
    hud = dict(state.hud)
    compose(games[0], state, layout)  # static parts and caches are built on first use
    times = []
    for i in range(frames):
        hud["env steps"] = 1_234_567 + i
        hud["env fps"] = 29.0 + (i % 10) / 10
        frame_state = replace(state, hud=dict(hud))
        if changed:
            new = fresh[i % len(fresh)]
            v = None if version is None else i + 1
            frame_state = replace(frame_state, dream=replace(new.dream, version=v),
                                  curves=tuple(replace(c, version=v) for c in new.curves))
        t0 = time.perf_counter()
        compose(games[i % len(games)], frame_state, layout)
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=500, help="steady frames per layout (changed: a fifth)")
    parser.add_argument("--keys", choices=("version", "digest"), default="version")
    parser.add_argument("--cores", type=int, default=1, help="pin to this many cores (0: no pinning)")
    args = parser.parse_args()
    if args.cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
        cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    for name, (w, h) in {"720p": (1280, 720), "1080p": (1920, 1080)}.items():
        layout = Layout(width=w, height=h)
        for case, frames in (("steady", args.frames), ("changed", max(1, args.frames // 5))):
            clear_caches()
            ms = measure(layout, frames, case == "changed", args.keys, rng)
            print(json.dumps({"layout": name, "case": case, "keys": args.keys, "frames": frames,
                              "ms_mean": round(float(ms.mean()), 3), "ms_p50": round(float(np.median(ms)), 3),
                              "ms_p99": round(float(np.percentile(ms, 99)), 3)}), flush=True)


if __name__ == "__main__":
    main()
