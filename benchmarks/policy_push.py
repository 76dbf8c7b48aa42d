"""What a parameter push costs acting: the policy process's act latency (p50, p99, max) with no pushes, then
with new parameters pushed at a given rate (a GPU learner finishes several updates a second). Prints one JSON
line per model size. Not a test; it asserts nothing.

    .venv/bin/python benchmarks/policy_push.py --sizes size12m size50m [--pushes-per-s 5] [--acts 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from app.config import load_blocks
from trainer.config import TrainerConfig
from trainer.model import ActSpace, DreamerModel
from trainer.policy_server import PolicyServer


def latencies(server: PolicyServer, image: np.ndarray, mask: np.ndarray, n: int) -> dict[str, float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        server.act(image, mask, i == 0)
        times.append(time.perf_counter() - t0)
    ms = 1e3 * np.array(times)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(ms.max()), 1)}


def measure(size: str, pushes_per_s: float, acts: int) -> dict:
    cfg = dataclasses.replace(TrainerConfig(), **load_blocks()[size]["trainer"])
    act, image_shape = ActSpace(True, 17), (64, 64, 3)
    model = DreamerModel(cfg, act, image_shape)
    init = jax.jit(lambda k: model.init(k, jnp.zeros((1, *image_shape), jnp.uint8), jnp.zeros((1, act.n)),
                                        jnp.ones((1,), bool), k)["params"])
    params = jax.device_get(init(jax.random.PRNGKey(0)))
    mb = sum(x.nbytes for x in jax.tree.leaves(params)) / 1e6
    server = PolicyServer(cfg, act, image_shape, params, seed=1)
    try:
        image, mask = np.zeros(image_shape, np.uint8), np.ones(act.n, bool)
        quiet = latencies(server, image, mask, acts)
        stop = threading.Event()

        def pusher() -> None:
            while not stop.is_set():
                server.sync(jax.tree.map(lambda x: x + 0, params))  # a fresh tree, as each update makes
                time.sleep(1 / pushes_per_s)

        thread = threading.Thread(target=pusher, daemon=True)
        thread.start()
        pushed = latencies(server, image, mask, acts)
        stop.set()
        thread.join()
    finally:
        server.close()
    return {"size": size, "param_mb": round(mb, 1), "pushes_per_s": pushes_per_s, "acts": acts,
            "no_pushes": quiet, "with_pushes": pushed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["size12m", "size50m"])
    parser.add_argument("--pushes-per-s", type=float, default=5.0)
    parser.add_argument("--acts", type=int, default=300)
    args = parser.parse_args()
    for size in args.sizes:
        print(json.dumps(measure(size, args.pushes_per_s, args.acts)), flush=True)


if __name__ == "__main__":
    main()
