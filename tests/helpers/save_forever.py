"""Helper process for the kill -9 test: changes every float of a tiny agent's train state (parameters, optimiser
state, slow critic, return normaliser) as an update would, and checkpoints after every such step, forever.
(No real train step: its compile would only slow the test; the checkpoint sees the same tree.)

Before each save it records the sum of its whole train state in `sums.json` (atomically),
so the test can check that whatever checkpoint survives a kill -9 holds exactly what was saved.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def checksum(state) -> float:
    """The sum of every number in a train state (parameters, optimiser state, slow critic, normaliser, step)."""
    return float(sum(np.asarray(x, np.float64).sum() for x in jax.tree.leaves(state)))


def main() -> None:
    out = Path(sys.argv[1])
    from app.config import load_blocks
    from trainer.checkpoint import Checkpointer
    from trainer.config import TrainerConfig
    from trainer.dreamer import init_state
    from trainer.model import ActSpace

    cfg = TrainerConfig(**load_blocks()["tiny"]["trainer"])
    state = jax.jit(init_state, static_argnums=(0, 1, 2))(cfg, ActSpace(True, 3), (16, 16, 3), jax.random.PRNGKey(0))

    @jax.jit
    def step_fn(state):  # elementwise (random draws per leaf made its compile take 23 s)
        moved = jax.tree.map(lambda x: x * 0.999 + 1e-3 if jnp.issubdtype(x.dtype, jnp.floating) else x, state)
        return moved._replace(step=state.step + 1)

    ck = Checkpointer(out / "ck", keep=2, keep_best=0)
    sums: dict[str, float] = {}
    for update in range(1, 10**6):
        state = step_fn(state)
        # Recorded before the save: a kill between a finished save and this record would leave a complete
        # checkpoint the test knows nothing of.
        sums[str(update)] = checksum(state)
        tmp = out / "sums.json.tmp"
        tmp.write_text(json.dumps(sums))
        os.replace(tmp, out / "sums.json")
        ck.save(update, state, {"updates": update, "env_step": update * 10})
        print(update, flush=True)


if __name__ == "__main__":
    main()
