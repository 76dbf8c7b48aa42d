"""Measure what one replay insert costs the actor thread, above all at a chunk boundary (every
`--chunk` steps a finished chunk goes to the disk writer). Prints one JSON line per copy mode: `actor` (the
actor copies the chunk out of the ring, as for rings too small for the writer's queue) and `writer` (the
writer thread copies it; the default). Not a test; it asserts nothing.

    .venv/bin/python benchmarks/replay_add.py [--steps 8192] [--chunk 1024] [--size 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from trainer.replay import Replay, step_spec


def measure(lazy: bool, steps: int, chunk: int, size: int) -> dict:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        replay = Replay(step_spec((size, size, 3)), capacity=max(100_000, 16 * chunk), length=64,
                        directory=Path(tmp), chunk_steps=chunk)
        replay._lazy_copy = lazy  # the mode the capacity would choose; both are measured here
        times, boundary = [], []
        for i in range(steps):
            step = {"image": image, "action": np.int32(i % 17), "reward": np.float32(0.0), "is_first": i == 0,
                    "is_last": False, "is_terminal": False}
            t0 = time.perf_counter()
            replay.add(step)
            dt = time.perf_counter() - t0
            (boundary if (i + 1) % chunk == 0 else times).append(dt)
            if i % 32 == 0:
                time.sleep(0.001)  # an actor paced by its env: the writer thread gets to run in between
        replay.close()
    ms = lambda xs, f: round(1000 * float(f(xs)), 2)
    return {"copy_in": "writer" if lazy else "actor", "steps": steps, "chunk": chunk, "image": [size, size, 3],
            "chunk_mb": round(chunk * size * size * 3 / 2**20, 1), "median_add_ms": ms(times, np.median),
            "p999_add_ms": ms(times, lambda x: np.percentile(x, 99.9)), "max_add_ms": ms(times, np.max),
            "max_boundary_add_ms": ms(boundary, np.max), "mean_boundary_add_ms": ms(boundary, np.mean)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8192)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    for lazy in (False, True):
        print(json.dumps(measure(lazy, args.steps, args.chunk, args.size)))


if __name__ == "__main__":
    main()
