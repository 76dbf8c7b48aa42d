"""Helper process for the parallel-training test: the agent's update on one device, on two, and with the batch
split over two processes.

`single OUT_DIR` (run it with 2 forced host devices): in one process, the agent on one device, then data-parallel
over both, each on the whole batch; saves `one.npy` and `two.npy`.
`multi OUT PROCESS_ID NUM_PROCESSES PORT`: one of NUM_PROCESSES processes joined by jax.distributed, each feeding
its share of the same batch; saves OUT; then process 0 rolls every process back to a state only it has.
Parameters are saved flattened after three updates on the same batch; the last line printed is JSON with the
process and device counts, the last loss, and (multi) process 0's value after a broadcast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np


def random_batch() -> dict[str, np.ndarray]:
    """The fixed batch of 4 sequences x 8 steps of 16x16 frames (3 actions) every run trains on."""
    rng = np.random.default_rng(0)
    return {"image": rng.integers(0, 256, (4, 8, 16, 16, 3), dtype=np.uint8),
            "action": rng.integers(0, 3, (4, 8)).astype(np.int32),
            "reward": rng.normal(size=(4, 8)).astype(np.float32),
            "is_first": np.zeros((4, 8), bool), "is_last": np.zeros((4, 8), bool),
            "is_terminal": np.zeros((4, 8), bool)}


def three_updates(out: Path, keep: bool = False, **overrides):
    """Build the tiny agent, take three updates on this process's share of the batch, save its parameters."""
    import jax

    from app.config import load_blocks
    from trainer.agent import DreamerAgent
    from trainer.config import TrainerConfig

    cfg = TrainerConfig(**{**load_blocks()["tiny"]["trainer"], "batch_size": 4, "batch_length": 8, **overrides})
    obs = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)})
    agent = DreamerAgent(cfg, obs, gym.spaces.Discrete(3))
    info = {"local_batch": agent.local_batch_size, "mesh_devices": 0 if agent.mesh is None else agent.mesh.size}
    batch = random_batch()
    share = agent.local_batch_size
    rows = slice(jax.process_index() * share, (jax.process_index() + 1) * share)
    for _ in range(3):
        metrics = agent.train({k: v[rows] for k, v in batch.items()})
    if not agent.multiprocess:  # the program the updates ran (jit's cache: no second compile)
        program = agent._train_step.lower(agent.state, batch, agent._train_key).compile()
        info["all_reduce"] = "all-reduce" in program.as_text()
    host = agent.host_state()
    np.save(out, np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(host.params)]))
    info["loss"] = float(jax.device_get(metrics["loss/total"]))
    if keep:  # (the caller closes it)
        return info, agent
    agent.close()
    return info


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    from trainer.config import DistributedConfig

    if mode == "single":
        import jax

        runs = {name: three_updates(out / f"{name}.npy", data_parallel=parallel, policy_process=False)
                for name, parallel in (("one", False), ("two", True))}
        print(json.dumps({"processes": jax.process_count(), "devices": jax.device_count(), **runs}))
        return
    from trainer.distributed import initialize

    pid, n, port = (int(x) for x in sys.argv[3:6])
    initialize(DistributedConfig(coordinator=f"127.0.0.1:{port}", num_processes=n, process_id=pid))
    import jax

    from trainer.distributed import broadcast_from_primary

    run, agent = three_updates(out, keep=True)
    # Process 0's values reach every process (what a restored checkpoint does across processes).
    mine = np.float64(jax.process_index() + 1)
    broadcast = float(broadcast_from_primary(mine))
    print(json.dumps({"processes": jax.process_count(), "devices": jax.device_count(), **run,
                      "broadcast": broadcast, "rollback": rollback(agent)}))
    agent.close()


def rollback(agent) -> dict:
    """A rollback across processes: process 0's learner is given a state (here: its parameters + 1) while every
    process's learner loop runs, waiting for data; every process must take it in the same round."""
    import threading

    import jax

    from trainer.learner import Learner
    from trainer.replay import Replay, step_spec

    replay = Replay(step_spec((16, 16, 3)), capacity=256, length=8, chunk_steps=64, seed=0)  # empty: never ready
    learner = Learner(agent, replay, train_ratio=1.0, env_steps=lambda: 0)
    checksum = lambda: float(sum(np.asarray(x, np.float64).sum() for x in jax.tree.leaves(agent.host_state().params)))
    before = checksum()
    target = jax.tree.map(np.asarray, agent.host_state())
    target = target._replace(params=jax.tree.map(lambda x: x + 1, target.params))
    stop = threading.Event()
    loop = threading.Thread(target=learner.run, args=(stop, lambda *_: None))
    loop.start()
    if jax.process_index() == 0:
        learner.load_state(target, timeout_s=120)  # returns once every process has taken it
    else:
        assert learner._adopted.wait(120), "process 0's state never came"
    stop.set()
    loop.join(120)
    replay.close()
    return {"before": before, "after": checksum(), "shift": float(sum(x.size for x in jax.tree.leaves(target.params))),
            "loop_ended": not loop.is_alive()}


if __name__ == "__main__":
    main()
