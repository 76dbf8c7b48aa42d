"""Detectors: small callables that look at a full-resolution RGB frame and answer yes or no (a pixel has a
colour, a template is visible), and the colour measurements they are built from. A `Trigger` pairs a detector
with the reward it pays and whether it ends the episode. Game-specific readings (elixir, towers) live with
their game in `envs.screen.clash`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from envs.errors import EnvError
from envs.screen.specs import TriggerSpec

__all__ = ["PixelBox", "PixelProbe", "TemplateMatch", "Trigger", "build_trigger", "colour_fraction", "load_png",
           "mean_colour", "saturation"]

log = logging.getLogger(__name__)

PixelBox = tuple[int, int, int, int]
"""A rectangle of a frame in pixels: left, top, right, bottom (right and bottom exclusive)."""

Detector = Callable[[np.ndarray], bool]
"""Takes a frame uint8[H, W, 3] RGB, returns whether the thing it looks for is there."""


def _crop(frame: np.ndarray, box: PixelBox) -> np.ndarray:
    left, top, right, bottom = box
    return frame[top:bottom, left:right]


def mean_colour(frame: np.ndarray, box: PixelBox) -> tuple[int, int, int]:
    """Return the mean RGB of `box`, rounded."""
    r, g, b = _crop(frame, box).reshape(-1, 3).mean(axis=0)
    return round(r), round(g), round(b)


def colour_fraction(frame: np.ndarray, box: PixelBox, rgb: tuple[int, int, int], tolerance: int) -> float:
    """Return the fraction of pixels in `box` whose every channel is within `tolerance` of `rgb`."""
    crop = _crop(frame, box).astype(np.int16)
    close = np.abs(crop - np.asarray(rgb, np.int16)).max(axis=2) <= tolerance
    return float(close.mean()) if close.size else 0.0


def saturation(frame: np.ndarray, box: PixelBox) -> float:
    """Return the mean HSV saturation (0-255) of `box`: low for grey, high for vivid colours."""
    crop = np.ascontiguousarray(_crop(frame, box))
    return float(cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)[:, :, 1].mean()) if crop.size else 0.0


@dataclass(frozen=True)
class PixelProbe:
    """True when the mean colour of the (2 * radius + 1)² patch around (x, y) is within `tolerance` of `rgb`
    on every channel."""

    x: int
    y: int
    rgb: tuple[int, int, int]
    tolerance: int = 30
    radius: int = 0

    def __call__(self, frame: np.ndarray) -> bool:
        h, w = frame.shape[:2]
        if not (0 <= self.x < w and 0 <= self.y < h):
            raise EnvError(f"pixel probe at ({self.x}, {self.y}) lies outside the {w}x{h} frame; use region "
                           "coordinates")
        box = (max(self.x - self.radius, 0), max(self.y - self.radius, 0), self.x + self.radius + 1,
               self.y + self.radius + 1)
        mean = mean_colour(frame, box)
        return max(abs(m - c) for m, c in zip(mean, self.rgb, strict=True)) <= self.tolerance


@dataclass(frozen=True)
class TemplateMatch:
    """True when `template` (uint8[h, w, 3] RGB) appears in the frame (or in `box`) with a normalised
    correlation of at least `threshold` (cv2.TM_CCOEFF_NORMED)."""

    template: np.ndarray = field(repr=False)
    threshold: float = 0.9
    box: PixelBox | None = None

    def score(self, frame: np.ndarray) -> float:
        """Return the best match score in [-1, 1]."""
        area = frame if self.box is None else _crop(frame, self.box)
        th, tw = self.template.shape[:2]
        if area.shape[0] < th or area.shape[1] < tw:
            return -1.0
        return float(cv2.matchTemplate(area, self.template, cv2.TM_CCOEFF_NORMED).max())

    def __call__(self, frame: np.ndarray) -> bool:
        return self.score(frame) >= self.threshold


@dataclass(frozen=True)
class Trigger:
    """A detector with the reward it pays; an `ends_episode` trigger terminates the episode when it fires."""

    detector: Detector
    reward: float
    ends_episode: bool
    name: str = ""
    """How episode_info names the trigger (its config text)."""


def load_png(path: str | Path) -> np.ndarray:
    """Return an image file as uint8[H, W, 3] RGB, or raise EnvError."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EnvError(f"cannot read image {str(path)!r}; give the path of a PNG file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def build_trigger(spec: TriggerSpec, ends_episode: bool) -> Trigger:
    """Return the trigger a parsed config text describes (loading a template's PNG)."""
    if spec.kind == "pixel":
        detector: Detector = PixelProbe(spec.x, spec.y, spec.rgb, spec.tolerance)
    else:
        detector = TemplateMatch(load_png(spec.path), spec.threshold)
    return Trigger(detector, spec.reward, ends_episode, spec.text)
