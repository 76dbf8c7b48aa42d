"""Any registered Gymnasium env that renders `rgb_array` frames, played from those frames instead of its state."""

from __future__ import annotations

import difflib
import logging
import os
from typing import Any

import gymnasium as gym
import numpy as np

from envs.common import image_space, resize
from envs.errors import EnvError

# Configures a library rather than reading config: classic-control renders with pygame, which must not look
# for an X display (SDL otherwise complains on stderr without one). An explicit SDL_VIDEODRIVER wins.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

__all__ = ["GymPixels", "make_rgb_env"]

log = logging.getLogger(__name__)


def make_rgb_env(task: str) -> gym.Env:
    """Return `gymnasium.make(task, render_mode='rgb_array')`, or raise EnvError for an unknown or frameless id."""
    try:
        env = gym.make(task, render_mode="rgb_array")
    except gym.error.UnregisteredEnv as exc:
        close = difflib.get_close_matches(task, list(gym.registry), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else \
            "`python -c 'import gymnasium; gymnasium.pprint_registry()'` lists the ids"
        raise EnvError(f"unknown Gymnasium env {task!r} ({hint})") from exc
    except gym.error.DependencyNotInstalled as exc:
        raise EnvError(f"Gymnasium env {task!r} needs a package that is not installed: {exc}") from exc
    if "rgb_array" not in env.metadata.get("render_modes", []):
        env.close()
        raise EnvError(f"Gymnasium env {task!r} cannot render rgb_array frames, so it cannot be played from pixels")
    return env


class GymPixels(gym.Env):
    """A Gymnasium env played from its rendered frames (e.g. CartPole-v1, MountainCar-v0, Pendulum-v1).

    Observation: dict with `image` uint8[image_size, image_size, 3] in [0, 255]: the wrapped env's
        `rgb_array` frame area-resized as a whole to the square. Squashing the aspect ratio (CartPole's
        400x600 becomes 64x64) keeps every pixel row and column of the game, where letterboxing would spend
        a third of the image on padding; a CNN does not mind the stretch.
    Actions: the wrapped env's action space, unchanged (Discrete or Box).
    Reward: the wrapped env's reward.
    Episode end: the wrapped env's termination and truncation (its registered time limit, e.g. 500 steps for
        CartPole-v1), passed through.
    Render: the wrapped env's native frame of the last observation.
    Args: task (a registered Gymnasium id that renders rgb_array; default CartPole-v1), image_size.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, task: str = "CartPole-v1", image_size: int = 64,
                 render_mode: str | None = "rgb_array") -> None:
        self.task, self.image_size = task, image_size
        self.render_mode = render_mode
        self._env = make_rgb_env(task)
        self.action_space = self._env.action_space
        self.observation_space = gym.spaces.Dict({"image": image_space(image_size)})
        self._frame: np.ndarray | None = None
        log.debug("gym %s: action space %s", task, self.action_space)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        _, info = self._env.reset(seed=seed, options=options)
        return self._obs(), info

    def step(self, action):
        _, reward, terminated, truncated, info = self._env.step(action)
        return self._obs(), float(reward), bool(terminated), bool(truncated), info

    def _obs(self) -> dict[str, np.ndarray]:
        self._frame = self._env.render()
        return {"image": resize(self._frame, self.image_size)}

    def render(self) -> np.ndarray | None:
        return None if self._frame is None else self._frame.copy()

    def close(self) -> None:
        self._env.close()
