"""`ScreenEnv`: any program on an X display played through screen grabs and synthetic input, with an action
table and reward / episode-end detectors given as config text. xboard chess and Clash Royale have their own
envs built from the same parts (`Screen`, `Pacer`, detectors)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from envs.common import image_space, resize
from envs.errors import EnvError
from envs.screen.capture import Region
from envs.screen.config import ScreenConfig
from envs.screen.detectors import Trigger, build_trigger
from envs.screen.display import Screen
from envs.screen.pacing import Pacer
from envs.screen.processes import ChildProcess
from envs.screen.specs import ActionSpec, parse_action, parse_trigger

__all__ = ["ScreenEnv", "make_config"]

log = logging.getLogger(__name__)


def make_config(cls: type, options: dict[str, Any]):
    """Return `cls(**options)`; a value the config rejects becomes an EnvError (unknown keys stay TypeErrors)."""
    try:
        return cls(**options)
    except ValueError as exc:
        raise EnvError(str(exc)) from None


def _check_inside(key: str, x: int, y: int, region: Region) -> None:
    if not (x < region.width and y < region.height):
        raise EnvError(f"{key}: ({x}, {y}) lies outside the {region.width}x{region.height} region; "
                       "coordinates are relative to screen.region")


class ScreenEnv(gym.Env):
    """Any program on an X11 display, seen as pixels and driven with clicks and key presses.

    Observation: dict with `image` uint8[image_size, image_size, 3] in [0, 255]: the configured region of the
        screen, grabbed on demand after each step and area-resized (aspect ratio not kept).
    Actions: Discrete(len(actions)), one per entry of the action table: 'noop', 'click:X,Y' (left click),
        'move:X,Y' (pointer only) with X, Y relative to the region, or 'key:NAME' / 'key:ctrl+NAME' (pressed
        together, released in reverse; keys go to the window under the pointer). `action_names` holds the texts.
    Reward: the sum of the rewards of the `reward_when` detectors that started to match on this step (each
        pays once per rising edge), plus the reward of the `end_when` detector that ended the episode.
    Episode end: terminated when an `end_when` detector matches; never truncated here (the run's
        max_episode_steps truncates). Each step waits for its slot at `decision_hz`, grabbing after the wait.
    Episode info: ended_by (the text of the end detector that fired, or None).
    Args: image_size, then exactly the fields of `ScreenConfig` (display, screen_size, region, decision_hz,
        actions, reset_actions, end_when, reward_when, command); Python callers may add `triggers`, a
        sequence of `Trigger` objects (e.g. a TemplateMatch on an array), evaluated after the configured ones.
        A '' display starts a private Xvfb of `screen_size`; `command` starts the game on the display.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, image_size: int = 64, *, triggers: Sequence[Trigger] = (), **options: Any) -> None:
        cfg: ScreenConfig = make_config(ScreenConfig, options)
        self.cfg, self.image_size, self.render_mode = cfg, image_size, "rgb_array"
        self.screen = Screen(cfg.display, cfg.screen_size)
        try:
            self.region = Region(*cfg.region) if cfg.region[2] else self.screen.region
            self.screen.check_region(self.region, "screen.region")
            self.actions = self._parse_actions("screen.actions", cfg.actions)
            self.reset_actions = self._parse_actions("screen.reset_actions", cfg.reset_actions)
            self.triggers = [*self._build_triggers("screen.end_when", cfg.end_when, True),
                             *self._build_triggers("screen.reward_when", cfg.reward_when, False), *triggers]
            self.program: ChildProcess | None = (
                self.screen.start(cfg.command, name=cfg.command[0]) if cfg.command else None)
        except EnvError:
            self.screen.close()
            raise
        self.pacer = Pacer(cfg.decision_hz)
        self.action_names = tuple(a.text for a in self.actions)
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self.observation_space = gym.spaces.Dict({"image": image_space(image_size)})
        self._frame: np.ndarray | None = None
        self._matching = [False] * len(self.triggers)
        self._ended_by: str | None = None

    def _parse_actions(self, key: str, texts: Sequence[str]) -> list[ActionSpec]:
        actions = [parse_action(t) for t in texts]  # the config has checked the syntax
        for i, action in enumerate(actions):
            if action.kind in ("click", "move"):
                _check_inside(f"{key}[{i}] = {action.text!r}", action.x, action.y, self.region)
            for name in action.keys:
                self.screen.keycode(name)
        return actions

    def _build_triggers(self, key: str, texts: Sequence[str], ends_episode: bool) -> list[Trigger]:
        specs = [parse_trigger(t) for t in texts]
        for i, spec in enumerate(specs):
            if spec.kind == "pixel":
                _check_inside(f"{key}[{i}] = {spec.text!r}", spec.x, spec.y, self.region)
        return [build_trigger(spec, ends_episode) for spec in specs]

    # -- input and observation ----------------------------------------------------------------------------

    def _send(self, action: ActionSpec) -> None:
        x, y = self.region.x + action.x, self.region.y + action.y
        if action.kind == "click":
            self.screen.click(x, y)
        elif action.kind == "move":
            self.screen.move(x, y)
        elif action.kind == "key":
            self.screen.press(action.keys)

    def _grab(self) -> np.ndarray:
        if self.program is not None and (code := self.program.exit_code()) is not None:
            raise EnvError(f"the program {self.cfg.command[0]!r} on display {self.screen.name} exited with code "
                           f"{code} (its output: {self.program.log_tail() or 'none'}); check screen.command")
        self._frame = self.screen.grab(self.region)
        return self._frame

    def _obs(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": resize(frame, self.image_size).copy()}

    def _detect(self, frame: np.ndarray) -> tuple[float, bool]:
        """Return the reward of the triggers that start matching in `frame`, and whether one ends the episode.

        Every trigger fires when it starts matching, end triggers too: a game-over screen still showing right
        after the reset (its actions not taken yet by the program) must not end each new episode at once."""
        reward, terminated = 0.0, False
        for i, trigger in enumerate(self.triggers):
            matching = bool(trigger.detector(frame))
            starts = matching and not self._matching[i]
            if starts and trigger.ends_episode and not terminated:
                reward += trigger.reward
                terminated, self._ended_by = True, trigger.name
            elif starts and not trigger.ends_episode:
                reward += trigger.reward
            self._matching[i] = matching
        return reward, terminated

    # -- Gymnasium API ------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        for action in self.reset_actions:
            self._send(action)
        self.pacer.restart()
        self.pacer.wait()
        frame = self._grab()
        self._matching = [bool(t.detector(frame)) for t in self.triggers]
        self._ended_by = None
        return self._obs(frame), {}

    def step(self, action):
        self._send(self.actions[int(action)])
        self.pacer.wait()
        frame = self._grab()
        reward, terminated = self._detect(frame)
        info = {"episode": self.episode_info()} if terminated else {}
        return self._obs(frame), float(reward), terminated, False, info

    def episode_info(self) -> dict[str, Any]:
        """Return what the match history keeps of the episode: which end detector fired (None so far)."""
        return {"ended_by": self._ended_by}

    def render(self) -> np.ndarray | None:
        """Return the region at its native resolution, as last grabbed."""
        return None if self._frame is None else self._frame.copy()

    def close(self) -> None:
        self.screen.close()
