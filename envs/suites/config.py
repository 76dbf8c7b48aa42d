"""Typed settings of the yardstick suites: Atari (ale-py) and DMC (dm_control). PixelCatch and the Gymnasium
adapter have no options, so they have no section here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval

__all__ = ["AtariConfig", "DmcConfig"]


@dataclass(frozen=True, kw_only=True)
class AtariConfig:
    repeat: Annotated[int, Interval(ge=1, le=16)] = 4
    """Action repeat (frames per agent step); the last two frames are max-pooled."""
    sticky: bool = True
    """Sticky actions (each frame keeps the previous action with probability 0.25), as in the Dreamer setup."""
    noops: Annotated[int, Interval(ge=0, le=100)] = 30
    """Up to this many no-op frames at the start of an episode (uniform in 0..noops, from the seeded RNG)."""
    gray: bool = False
    """Grayscale: the luminance replicated on all 3 channels of the image."""
    full_action_space: bool = False
    """All 18 joystick actions instead of the game's minimal set (same actions for every game)."""
    max_frames: Annotated[int, Interval(ge=0, le=10_000_000)] = 108_000
    """Truncate an episode after this many emulator frames (108,000 = 30 min of play; 0: never)."""


@dataclass(frozen=True, kw_only=True)
class DmcConfig:
    repeat: Annotated[int, Interval(ge=1, le=16)] = 2
    """Action repeat (physics steps per agent step)."""
    camera: Annotated[int, Interval(ge=0, le=10)] = 0
    """Camera id rendered for the image observation (DreamerV3 uses 2 for quadruped, 0 elsewhere)."""
