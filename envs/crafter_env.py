"""Crafter (Hafner 2021) behind the Gymnasium API with a dict observation."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from envs.common import image_space

__all__ = ["ACHIEVEMENTS", "CrafterEnv"]

ACHIEVEMENTS = (
    "collect_coal", "collect_diamond", "collect_drink", "collect_iron", "collect_sapling", "collect_stone",
    "collect_wood", "defeat_skeleton", "defeat_zombie", "eat_cow", "eat_plant", "make_iron_pickaxe",
    "make_iron_sword", "make_stone_pickaxe", "make_stone_sword", "make_wood_pickaxe", "make_wood_sword",
    "place_furnace", "place_plant", "place_stone", "place_table", "wake_up",
)


@functools.cache
def _seeded_crafter() -> type:
    """crafter.Env whose episodes follow the seed alone. Crafter keeps each chunk's objects in a set, iterated in
    memory-address order, and despawns `creatures[random.randint(...)]` from it: the same seed and actions gave
    other episodes in another process or env instance (a zombie or cow removed elsewhere, ~100-200 steps in).
    Here the chunk's objects come sorted by position (one object per cell)."""
    import crafter  # heavy: imported only when Crafter is played

    class SeededCrafter(crafter.Env):
        def _balance_chunk(self, chunk, objs):
            super()._balance_chunk(chunk, sorted(objs, key=lambda obj: (int(obj.pos[0]), int(obj.pos[1]))))

    return SeededCrafter


class CrafterEnv(gym.Env):
    """Crafter, the open-world survival benchmark scored by 22 achievements.

    Observation: dict with `image` uint8[size, size, 3] in [0, 255] (the agent's local view) and, for
        metrics only, `log_achievement_<name>` int32 counts of each achievement so far this episode.
    Actions: Discrete(17) (noop, move ×4, do, sleep, place ×4, make ×6).
    Reward: +1 per achievement unlocked for the first time in the episode, ±0.1 per health point
        gained or lost.
    Episode end: terminated when the player dies; truncated after `length` steps (default 10,000).
    Info at the episode's last step: `episode` = {achievements: [names unlocked this episode]}; the same
        comes from `episode_info()` at any time (used when a wrapper truncates the episode).
    Args: image_size (default 64), length (step limit), seed (world of the first reset; `reset(seed=s)`
        restarts the world sequence from s, so the same seed gives the same world).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, image_size: int = 64, length: int = 10_000, seed: int = 0,
                 render_mode: str | None = "rgb_array") -> None:
        self._env = _seeded_crafter()(size=(image_size, image_size), length=length, seed=seed)
        self.render_mode = render_mode
        counts = gym.spaces.Box(0, np.iinfo(np.int32).max, (), np.int32)
        self.observation_space = gym.spaces.Dict(
            {"image": image_space(image_size), **{f"log_achievement_{a}": counts for a in ACHIEVEMENTS}})
        self.action_space = gym.spaces.Discrete(self._env.action_space.n)
        self.action_names = tuple(self._env.action_names)
        self._image: np.ndarray | None = None
        self._achievements: dict[str, int] = {}

    def _obs(self, image: np.ndarray, achievements: dict[str, int]) -> dict[str, Any]:
        self._image, self._achievements = image, achievements
        return {"image": image,
                **{f"log_achievement_{a}": np.array(achievements.get(a, 0), np.int32) for a in ACHIEVEMENTS}}

    def episode_info(self) -> dict[str, Any]:
        """Return what the match history keeps of the current episode: the achievements unlocked so far."""
        return {"achievements": sorted(k for k, v in self._achievements.items() if v > 0)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env._seed = int(seed)  # crafter seeds each world from (seed, episode number)
            self._env._episode = 0
        return self._obs(self._env.reset(), {}), {}

    def step(self, action):
        image, reward, done, info = self._env.step(int(action))
        terminated = bool(done and info["discount"] == 0)
        truncated = bool(done and not terminated)
        obs = self._obs(image, info["achievements"])
        return obs, float(reward), terminated, truncated, {"episode": self.episode_info()} if done else {}

    def render(self) -> np.ndarray | None:
        return None if self._image is None else self._image.copy()

    def close(self) -> None:
        self._image = None
