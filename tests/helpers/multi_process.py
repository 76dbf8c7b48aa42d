"""Helper process for the multi-process test: the agent's update with the batch split over processes.

`single OUT`: one process, every device (run it with 2 forced host devices), the whole batch.
`multi OUT PROCESS_ID NUM_PROCESSES PORT`: one of NUM_PROCESSES processes joined by jax.distributed, each
feeding its share of the same batch. Saves the parameters (flattened) after three updates, and prints JSON
with the process and device counts, the last loss, and process 0's parameter checksum after a broadcast.
"""

from __future__ import annotations

import json
import sys

import gymnasium as gym
import numpy as np


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    from trainer.config import DistributedConfig

    if mode == "multi":
        from trainer.distributed import initialize

        pid, n, port = (int(x) for x in sys.argv[3:6])
        initialize(DistributedConfig(coordinator=f"127.0.0.1:{port}", num_processes=n, process_id=pid))
    import jax

    from app.config import load_blocks
    from tests.helpers.data_parallel import random_batch
    from trainer.agent import DreamerAgent
    from trainer.config import TrainerConfig
    from trainer.distributed import broadcast_from_primary

    cfg = TrainerConfig(**{**load_blocks()["tiny"]["trainer"], "batch_size": 4, "batch_length": 8})
    obs = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)})
    agent = DreamerAgent(cfg, obs, gym.spaces.Discrete(3))
    batch = random_batch()
    share = agent.local_batch_size
    rows = slice(jax.process_index() * share, (jax.process_index() + 1) * share)
    for _ in range(3):
        metrics = agent.train({k: v[rows] for k, v in batch.items()})
    host = agent.host_state()
    flat = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(host.params)])
    np.save(out, flat)
    # Process 0's values reach every process (what a restored checkpoint does across processes).
    mine = np.float64(jax.process_index() + 1)
    print(json.dumps({"processes": jax.process_count(), "devices": jax.device_count(), "local_batch": share,
                      "loss": float(jax.device_get(metrics["loss/total"])),
                      "broadcast": float(broadcast_from_primary(mine))}))


if __name__ == "__main__":
    main()
