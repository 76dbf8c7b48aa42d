"""Where every panel of the broadcast frame sits: one 1280x720 design grid, scaled to the output size.

Only geometry lives here; what is drawn in each rectangle is in `overlays.panels`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

from overlays.errors import OverlayError

__all__ = ["DESIGN_H", "DESIGN_W", "MIN_H", "MIN_W", "PANELS", "Layout", "Rect"]

DESIGN_W, DESIGN_H = 1280, 720
MIN_W, MIN_H = 320, 180

# (x, y, w, h) of every box on the 1280x720 design grid. Three columns under a header: the live game with its
# action bar and HUD; dream vs reality above the learning curves; results, poll and chat in the sidebar.
_DESIGN: dict[str, tuple[int, int, int, int]] = {
    "header": (0, 0, 1280, 44),
    "title": (16, 0, 184, 44),
    "run": (208, 0, 292, 44),
    "match": (516, 0, 300, 44),
    "notice": (824, 6, 440, 32),
    "game": (16, 56, 448, 448),
    "action": (16, 512, 448, 32),
    "hud": (16, 556, 448, 148),
    "dream": (476, 56, 520, 330),
    "curves": (476, 398, 520, 306),
    "results": (1008, 56, 256, 112),
    "poll": (1008, 180, 256, 244),
    "chat": (1008, 436, 256, 268),
}
PANELS = ("header", "game", "action", "hud", "dream", "curves", "results", "poll", "chat")
"""The panels (cards) of the frame; the other boxes (title, run, match, notice) sit inside the header."""


class Rect(NamedTuple):
    """A box in output pixels: (x, y) is the top-left corner."""

    x: int
    y: int
    w: int
    h: int

    @property
    def x1(self) -> int:
        return self.x + self.w

    @property
    def y1(self) -> int:
        return self.y + self.h

    def inset(self, dx: int, dy: int | None = None) -> Rect:
        """Return this box shrunk by `dx` left and right and `dy` (default `dx`) top and bottom."""
        dy = dx if dy is None else dy
        return Rect(self.x + dx, self.y + dy, max(0, self.w - 2 * dx), max(0, self.h - 2 * dy))

    def contains(self, other: Rect) -> bool:
        return self.x <= other.x and self.y <= other.y and other.x1 <= self.x1 and other.y1 <= self.y1

    def overlaps(self, other: Rect) -> bool:
        return self.x < other.x1 and other.x < self.x1 and self.y < other.y1 and other.y < self.y1


@dataclass(frozen=True)
class Layout:
    """Output size and the static title of the broadcast frame; every box scales from one 1280x720 design.

    Any 16:9 size keeps the design's proportions; other aspect ratios stretch the boxes (the game view keeps
    the game's aspect inside its box).
    """

    width: int = 1280
    """Output width in pixels (at least 320)."""
    height: int = 720
    """Output height in pixels (at least 180)."""
    title: str = "DreamStream"
    """Shown at the left of the header and on the fallback frames."""

    def __post_init__(self) -> None:
        if self.width < MIN_W or self.height < MIN_H:
            raise OverlayError(f"layout {self.width}x{self.height}: width and height must be at least "
                               f"{MIN_W}x{MIN_H}; pass the stream's size, e.g. 1280x720")

    @property
    def scale(self) -> float:
        """Output pixels per design pixel for fonts, lines and paddings (the smaller of the two axes)."""
        return min(self.width / DESIGN_W, self.height / DESIGN_H)

    @property
    def boxes(self) -> dict[str, Rect]:
        """Every named box: the panels of `PANELS` plus the header's title, run, match and notice boxes."""
        return dict(_boxes(self.width, self.height))

    header = property(lambda self: _boxes(self.width, self.height)["header"], doc="The top bar.")
    title_box = property(lambda self: _boxes(self.width, self.height)["title"], doc="The title, in the header.")
    run_box = property(lambda self: _boxes(self.width, self.height)["run"], doc="The run name, in the header.")
    match_box = property(lambda self: _boxes(self.width, self.height)["match"], doc="Game and opponent.")
    notice_box = property(lambda self: _boxes(self.width, self.height)["notice"], doc="The notice pill.")
    game = property(lambda self: _boxes(self.width, self.height)["game"], doc="The live game view.")
    action = property(lambda self: _boxes(self.width, self.height)["action"], doc="The current action.")
    hud = property(lambda self: _boxes(self.width, self.height)["hud"], doc="The HUD values.")
    dream = property(lambda self: _boxes(self.width, self.height)["dream"], doc="Dream vs reality strips.")
    curves = property(lambda self: _boxes(self.width, self.height)["curves"], doc="The learning curves.")
    results = property(lambda self: _boxes(self.width, self.height)["results"], doc="The last results.")
    poll = property(lambda self: _boxes(self.width, self.height)["poll"], doc="The viewer poll.")
    chat = property(lambda self: _boxes(self.width, self.height)["chat"], doc="The last chat commands.")

    def px(self, design_px: float) -> int:
        """Return a design length (font size, padding, line width) in output pixels, at least 1."""
        return max(1, round(design_px * self.scale))


@functools.lru_cache(maxsize=16)
def _boxes(width: int, height: int) -> dict[str, Rect]:
    sx, sy = width / DESIGN_W, height / DESIGN_H
    out = {}
    for name, (x, y, w, h) in _DESIGN.items():
        # Scale both edges, not the size, so that boxes which touch in the design still touch.
        x0, y0, x1, y1 = round(x * sx), round(y * sy), round((x + w) * sx), round((y + h) * sy)
        out[name] = Rect(x0, y0, x1 - x0, y1 - y0)
    return out
