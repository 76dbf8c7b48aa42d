"""Typed settings of the screen envs: any game on an X display, xboard chess, and the Clash Royale adapter.

Light: imports only the text-form parsers, so `import envs` stays cheap. Cross-field checks raise ValueError
in `__post_init__` (the app turns them into ConfigError at load time; the envs into EnvError).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval

from envs.screen.specs import parse_action, parse_trigger

__all__ = ["ClashConfig", "ScreenConfig", "XboardConfig"]

Box = tuple[float, float, float, float]
"""A rectangle as fractions of the window: left, top, right, bottom, each in [0, 1]."""
Rgb = tuple[int, int, int]


def _check_specs(key: str, texts: tuple[str, ...], parse) -> None:
    for i, text in enumerate(texts):
        try:
            parse(text)
        except ValueError as exc:
            raise ValueError(f"{key}[{i}] = {exc}") from None


def _check_region(key: str, region: tuple[int, int, int, int], allow_whole: bool) -> None:
    x, y, width, height = region
    whole = allow_whole and width == 0 and height == 0
    if x < 0 or y < 0 or not (whole or (width > 0 and height > 0)):
        also = "; width = height = 0 means the whole screen" if allow_whole else ""
        raise ValueError(f"{key} = {list(region)}: must be [x, y, width, height] with x, y >= 0 and width, "
                         f"height > 0{also}")


def _check_box(key: str, box: Box) -> None:
    left, top, right, bottom = box
    if not (0.0 <= left < right <= 1.0 and 0.0 <= top < bottom <= 1.0):
        raise ValueError(f"{key} = {list(box)}: must be [left, top, right, bottom] fractions of the window "
                         "with 0 <= left < right <= 1 and 0 <= top < bottom <= 1")


def _check_rgb(key: str, rgb: Rgb) -> None:
    if not all(0 <= c <= 255 for c in rgb):
        raise ValueError(f"{key} = {list(rgb)}: must be [r, g, b] with each value between 0 and 255")


@dataclass(frozen=True, kw_only=True)
class ScreenConfig:
    display: str = ""
    """X display to play on (e.g. ':99'); '' starts a private Xvfb."""
    screen_size: tuple[int, int] = (1024, 768)
    """Width and height of the private Xvfb screen (unused with an existing display)."""
    region: tuple[int, int, int, int] = (0, 0, 0, 0)
    """Part of the screen the agent sees and clicks in: x, y, width, height (width = height = 0: all of it)."""
    decision_hz: Annotated[float, Interval(gt=0, le=120)] = 4.0
    """Agent decisions per second; each step waits for its slot."""
    actions: tuple[str, ...] = ("noop",)
    """Action table: 'noop', 'click:X,Y', 'move:X,Y' (region coordinates) or 'key:NAME' / 'key:ctrl+NAME'."""
    reset_actions: tuple[str, ...] = ()
    """Actions sent at every reset, same forms (e.g. 'key:ctrl+n' for a new game)."""
    end_when: tuple[str, ...] = ()
    """Episode-end detectors paying their reward: 'pixel:X,Y,#RRGGBB,TOL,REWARD' or 'template:PNG,THRESH,REWARD'."""
    reward_when: tuple[str, ...] = ()
    """Reward detectors (same forms), paid once each time they start to match."""
    command: tuple[str, ...] = ()
    """Program (argv) started on the display with the env and stopped with it; () plays what is already there."""

    def __post_init__(self) -> None:
        width, height = self.screen_size
        if not (64 <= width <= 7680 and 64 <= height <= 4320):
            raise ValueError(f"screen.screen_size = {list(self.screen_size)}: must be [width, height] between "
                             "[64, 64] and [7680, 4320]")
        _check_region("screen.region", self.region, allow_whole=True)
        if not self.actions:
            raise ValueError("screen.actions = []: give at least one action (e.g. 'noop')")
        _check_specs("screen.actions", self.actions, parse_action)
        _check_specs("screen.reset_actions", self.reset_actions, parse_action)
        _check_specs("screen.end_when", self.end_when, parse_trigger)
        _check_specs("screen.reward_when", self.reward_when, parse_trigger)


@dataclass(frozen=True, kw_only=True)
class XboardConfig:
    display: str = ""
    """X display xboard opens on (e.g. ':99'); '' starts a private Xvfb."""
    decision_hz: Annotated[float, Interval(gt=0, le=120)] = 10.0
    """Agent decisions (clicks) per second; each step waits for its slot."""
    skill_level: Annotated[int, Interval(ge=0, le=20)] = 0
    """Stockfish 'Skill Level' of the opponent (0 is the weakest)."""
    depth: Annotated[int, Interval(ge=1, le=30)] = 1
    """Search depth limit xboard gives the engine per move (-depth)."""
    max_plies: Annotated[int, Interval(ge=2, le=2000)] = 300
    """Truncate (adjudicate a draw) after this many plies."""
    reply_timeout_s: Annotated[float, Interval(gt=0, le=600)] = 30.0
    """How long to wait for the engine's reply to appear on the screen before giving up with an error."""
    games_dir: str = "/usr/games"
    """Searched after PATH for xboard, stockfish and polyglot (Debian installs them there, off PATH)."""


