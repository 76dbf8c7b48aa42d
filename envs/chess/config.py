"""Typed settings of the chess envs (light: imports nothing heavy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from annotated_types import Interval

__all__ = ["ChessConfig", "MateConfig"]


@dataclass(frozen=True, kw_only=True)
class ChessConfig:
    action_mode: Literal["click", "fromto"] = "click"
    """'click': select a square, then a target (two masked 64-way steps, as a GUI); 'fromto': one 4096-way step."""
    opponent: str = "random"
    """Opponent spec: random, greedy, epsilon:<e>, stockfish, stockfish:skill=<0-20>, stockfish:elo=<n>."""
    agent_color: Literal["alternate", "white", "black"] = "alternate"
    """Colour the agent plays; 'alternate' switches every episode."""
    opening_plies: Annotated[int, Interval(ge=0, le=40)] = 6
    """Up to this many random plies open each game (uniform in 0..n) so games differ."""
    max_plies: Annotated[int, Interval(ge=2, le=2000)] = 300
    """Truncate (adjudicate a draw) after this many plies."""
    underpromotion: bool = False
    """Ask for the promotion piece with an extra decision (off: always promote to a queen)."""
    stockfish_path: str = ""
    """Stockfish binary ('' finds it on PATH or in /usr/games)."""

    FIXED_ON_RESUME: ClassVar[tuple[str, ...]] = ("action_mode", "underpromotion")


@dataclass(frozen=True, kw_only=True)
class MateConfig:
    action_mode: Literal["click", "fromto"] = "click"
    """As env.chess.action_mode, for the mate-in-1 task."""
    underpromotion: bool = False
    """Ask for the promotion piece with an extra decision (off: always promote to a queen)."""
    split: Literal["train", "test"] = "train"
    """Positions to draw from: 'train', or the held-out 'test' set for evaluation."""

    FIXED_ON_RESUME: ClassVar[tuple[str, ...]] = ("action_mode", "underpromotion")
