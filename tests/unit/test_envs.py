"""Env registry and the Gymnasium contract of every registered env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import EnvError


def test_unknown_id_lists_the_registered_ones() -> None:
    with pytest.raises(EnvError, match="unknown env id 'chez'; registered: .*crafter"):
        envs.make("chez")


def test_ids_are_unique() -> None:
    with pytest.raises(EnvError, match="env id 'crafter' is registered twice"):
        envs.register("crafter", "envs.crafter_env:CrafterEnv", "again")


def test_bad_kwargs_are_an_env_error() -> None:
    with pytest.raises(EnvError, match="env 'crafter'"):
        envs.make("crafter", colour="blue")


@pytest.mark.parametrize("env_id", [s.id for s in envs.specs() if not s.needs_display])
def test_registered_env_passes_the_gymnasium_checker(env_id) -> None:
    """Envs that drive an X display are checked the same way under Xvfb in tests/integration."""
    env = envs.make(env_id)
    try:
        check_env(env, skip_render_check=True)
        obs, _ = env.reset(seed=3)
        assert isinstance(env.observation_space, gym.spaces.Dict)
        image = obs["image"]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        again, _ = env.reset(seed=3)
        assert np.array_equal(again["image"], image), "same seed must give the same first observation"
    finally:
        env.close()


def test_crafter_reports_the_episode_at_its_end() -> None:
    env = envs.make_from_config(envs.EnvConfig(id="crafter", image_size=32, max_episode_steps=20))
    env.reset(seed=0)
    total, info = 0.0, {}
    for _ in range(20):
        _, reward, terminated, truncated, info = env.step(0)
        total += reward
        if terminated or truncated:
            break
    assert truncated and not terminated
    assert info["episode"]["length"] == 20 and info["episode"]["return"] == pytest.approx(total)
    assert isinstance(info["episode"]["achievements"], list)
    env.close()
