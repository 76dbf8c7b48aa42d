"""Pieces every env shares: the image space, resizing, and the wrapper that reports each episode."""

from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np

__all__ = ["EpisodeStats", "image_space", "mask_space", "resize"]


def image_space(size: int) -> gym.spaces.Box:
    """Return the Box of an `image` observation: uint8[size, size, 3] in [0, 255]."""
    return gym.spaces.Box(0, 255, (size, size, 3), np.uint8)


def mask_space(n: int) -> gym.spaces.Box:
    """Return the Box of an `action_mask` observation: bool[n], True where the action is legal."""
    return gym.spaces.Box(0, 1, (n,), bool)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Return `image` (uint8[H, W, 3]) as uint8[size, size, 3]: area-averaged when shrinking, crisp when growing."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interp = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_NEAREST
    return cv2.resize(image, (size, size), interpolation=interp)


class EpisodeStats(gym.Wrapper):
    """Counts length and return, truncates after `max_episode_steps` (0: never), and at an episode's last
    step puts `info['episode'] = {length, return, **extras}`.

    Extras are what the env put in `info['episode']` itself, or else what its `episode_info()` returns
    (envs that report results, PGNs or achievements implement it, so a truncation here loses nothing).
    """

    def __init__(self, env: gym.Env, max_episode_steps: int = 0) -> None:
        super().__init__(env)
        self.max_episode_steps = max_episode_steps
        self._length, self._return = 0, 0.0

    def reset(self, **kwargs: Any):
        self._length, self._return = 0, 0.0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._length += 1
        self._return += float(reward)
        if self.max_episode_steps and self._length >= self.max_episode_steps and not terminated:
            truncated = True
        if terminated or truncated:
            extras = info.get("episode")
            if extras is None:
                hook = getattr(self.env.unwrapped, "episode_info", None)
                extras = hook() if hook is not None else {}
            info = {**info, "episode": {**extras, "length": self._length, "return": self._return}}
        return obs, reward, terminated, truncated, info
