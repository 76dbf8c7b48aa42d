"""PixelCatch: bsuite's Catch in numpy, drawn as pixels; the quickest check that an agent learns from images."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import gymnasium as gym
import numpy as np

from envs.common import image_space

__all__ = ["BACKGROUND", "BALL", "COLUMNS", "PADDLE", "ROWS", "PixelCatch", "cell_bounds"]

log = logging.getLogger(__name__)

ROWS, COLUMNS = 10, 5
BACKGROUND = (16, 16, 32)
BALL = (255, 96, 32)
PADDLE = (64, 208, 255)
MOVES = (-1, 0, 1)
"""Paddle column change of each action: left, stay, right."""


def cell_bounds(cells: int, size: int) -> list[tuple[int, int]]:
    """Return the [start, stop) pixel range of each of `cells` equal cells across `size` pixels."""
    return list(itertools.pairwise(i * size // cells for i in range(cells + 1)))


class PixelCatch(gym.Env):
    """Catch (bsuite, Osband et al. 2020) from pixels: move the paddle under the falling ball.

    Board: 10 rows x 5 columns. The ball starts in the top row, in a column drawn from the seeded RNG, and
        falls one row per step; the paddle starts in the middle of the bottom row.
    Observation: dict with `image` uint8[image_size, image_size, 3] in [0, 255]: the board stretched over
        the square (cells of unequal size when image_size is not a multiple of 10 and 5), the ball
        (255, 96, 32) and the paddle (64, 208, 255) on a dark (16, 16, 32) background. When the ball lands
        on the paddle, the ball is drawn on top.
    Actions: Discrete(3): left, stay, right (moves into a wall stay put).
    Reward: +1 when the ball reaches the bottom row in the paddle's column, -1 when it misses, 0 before.
    Episode end: terminated after exactly 9 steps, when the ball reaches the bottom row; never truncated.
        A random policy catches about 1 ball in 5 (mean return about -0.6).
    Args: image_size (default 64).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, image_size: int = 64, render_mode: str | None = "rgb_array") -> None:
        self.image_size = image_size
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Dict({"image": image_space(image_size)})
        self.action_space = gym.spaces.Discrete(len(MOVES))
        self.action_names = ("left", "stay", "right")
        self._rows, self._columns = cell_bounds(ROWS, image_size), cell_bounds(COLUMNS, image_size)
        self._background = np.empty((image_size, image_size, 3), np.uint8)
        self._background[:] = BACKGROUND
        self._ball_row, self._ball_column, self._paddle_column = 0, 0, COLUMNS // 2
        self._image = self._draw()
        log.debug("catch: %dx%d board drawn at %dx%d", ROWS, COLUMNS, image_size, image_size)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._ball_row, self._ball_column = 0, int(self.np_random.integers(COLUMNS))
        self._paddle_column = COLUMNS // 2
        self._image = self._draw()
        return {"image": self._image}, {}

    def step(self, action):
        self._paddle_column = min(max(self._paddle_column + MOVES[int(action)], 0), COLUMNS - 1)
        self._ball_row += 1
        terminated = self._ball_row == ROWS - 1
        reward = (1.0 if self.is_caught() else -1.0) if terminated else 0.0
        self._image = self._draw()
        return {"image": self._image}, reward, terminated, False, {}

    def is_caught(self) -> bool:
        """Return whether the ball lies on the paddle (only possible at the episode's end)."""
        return self._ball_row == ROWS - 1 and self._ball_column == self._paddle_column

    def _draw(self) -> np.ndarray:
        image = self._background.copy()
        self._fill(image, ROWS - 1, self._paddle_column, PADDLE)
        self._fill(image, self._ball_row, self._ball_column, BALL)
        return image

    def _fill(self, image: np.ndarray, row: int, column: int, colour: tuple[int, int, int]) -> None:
        (top, bottom), (left, right) = self._rows[row], self._columns[column]
        image[top:bottom, left:right] = colour

    def episode_info(self) -> dict[str, Any]:
        """Return what the match history keeps of the current episode: whether the ball was caught."""
        return {"caught": self.is_caught()}

    def render(self) -> np.ndarray | None:
        return self._image.copy()
