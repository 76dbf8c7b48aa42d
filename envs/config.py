"""Typed settings for the game layer; the env registry and the envs themselves live beside it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from annotated_types import Interval

__all__ = ["EnvConfig"]


@dataclass(frozen=True, kw_only=True)
class EnvConfig:
    id: str = "crafter"
    """Registered env id (`dreamstream envs` lists them)."""
    image_size: Annotated[int, Interval(ge=16, le=512)] = 64
    """Side of the square `image` observation in pixels."""
    seed: int = 0
    """Seed of the first episode; later episodes continue the env's own random stream."""
    max_episode_steps: Annotated[int, Interval(ge=0, le=10_000_000)] = 0
    """Truncate an episode after this many agent steps (0 keeps the env's own limit)."""

    # Keys that define the observation and action spaces: a run dir resumes only with equal values.
    FIXED_ON_RESUME: ClassVar[tuple[str, ...]] = ("id", "image_size")
