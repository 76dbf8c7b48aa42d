"""Training over several processes with `jax.distributed` (the official design's multi-host data parallelism).

Every process runs the same learner on its own env and replay; the train step's mesh spans the devices of
all processes, each process feeds its share of the batch (`global_batch`), and XLA averages the gradients
across processes, so every process holds the same parameters after every update. Process 0 (the primary)
writes checkpoints; after a restore it sends its state to the others (`broadcast_from_primary`). On CPUs
the collectives run over gloo (TCP), on GPUs over NCCL.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from trainer.config import DistributedConfig
from trainer.errors import TrainerError

__all__ = ["broadcast_from_primary", "global_batch", "initialize", "is_multiprocess", "is_primary",
           "resolve_process_id"]

log = logging.getLogger(__name__)


def resolve_process_id(cfg: DistributedConfig, environ: dict[str, str] | None = None) -> int:
    """Return this process's index: the config's, else JAX_PROCESS_ID or JOB_COMPLETION_INDEX (Kubernetes)."""
    if cfg.process_id >= 0:
        return cfg.process_id
    env = os.environ if environ is None else environ
    for name in ("JAX_PROCESS_ID", "JOB_COMPLETION_INDEX"):
        if env.get(name, "").isdigit():
            return int(env[name])
    raise TrainerError("trainer.distributed.process_id is not set: pass --trainer.distributed.process_id N or set "
                       "JAX_PROCESS_ID in each process's environment")


def initialize(cfg: DistributedConfig) -> None:
    """Join the other processes (blocks until all of them have joined); nothing to do for one process.

    Must run before anything else uses JAX (the first computation fixes the set of devices).
    """
    if cfg.num_processes <= 1:
        return
    process_id = resolve_process_id(cfg)
    if process_id >= cfg.num_processes:
        raise TrainerError(f"trainer.distributed.process_id = {process_id} must be below num_processes = "
                           f"{cfg.num_processes}")
    # CPU devices talk over gloo (TCP); this only concerns the CPU backend, GPUs use NCCL.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    log.info("joining %d processes as process %d (coordinator %s)", cfg.num_processes, process_id, cfg.coordinator)
    jax.distributed.initialize(coordinator_address=cfg.coordinator, num_processes=cfg.num_processes,
                               process_id=process_id, initialization_timeout=cfg.join_timeout_s,
                               heartbeat_timeout_seconds=cfg.heartbeat_timeout_s)
    log.info("process %d of %d: %d local of %d devices", jax.process_index(), jax.process_count(),
             jax.local_device_count(), jax.device_count())


def is_multiprocess() -> bool:
    return jax.process_count() > 1


def is_primary() -> bool:
    return jax.process_index() == 0


def global_batch(mesh: Mesh, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Return the global batch, split over the mesh's 'data' axis, from this process's share of it."""
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def broadcast_from_primary(tree: Any) -> Any:
    """Return process 0's value of `tree` (host arrays) in every process; `tree` gives the structure elsewhere."""
    if not is_multiprocess():
        return tree
    return multihost_utils.broadcast_one_to_all(tree, is_source=is_primary())
