"""DreamerV3 as pure JAX functions (issue 4). Until then the app plays the PLACEHOLDER `RandomAgent`.

Nothing here touches the stream, the dashboard or the database; values cross out as plain data.
"""

from trainer.config import TrainerConfig
from trainer.errors import TrainerError
from trainer.random_agent import RandomAgent

__all__ = ["RandomAgent", "TrainerConfig", "TrainerError"]
