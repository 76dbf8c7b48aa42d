"""DreamerV3 (Hafner et al. 2023/2025) as pure JAX functions: networks, losses, one jitted train step,
replay, checkpoints, and the learner loop; plus a random agent as a baseline.

Nothing here touches the stream, the dashboard or the database; values cross out as plain data. Heavy
modules (jax, flax, orbax) are imported by `trainer.agent` and friends, not by this package.
"""

from trainer.config import TrainerConfig
from trainer.errors import TrainerError
from trainer.random_agent import RandomAgent

__all__ = ["RandomAgent", "TrainerConfig", "TrainerError"]
