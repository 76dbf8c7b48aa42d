"""The random agent: uniform random legal actions. A baseline for evaluations (`trainer.agent: random`);
it has the same acting interface as DreamerV3: `initial_state()` and `policy(obs, state, is_first)`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["RandomAgent"]


class RandomAgent:
    """Picks uniformly among the legal actions (those with `action_mask` True when the obs has one)."""


    def __init__(self, action_space: gym.Space, seed: int = 0) -> None:
        self.action_space = action_space
        self._rng = np.random.default_rng(seed)

    def initial_state(self) -> None:
        return None

    def policy(self, obs: dict[str, np.ndarray], state: Any, is_first: bool = False) -> tuple[Any, Any]:
        """Return (action, state) for one observation."""
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            mask = obs.get("action_mask")
            if mask is not None:
                legal = np.flatnonzero(mask)
                action = int(self._rng.choice(legal)) if legal.size else 0
            else:
                action = int(self._rng.integers(space.n))
            return space.start + action, state
        if isinstance(space, gym.spaces.Box):
            return self._rng.uniform(space.low, space.high).astype(space.dtype), state
        raise TypeError(f"RandomAgent cannot act in {space}")
