"""Games behind one Gymnasium env API, found by id: `envs.make(id, **kwargs)` or `envs.make_from_config(cfg)`.

Observations are dicts with an `image` uint8[H, W, 3], an optional `action_mask` (bool, one entry per
discrete action) and `log_*` entries the agent does not see. Heavy game dependencies are imported
inside the env that needs them, so importing this package is cheap.
"""

from __future__ import annotations

import gymnasium as gym

from envs.common import EpisodeStats
from envs.config import EnvConfig
from envs.errors import EnvError
from envs.registry import EnvSpec, make, options_of, parse_id, register, spec, specs

__all__ = ["EnvConfig", "EnvError", "EnvSpec", "EpisodeStats", "make", "make_from_config", "register", "spec",
           "specs"]


def make_from_config(cfg: EnvConfig) -> gym.Env:
    """Return the configured env, wrapped to report every episode (and truncate at max_episode_steps)."""
    found, _ = parse_id(cfg.id)
    env = make(cfg.id, image_size=cfg.image_size, **options_of(found, cfg))
    return EpisodeStats(env, cfg.max_episode_steps)


register("crafter", "envs.crafter_env:CrafterEnv",
         "Crafter survival world, 17 actions, scored by 22 achievements")

# Each family package registers its ids on import; they import only the registry, never a game.
from envs import chess, screen, suites  # noqa: E402, F401
