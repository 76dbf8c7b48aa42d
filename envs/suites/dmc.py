"""DeepMind Control Suite tasks from pixels, rendered with the cheap "lite" settings (no shadow map, no MSAA,
no reflections) that make MuJoCo's software rendering affordable on a CPU."""

from __future__ import annotations

import difflib
import logging
import os
from typing import Any

import gymnasium as gym
import numpy as np

from envs.common import image_space
from envs.errors import EnvError

# Configures a library rather than reading config: dm_control picks its GL backend at import, and EGL
# (llvmpipe when there is no GPU) renders headless. An explicit MUJOCO_GL from the operator wins.
os.environ.setdefault("MUJOCO_GL", "egl")

__all__ = ["DmcEnv", "end_flags", "repeat_step", "scale_action", "split_task", "task_names", "use_lite_render"]

log = logging.getLogger(__name__)

SHADOW_SIZE = 256
"""Shadow map side; the default 4096² map costs most of a default render on llvmpipe."""


def task_names() -> dict[str, tuple[str, str]]:
    """Return {'domain_task': (domain, task)} for every suite task (cartpole_swingup, ball_in_cup_catch, ...)."""
    from dm_control import suite

    return {f"{domain}_{task}": (domain, task) for domain, task in suite.ALL_TASKS}


def split_task(name: str) -> tuple[str, str]:
    """Return (domain, task) of a name like 'ball_in_cup_catch', or raise EnvError naming the valid ones."""
    names = task_names()
    if name in names:
        return names[name]
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else f"valid tasks: {', '.join(names)}"
    raise EnvError(f"unknown DMC task {name!r} ({hint})")


def repeat_step(env: Any, action: np.ndarray, repeat: int) -> tuple[float, Any]:
    """Return (reward summed over up to `repeat` physics steps, last time step); stops early at the episode end."""
    reward = 0.0
    for _ in range(repeat):
        time_step = env.step(action)
        reward += time_step.reward or 0.0
        if time_step.last():
            break
    return reward, time_step


def end_flags(time_step: Any) -> tuple[bool, bool]:
    """Return (terminated, truncated) of a dm_env time step: a last step with discount 0 is a true end."""
    terminated = bool(time_step.last() and time_step.discount == 0)
    return terminated, bool(time_step.last() and not terminated)


def scale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Return `action` (clipped to [-1, 1]) mapped linearly onto [low, high], as float64 for MuJoCo."""
    unit = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
    return low + (unit + 1.0) * 0.5 * (high - low)


def use_lite_render(physics: Any, image_size: int) -> None:
    """Set the model's offscreen options to the lite settings (envs.md §3.1) for image_size² frames."""
    physics.model.vis.quality.shadowsize = SHADOW_SIZE
    physics.model.vis.quality.offsamples = 0  # no MSAA
    physics.model.vis.global_.offwidth = image_size
    physics.model.vis.global_.offheight = image_size


def _lite_scene(physics: Any, scene: Any) -> None:
    from dm_control.mujoco.wrapper.mjbindings import enums

    scene.flags[enums.mjtRndFlag.mjRND_SHADOW] = 0
    scene.flags[enums.mjtRndFlag.mjRND_REFLECTION] = 0


class DmcEnv(gym.Env):
    """A DeepMind Control Suite task from pixels (DreamerV3's DMC-vision setting).

    Observation: dict with `image` uint8[image_size, image_size, 3] in [0, 255], rendered from camera
        `camera` with the lite settings: shadow map 256², no MSAA, no shadows or reflections. Without MSAA,
        thin geometry can vanish at small sizes: cartpole's cart rail is invisible at 64x64 (the cart and
        pole are not).
    Actions: Box(-1, 1, (n,), float32), mapped linearly onto the task's actuator range (not [-1, 1]
        everywhere: quadruped's hips span [-1, 1.1] and its knees [-0.8, 0.8]).
    Reward: the task reward summed over the `repeat` physics steps; standard tasks give [0, 1] per physics
        step, so [0, repeat] per agent step.
    Episode end: truncated at the task's time limit (1000 physics steps for most tasks: 500 agent steps at
        repeat 2); terminated only when a task ends the episode itself (its discount is 0).
    Reset: a seed reseeds the task's random state, exactly as `suite.load(task_kwargs={'random': seed})`
        would, without rebuilding the physics and its GL context (lqr's random model is drawn once, seed 0).
    Render: the last observation's image.
    Args: task ('domain_task', e.g. cartpole_swingup, walker_walk, ball_in_cup_catch; default
        cartpole_balance), image_size, and the fields of `DmcConfig`: repeat, camera.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, task: str = "cartpole_balance", image_size: int = 64, *, repeat: int = 2, camera: int = 0,
                 render_mode: str | None = "rgb_array") -> None:
        from dm_control import suite  # heavy: imported only when DMC is played

        domain, task_name = split_task(task)
        self.image_size, self.repeat, self.camera = image_size, repeat, camera
        self.render_mode = render_mode
        self.suite_env = suite.load(domain, task_name, task_kwargs={"random": 0})  # public for tests and tools
        use_lite_render(self.suite_env.physics, image_size)
        spec = self.suite_env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32)
        self.observation_space = gym.spaces.Dict({"image": image_space(image_size)})
        self._image = np.zeros((image_size, image_size, 3), np.uint8)
        self._is_seeded = False
        log.debug("dmc %s/%s: action %s, camera %d", domain, task_name, spec.shape, camera)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._is_seeded:
            # Unseeded first reset: the entropy-seeded np_random picks the task seed, as Gymnasium expects.
            task_seed = seed if seed is not None else int(self.np_random.integers(2**31))
            # What suite.load(task_kwargs={'random': s}) stores; dm_control has no public setter.
            self.suite_env.task._random = np.random.RandomState(task_seed)
            self._is_seeded = True
        self.suite_env.reset()
        return self._obs(), {}

    def step(self, action):
        scaled = scale_action(action, self._low, self._high)
        reward, time_step = repeat_step(self.suite_env, scaled, self.repeat)
        terminated, truncated = end_flags(time_step)
        return self._obs(), float(reward), terminated, truncated, {}

    def _obs(self) -> dict[str, np.ndarray]:
        self._image = self.suite_env.physics.render(self.image_size, self.image_size, camera_id=self.camera,
                                                    scene_callback=_lite_scene)
        return {"image": self._image}

    def render(self) -> np.ndarray | None:
        return self._image.copy()

    def close(self) -> None:
        if self.suite_env is not None:
            self.suite_env.physics.free()
            self.suite_env = None