@dataclass(frozen=True, kw_only=True)
class ClashConfig:
    display: str = ":0"
    """X display showing the emulator window (scrcpy or the Android emulator); unused with replay_dir."""
    region: tuple[int, int, int, int] = (0, 0, 368, 652)
    """Emulator window region on the display: x, y, width, height in pixels."""
    grid: tuple[int, int] = (3, 3)
    """Placement grid (columns, rows) over the own half of the arena."""
    decision_hz: Annotated[float, Interval(gt=0, le=30)] = 2.0
    """Agent decisions per second; each step waits for its slot."""
    replay_dir: str = ""
    """Directory of recorded PNG frames served in name order instead of a live window ('' = live play)."""
    opponent: str = "training camp"
    """Who the agent plays, stored with each result (Supercell allows bots only in friendly battles and training)."""
    tap_gap_s: Annotated[float, Interval(ge=0, le=2)] = 0.05
    """Pause between the card tap and the placement tap."""
    reset_taps: tuple[tuple[float, float], ...] = ()
    """Taps (window fractions x, y) one second apart at reset, e.g. the result screen's OK, then 'Battle'."""
    reset_timeout_s: Annotated[float, Interval(gt=0, le=3600)] = 120.0
    """How long reset waits for a battle to be on screen before giving up with an error."""
    max_battle_s: Annotated[float, Interval(gt=0, le=3600)] = 420.0
    """Truncate an episode when no result is seen this long after the battle started."""
    tower_reward: Annotated[float, Interval(ge=0, le=1)] = 0.0
    """Shaping: + per enemy tower destroyed, - per own tower lost (0 = off until towers are calibrated)."""
    min_card_cost: Annotated[int, Interval(ge=1, le=10)] = 1
    """Cheapest card of the deck: every card is masked while the elixir bar shows less."""
    own_half: Box = (0.07, 0.445, 0.925, 0.77)
    """Placement area (own side of the river) the grid divides, as window fractions."""
    hand: Box = (0.217, 0.833, 0.967, 0.945)
    """The four hand cards side by side (the next-card preview is left of it)."""
    elixir_bar: Box = (0.272, 0.963, 0.951, 0.986)
    """The 10-segment elixir bar."""
    banner: Box = (0.1, 0.4, 0.9, 0.5)
    """Where the end-of-battle result banner appears."""
    enemy_towers: tuple[Box, Box, Box] = ((0.16, 0.14, 0.33, 0.21), (0.4, 0.04, 0.6, 0.12),
                                          (0.67, 0.14, 0.84, 0.21))
    """Enemy left princess, king and right princess tower bodies."""
    own_towers: tuple[Box, Box, Box] = ((0.16, 0.63, 0.33, 0.7), (0.4, 0.68, 0.6, 0.745),
                                        (0.67, 0.63, 0.84, 0.7))
    """Own left princess, king and right princess tower bodies."""
    elixir_rgb: Rgb = (216, 64, 224)
    """Colour of a filled elixir segment."""
    elixir_empty_rgb: Rgb = (48, 32, 72)
    """Colour of an empty elixir segment (tells a battle screen from a menu)."""
    own_tower_rgb: Rgb = (64, 120, 232)
    """Colour of a standing own tower."""
    enemy_tower_rgb: Rgb = (224, 56, 64)
    """Colour of a standing enemy tower."""
    victory_rgb: Rgb = (40, 160, 255)
    """Banner colour of a won battle."""
    defeat_rgb: Rgb = (200, 24, 32)
    """Banner colour of a lost battle."""
    draw_rgb: Rgb = (150, 150, 150)
    """Banner colour of a drawn battle."""
    colour_tolerance: Annotated[int, Interval(ge=0, le=255)] = 40
    """Largest per-channel difference at which a pixel still counts as a configured colour."""
    card_min_saturation: Annotated[int, Interval(ge=0, le=255)] = 60
    """Mean HSV saturation at which a hand card counts as playable (the game greys out unaffordable cards)."""

    def __post_init__(self) -> None:
        _check_region("clash.region", self.region, allow_whole=False)
        cols, rows = self.grid
        if not (1 <= cols <= 18 and 1 <= rows <= 15):
            raise ValueError(f"clash.grid = {list(self.grid)}: must be [columns, rows] with 1 to 18 columns and "
                             "1 to 15 rows (the game's own tile grid)")
        if not self.replay_dir and not self.display:
            raise ValueError("clash.display = '': give the X display showing the emulator window (e.g. ':0'), "
                             "or set clash.replay_dir to replay recorded frames")
        for i, (x, y) in enumerate(self.reset_taps):
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"clash.reset_taps[{i}] = {[x, y]}: must be [x, y] fractions of the window in [0, 1]")
        for key in ("own_half", "hand", "elixir_bar", "banner"):
            _check_box(f"clash.{key}", getattr(self, key))
        for key in ("enemy_towers", "own_towers"):
            for i, box in enumerate(getattr(self, key)):
                _check_box(f"clash.{key}[{i}]", box)
        for key in ("elixir_rgb", "elixir_empty_rgb", "own_tower_rgb", "enemy_tower_rgb", "victory_rgb",
                    "defeat_rgb", "draw_rgb"):
            _check_rgb(f"clash.{key}", getattr(self, key))
