"""Typed settings of the screen envs: any game on an X display, and the Clash Royale adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval

__all__ = ["ClashConfig", "ScreenConfig"]


@dataclass(frozen=True, kw_only=True)
class ScreenConfig:
    display: str = ""
    """X display to play on (e.g. ':99'); '' starts a private Xvfb."""
    decision_hz: Annotated[float, Interval(gt=0, le=120)] = 4.0
    """Agent decisions per second; each step waits for its slot."""


@dataclass(frozen=True, kw_only=True)
class ClashConfig:
    region: tuple[int, int, int, int] = (0, 0, 368, 652)
    """Emulator window region on the display: x, y, width, height in pixels."""
    grid: tuple[int, int] = (3, 3)
    """Placement grid (columns, rows) over the own half of the arena."""
