"""Grabbing a region of an X display as an RGB array, on demand, with mss (XShmGetImage over XCB, ~0.5 ms for
448x448). Resizing to the observation size is left to the env (`envs.common.resize`)."""

from __future__ import annotations

import logging
from typing import NamedTuple

import cv2
import numpy as np

from envs.errors import EnvError

__all__ = ["Region", "ScreenCapture", "display_gone"]

log = logging.getLogger(__name__)


class Region(NamedTuple):
    """A rectangle of the screen in pixels."""

    x: int
    y: int
    width: int
    height: int

    def contains(self, other: Region) -> bool:
        return (self.x <= other.x and self.y <= other.y and other.x + other.width <= self.x + self.width
                and other.y + other.height <= self.y + self.height)


def display_gone(display: str, doing: str) -> EnvError:
    """Return the error for an X connection that broke while `doing` something."""
    return EnvError(f"display {display} is gone (the X connection broke during {doing}); is the X server "
                    "(Xvfb, or the display of the emulator window) still running?")


class ScreenCapture:
    """Screen grabs of one X display; `grab(region)` returns uint8[height, width, 3] RGB at full resolution."""

    def __init__(self, display: str) -> None:
        import mss
        from mss.exception import ScreenShotError

        self.display = display
        try:
            self._mss = mss.MSS(display=display)
            monitor = self._mss.monitors[0]
        except ScreenShotError as exc:
            raise EnvError(f"display {display} cannot be opened ({exc}); start its X server, or use '' to let the "
                           "env start a private Xvfb") from exc
        self.screen = Region(0, 0, monitor["width"], monitor["height"])

    def check_region(self, region: Region, key: str) -> None:
        """Raise EnvError when `region` (the value of config key `key`) does not fit on the screen."""
        if not self.screen.contains(region):
            raise EnvError(f"{key} = {list(region)} reaches beyond the {self.screen.width}x{self.screen.height} "
                           f"screen of display {self.display}; make it fit inside")

    def grab(self, region: Region) -> np.ndarray:
        """Return the pixels of `region` as RGB, or raise EnvError if the display is gone."""
        from mss.exception import ScreenShotError

        try:
            shot = self._mss.grab((region.x, region.y, region.x + region.width, region.y + region.height))
        # mss reports a closed XCB connection with a bare assert on the missing reply
        except (ScreenShotError, AssertionError, OSError) as exc:
            log.debug("grab of %s on %s failed: %r", region, self.display, exc)
            raise display_gone(self.display, "a screen grab") from exc
        return cv2.cvtColor(np.asarray(shot), cv2.COLOR_BGRA2RGB)

    def close(self) -> None:
        from mss.exception import ScreenShotError

        try:
            self._mss.close()
        except ScreenShotError as exc:  # the display died first; nothing is left to release
            log.debug("closing the capture of %s: %r", self.display, exc)
