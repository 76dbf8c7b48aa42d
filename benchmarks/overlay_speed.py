"""Measure ms per composed broadcast frame (one core). Prints one JSON line per layout. Not a test.

    .venv/bin/python benchmarks/overlay_speed.py [--frames 500]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from overlays import Layout, compose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=500)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    game = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    metrics = {"game": "crafter", "agent": "random (placeholder)", "env steps": 123456, "episodes": 789,
               "env fps": 29.97, "episode score": 3.1, "episode length": 120, "mean score (100)": 2.4,
               "last action": "move_left", "uptime": "01:02:03"}
    for name, (w, h) in {"720p": (1280, 720), "1080p": (1920, 1080)}.items():
        layout = Layout(width=w, height=h)
        compose(game, metrics, layout)  # static parts are cached on first use
        times = []
        for i in range(args.frames):
            metrics["env steps"] = 123456 + i
            t0 = time.perf_counter()
            compose(game, metrics, layout)
            times.append(time.perf_counter() - t0)
        ms = np.array(times) * 1000
        print(json.dumps({"layout": name, "frames": args.frames, "ms_mean": round(float(ms.mean()), 3),
                          "ms_p50": round(float(np.median(ms)), 3), "ms_p99": round(float(np.percentile(ms, 99)), 3)}))


if __name__ == "__main__":
    main()
