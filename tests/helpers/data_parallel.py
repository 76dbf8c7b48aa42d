"""Helper process for the data-parallel test: one train step on a mesh of N forced host devices.

Run with XLA_FLAGS=--xla_force_host_platform_device_count=2 and args `N OUT.npy`: saves the updated
parameters (flattened) after three steps on the same batches and keys, and prints JSON with the device
count, the last loss, and whether the compiled step all-reduces across devices.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
from jax.sharding import Mesh


def random_batch() -> dict[str, np.ndarray]:
    """The fixed batch of 4 sequences x 8 steps of 16x16 frames (3 actions) both parallel tests train on."""
    rng = np.random.default_rng(0)
    return {"image": rng.integers(0, 256, (4, 8, 16, 16, 3), dtype=np.uint8),
            "action": rng.integers(0, 3, (4, 8)).astype(np.int32),
            "reward": rng.normal(size=(4, 8)).astype(np.float32),
            "is_first": np.zeros((4, 8), bool), "is_last": np.zeros((4, 8), bool),
            "is_terminal": np.zeros((4, 8), bool)}


def main() -> None:
    from app.config import load_blocks
    from trainer.config import TrainerConfig
    from trainer.dreamer import init_state, make_train_step
    from trainer.model import ActSpace

    n = int(sys.argv[1])
    cfg = TrainerConfig(**{**load_blocks()["tiny"]["trainer"], "batch_size": 4})
    act = ActSpace(True, 3)
    batch = random_batch()
    state = init_state(cfg, act, (16, 16, 3), jax.random.PRNGKey(0))
    mesh = Mesh(np.array(jax.devices()[:n]), ("data",)) if n > 1 else None
    step = make_train_step(cfg, act, (16, 16, 3), mesh).lower(state, batch, jax.random.PRNGKey(0)).compile()
    for i in range(3):
        state, metrics = step(state, batch, jax.random.PRNGKey(i))
    leaves = [np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(state.params)]
    flat = np.concatenate(leaves)
    np.save(sys.argv[2], flat)
    print(json.dumps({"devices": len(jax.devices()), "used": n, "loss": float(metrics["loss/total"]),
                      "hlo_all_reduce": "all-reduce" in step.as_text()}))


if __name__ == "__main__":
    main()
