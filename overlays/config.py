"""Typed settings of the broadcast frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval

__all__ = ["OverlayConfig"]


@dataclass(frozen=True, kw_only=True)
class OverlayConfig:
    native_render: bool = True
    """Show the env's own render (e.g. a 512x512 chess board, Atari's 210x160 screen) instead of the
    agent's small observation, when the env has one."""
    dream_interval_s: Annotated[float, Interval(ge=1, le=3600)] = 5.0
    """Seconds between refreshes of the dream vs reality strips."""
    dream_frames: Annotated[int, Interval(ge=7, le=64)] = 12
    """Real frames in the reality strip; the first 5 are the model's context, the rest it predicts."""
    imagine_horizon: Annotated[int, Interval(ge=1, le=64)] = 12
    """Steps of the imagined-future strip."""
    curve_points: Annotated[int, Interval(ge=10, le=100_000)] = 2000
    """Most points per learning curve: the whole run is kept, neighbouring points merged (averaged) when full."""
