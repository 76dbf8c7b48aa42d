"""Yardstick suites (Atari, DMC, PixelCatch, any Gymnasium env); registration only here (light), the env classes
live in submodules that import their emulator or simulator when an env is made."""

from __future__ import annotations

from envs.registry import register

register("atari", "envs.suites.atari:AtariEnv",
         "Atari 2600 games via ale-py, Dreamer preprocessing (sticky actions, repeat 4 max-pooled, no-op starts)",
         default_task="pong", options="atari")
register("dmc", "envs.suites.dmc:DmcEnv",
         "DeepMind Control Suite from pixels (lite render), continuous actions, action repeat 2",
         default_task="cartpole_balance", options="dmc")
register("catch", "envs.suites.catch:PixelCatch",
         "PixelCatch: bsuite Catch drawn as pixels, 3 actions, 9-step episodes ending in +1 or -1")
register("gym", "envs.suites.gym_adapter:GymPixels",
         "Any Gymnasium env that renders rgb_array, played from its frames (CartPole-v1, MountainCar-v0, ...)",
         default_task="CartPole-v1")
