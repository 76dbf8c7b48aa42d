"""Helper process for the kill -9 test: trains a tiny agent and checkpoints after every update, forever.

After each completed save it records the sum of all parameters of that step in `sums.json` (atomically),
so the test can check that whatever checkpoint survives a kill -9 holds exactly what was saved.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jax
import numpy as np


def main() -> None:
    out = Path(sys.argv[1])
    from app.config import load_blocks
    from trainer.checkpoint import Checkpointer
    from trainer.config import TrainerConfig
    from trainer.dreamer import init_state, make_train_step
    from trainer.model import ActSpace

    cfg = TrainerConfig(**load_blocks()["tiny"]["trainer"])
    act = ActSpace(True, 3)
    state = init_state(cfg, act, (16, 16, 3), jax.random.PRNGKey(0))
    step_fn = make_train_step(cfg, act, (16, 16, 3))
    ck = Checkpointer(out / "ck", keep=2, keep_best=0)
    rng = np.random.default_rng(0)
    sums: dict[str, float] = {}
    for update in range(1, 10**6):
        batch = {"image": rng.integers(0, 256, (2, 8, 16, 16, 3), dtype=np.uint8),
                 "action": rng.integers(0, 3, (2, 8)).astype(np.int32),
                 "reward": rng.normal(size=(2, 8)).astype(np.float32),
                 **{k: np.zeros((2, 8), bool) for k in ("is_first", "is_last", "is_terminal")}}
        state, _ = step_fn(state, batch, jax.random.PRNGKey(update))
        ck.save(update, state, {"updates": update, "env_step": update * 10})
        sums[str(update)] = float(sum(np.asarray(x, np.float64).sum() for x in jax.tree.leaves(state.params)))
        tmp = out / "sums.json.tmp"
        tmp.write_text(json.dumps(sums))
        os.replace(tmp, out / "sums.json")
        print(update, flush=True)


if __name__ == "__main__":
    main()
