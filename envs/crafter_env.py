"""Crafter (Hafner 2021) behind the Gymnasium API with a dict observation."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["CrafterEnv"]


class CrafterEnv(gym.Env):
    """Crafter, the open-world survival benchmark scored by 22 achievements.

    Observation: dict with `image` uint8[size, size, 3] in [0, 255], the agent's local 9x9 view.
    Actions: Discrete(17) (noop, move ×4, do, sleep, place ×4, make ×6).
    Reward: +1 per achievement unlocked for the first time in the episode, ±0.1 per health point
        gained or lost.
    Episode end: terminated when the player dies; truncated after `length` steps (default 10,000).
    Info at the episode's last step: `episode` = {length, return, achievements: [names unlocked]}.
    Args: image_size (default 64), length (step limit), seed (first world; later episodes derive
        theirs from it, and `reset(seed=...)` restarts that sequence).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, image_size: int = 64, length: int = 10_000, seed: int = 0,
                 render_mode: str | None = "rgb_array") -> None:
        import crafter  # heavy: imported only when Crafter is played

        self._env = crafter.Env(size=(image_size, image_size), length=length, seed=seed)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Dict(
            {"image": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)})
        self.action_space = gym.spaces.Discrete(self._env.action_space.n)
        self.action_names = tuple(self._env.action_names)
        self._image: np.ndarray | None = None
        self._return = 0.0
        self._length = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env._seed = int(seed)  # crafter seeds each world from (seed, episode number)
            self._env._episode = 0
        self._image = self._env.reset()
        self._return, self._length = 0.0, 0
        return {"image": self._image}, {}

    def step(self, action):
        image, reward, done, info = self._env.step(int(action))
        self._image = image
        self._return += float(reward)
        self._length += 1
        terminated = bool(done and info["discount"] == 0)
        truncated = bool(done and not terminated)
        out = {"achievements": {k: int(v) for k, v in info["achievements"].items()}}
        if done:
            out["episode"] = {
                "length": self._length,
                "return": self._return,
                "achievements": sorted(k for k, v in info["achievements"].items() if v > 0),
            }
        return {"image": image}, float(reward), terminated, truncated, out

    def render(self) -> np.ndarray | None:
        return None if self._image is None else self._image.copy()

    def close(self) -> None:
        self._image = None
