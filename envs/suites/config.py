"""Typed settings of the yardstick suites: Atari (ale-py), DMC (dm_control), PixelCatch, any Gymnasium env."""

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
    """Sticky actions (repeat the previous action with probability 0.25), as in the Dreamer setup."""
    noops: Annotated[int, Interval(ge=0, le=100)] = 30
    """Up to this many no-op actions at the start of an episode."""


@dataclass(frozen=True, kw_only=True)
class DmcConfig:
    repeat: Annotated[int, Interval(ge=1, le=16)] = 2
    """Action repeat (physics steps per agent step)."""
    camera: Annotated[int, Interval(ge=0, le=10)] = 0
    """Camera id rendered for the image observation."""
