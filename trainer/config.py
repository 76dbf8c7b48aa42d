"""Typed settings of the learner. DreamerV3's network and loss settings join here with the trainer issue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from annotated_types import Interval

__all__ = ["TrainerConfig"]


@dataclass(frozen=True, kw_only=True)
class TrainerConfig:
    agent: Literal["random"] = "random"
    """Which agent acts. PLACEHOLDER: only the uniform random agent exists until DreamerV3 lands (issue 4)."""
    batch_size: Annotated[int, Interval(ge=1, le=4096)] = 16
    """Replayed sequences per update (B); read by the learner, which lands with issue 4."""
    batch_length: Annotated[int, Interval(ge=2, le=4096)] = 64
    """Steps per replayed sequence (T); read by the learner, which lands with issue 4."""
    seed: int = 0
    """Seed of parameter initialisation and of the agent's action sampling."""

    FIXED_ON_RESUME: ClassVar[tuple[str, ...]] = ("agent",)
