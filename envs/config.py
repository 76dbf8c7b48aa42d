"""Typed settings of the game layer: which env, its image size, and each family's own options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar

from annotated_types import Interval

from envs.chess.config import ChessConfig, MateConfig
from envs.screen.config import ClashConfig, ScreenConfig, XboardConfig
from envs.suites.config import AtariConfig, DmcConfig

__all__ = ["AtariConfig", "ChessConfig", "ClashConfig", "DmcConfig", "EnvConfig", "MateConfig", "ScreenConfig",
           "XboardConfig"]


@dataclass(frozen=True, kw_only=True)
class EnvConfig:
    id: str = "crafter"
    """Registered env id, 'family/task' for suites (e.g. atari/pong); `dreamstream envs` lists them."""
    image_size: Annotated[int, Interval(ge=16, le=512)] = 64
    """Side of the square `image` observation in pixels."""
    seed: int = 0
    """Seed of the first episode; episode k is reset with seed + k, so a resumed run continues the sequence."""
    max_episode_steps: Annotated[int, Interval(ge=0, le=10_000_000)] = 0
    """Truncate an episode after this many agent steps (0 keeps the env's own limit)."""
    chess: ChessConfig = field(default_factory=ChessConfig)
    """Options of the chess game (id chess)."""
    mate: MateConfig = field(default_factory=MateConfig)
    """Options of the mate-in-1 task (id chess-mate-in-1)."""
    atari: AtariConfig = field(default_factory=AtariConfig)
    """Options of atari/<game>."""
    dmc: DmcConfig = field(default_factory=DmcConfig)
    """Options of dmc/<domain>_<task>."""
    screen: ScreenConfig = field(default_factory=ScreenConfig)
    """Options of the screen envs (any X11 program)."""
    xboard: XboardConfig = field(default_factory=XboardConfig)
    """Options of xboard chess played through the screen (id xboard-chess)."""
    clash: ClashConfig = field(default_factory=ClashConfig)
    """Options of the Clash Royale adapter."""

    # Keys that define the observation and action spaces: a run dir resumes only with equal values.
    FIXED_ON_RESUME: ClassVar[tuple[str, ...]] = ("id", "image_size")
