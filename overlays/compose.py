"""The broadcast frame: game view plus status panel, composed in numpy/OpenCV.

PLACEHOLDER layout for the walking skeleton: one game view and a list of status values. The full panel
set (dream vs reality, learning curves, HUD, chat) arrives with the overlays issue (issue 5).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Layout", "compose", "fallback_frame", "format_value"]

BACKGROUND = (20, 22, 28)
PANEL = (32, 35, 44)
ACCENT = (255, 170, 60)
TEXT = (235, 235, 235)
MUTED = (150, 155, 165)
FONT = cv2.FONT_HERSHEY_SIMPLEX
MISSING = "-"


@dataclass(frozen=True)
class Layout:
    """Output size and the static texts of the frame."""

    width: int = 1280
    height: int = 720
    title: str = "DreamStream"

    @property
    def scale(self) -> float:
        return self.height / 720

    @property
    def margin(self) -> int:
        return round(16 * self.scale)

    @property
    def header_h(self) -> int:
        return round(48 * self.scale)

    @property
    def game_box(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the square game view."""
        side = self.height - self.header_h - 2 * self.margin
        return self.margin, self.header_h + self.margin, side, side

    @property
    def panel_box(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the status panel right of the game view."""
        gx, gy, gw, gh = self.game_box
        x = gx + gw + self.margin
        return x, gy, self.width - x - self.margin, gh


def format_value(value: object) -> str:
    """Return a short human text for a metric value; missing or NaN values show as '-'."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return MISSING
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}"
    text = str(value)
    return text if text else MISSING


def _fit_text(text: str, max_w: int, font_scale: float, thickness: int) -> str:
    """Return `text`, ellipsised so that it fits in `max_w` pixels."""
    if cv2.getTextSize(text, FONT, font_scale, thickness)[0][0] <= max_w:
        return text
    while text and cv2.getTextSize(text + "...", FONT, font_scale, thickness)[0][0] > max_w:
        text = text[:-1]
    return text + "..."


def _put(img: np.ndarray, text: str, org: tuple[int, int], font_scale: float, color, max_w: int,
         thickness: int = 1) -> None:
    cv2.putText(img, _fit_text(text, max_w, font_scale, thickness), org, FONT, font_scale, color,
                thickness, cv2.LINE_AA)


@functools.lru_cache(maxsize=8)
def _background(layout: Layout) -> np.ndarray:
    """Return the static parts (colours, header, boxes); rendered once per layout."""
    s = layout.scale
    img = np.empty((layout.height, layout.width, 3), np.uint8)
    img[:] = BACKGROUND
    img[: layout.header_h] = PANEL
    _put(img, layout.title, (layout.margin, round(layout.header_h * 0.68)), 0.9 * s, ACCENT,
         layout.width // 2, max(1, round(2 * s)))
    px, py, pw, ph = layout.panel_box
    cv2.rectangle(img, (px, py), (px + pw, py + ph), PANEL, -1)
    gx, gy, gw, gh = layout.game_box
    cv2.rectangle(img, (gx - 2, gy - 2), (gx + gw + 1, gy + gh + 1), PANEL, 2)
    img.setflags(write=False)
    return img


def _scaled_game(frame: np.ndarray, side: int) -> tuple[np.ndarray, int, int]:
    """Return the frame upscaled crisply (nearest neighbour, integer factor when it fits) and its offset."""
    h, w = frame.shape[:2]
    factor = side / max(h, w)
    if factor >= 1:
        factor = math.floor(factor)
    out_w, out_h = max(1, round(w * factor)), max(1, round(h * factor))
    interp = cv2.INTER_NEAREST if factor >= 1 else cv2.INTER_AREA
    scaled = cv2.resize(frame, (out_w, out_h), interpolation=interp)
    return scaled, (side - out_w) // 2, (side - out_h) // 2


def compose(frame: np.ndarray | None, metrics: Mapping[str, object], layout: Layout) -> np.ndarray:
    """Return a new uint8[layout.height, layout.width, 3] frame: game view, status panel, notice line.

    `metrics` maps labels to values shown in order; the key 'notice' is shown under the header.
    `frame` is the game's RGB image (any size) or None before the first one exists.
    """
    if frame is None:
        return fallback_frame(layout, str(metrics.get("notice") or "Starting..."))
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"game frame must be uint8[H, W, 3], got {frame.dtype}{list(frame.shape)}")
    s = layout.scale
    img = _background(layout).copy()
    gx, gy, gw, _ = layout.game_box
    scaled, ox, oy = _scaled_game(frame, gw)
    img[gy + oy: gy + oy + scaled.shape[0], gx + ox: gx + ox + scaled.shape[1]] = scaled

    px, py, pw, _ = layout.panel_box
    line_h = round(34 * s)
    y = py + line_h
    label_w = round(pw * 0.5)
    for label, value in metrics.items():
        if label == "notice":
            continue
        if y > py + layout.panel_box[3] - round(8 * s):
            break
        _put(img, str(label), (px + layout.margin, y), 0.6 * s, MUTED, label_w - layout.margin)
        _put(img, format_value(value), (px + label_w, y), 0.6 * s, TEXT, pw - label_w - layout.margin)
        y += line_h
    notice = metrics.get("notice")
    if notice:
        _put(img, str(notice), (layout.width // 2, round(layout.header_h * 0.66)), 0.6 * s, TEXT,
             layout.width // 2 - layout.margin)
    return img


@functools.lru_cache(maxsize=16)
def _fallback(layout: Layout, text: str) -> np.ndarray:
    img = _background(layout).copy()
    s = layout.scale
    size, _ = cv2.getTextSize(text, FONT, 1.4 * s, max(1, round(2 * s)))
    org = ((layout.width - min(size[0], layout.width)) // 2, (layout.height + size[1]) // 2)
    _put(img, text, org, 1.4 * s, TEXT, layout.width - 2 * layout.margin, max(1, round(2 * s)))
    img.setflags(write=False)
    return img


def fallback_frame(layout: Layout, text: str = "Starting...") -> np.ndarray:
    """Return a clean full frame with one centred message ("Starting...", "Be right back")."""
    return _fallback(layout, text).copy()
