"""Drawing primitives of the overlay: theme colours, text that never leaves its box, cards, crisp scaling.

Text uses OpenCV 5's built-in antialiased sans font (`cv2.FontFace`), sized in pixels. Every text call
draws into a view of its box, so a glyph can never spill outside it; texts too wide are ellipsised.
"""

from __future__ import annotations

import functools
import math
import threading

import cv2
import numpy as np

from overlays.errors import OverlayError
from overlays.layout import Rect

__all__ = [
    "ACCENT", "BACKGROUND", "BORDER", "CARD", "DRAW", "DREAM", "GAME_BG", "LOSS", "MISSING", "MUTED", "REAL",
    "SERIES", "TEXT", "WIN", "check_frame", "compact", "draw_card", "fit_text", "format_value", "scale_crisp",
    "shrink_to_fit", "text", "text_width", "wrap_text",
]

# Colours are RGB: the frame goes to ffmpeg as rgb24.
BACKGROUND = (13, 15, 21)
CARD = (24, 27, 36)
BORDER = (44, 49, 64)
GAME_BG = (6, 7, 10)
TEXT = (238, 240, 245)
MUTED = (138, 146, 165)
FAINT = (70, 76, 94)
ACCENT = (255, 178, 64)
REAL = (64, 196, 240)
DREAM = (176, 140, 255)
WIN = (56, 214, 150)
LOSS = (246, 106, 106)
DRAW = (160, 170, 190)
SERIES = ((64, 196, 240), (176, 140, 255), (255, 178, 64), (56, 214, 150))
"""Default colours of the four curve slots."""

MISSING = "–"
"""What a missing, empty or non-finite value renders as."""
ELLIPSIS = "…"

_local = threading.local()


def _font() -> cv2.FontFace:
    # One FontFace per thread: OpenCV keeps glyph state in it, and the app composes from its own thread.
    face = getattr(_local, "face", None)
    if face is None:
        face = _local.face = cv2.FontFace("sans")
    return face


def format_value(value: object) -> str:
    """Return a short human text for a metric value; missing or non-finite values show as '–'."""
    if value is None:
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        value = float(value)
        if not math.isfinite(value):
            return MISSING
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}"
    text = str(value)
    return text if text else MISSING


def compact(value: float | None, *, signed: bool = False, trim: bool = False) -> str:
    """Return a number in at most about five characters (axes, chips): 0.004, 3.45, 123, 1234, 12k, 1.2M.

    `signed` adds '+' to positive values; `trim` drops trailing zeros of decimals (2.50 -> 2.5, for ticks).
    """
    if value is None or not math.isfinite(value):
        return MISSING
    sign = "+" if signed and value > 0 else ""
    a = abs(value)
    if a >= 1e9:
        body = f"{value / 1e9:.1f}B"
    elif a >= 1e6:
        body = f"{value / 1e6:.1f}M"
    elif a >= 1e4:
        body = f"{value / 1e3:.0f}k"
    elif a >= 100 or a == int(a):
        body = f"{value:.0f}"
    elif a >= 10:
        body = f"{value:.1f}"
    elif a >= 0.01:
        body = f"{value:.2f}"
    elif a >= 0.001:
        body = f"{value:.3f}"
    else:
        body = f"{value:.0e}"  # tiny losses stay short: 3e-04
    if trim and "." in body and "e" not in body:
        body = body.rstrip("0").rstrip(".")
    body = body.replace(".0M", "M").replace(".0k", "k").replace(".0B", "B")
    return "0" if body in ("-0", "0.00", "-0.00") else sign + body


def drawable(content: str) -> str:
    """`content` with what OpenCV's text functions cannot take replaced by '?': a lone surrogate (e.g. from a
    run dir name that is not UTF-8) makes them crash the whole process (a segfault, not an exception)."""
    try:
        content.encode("utf-8")
        return content
    except UnicodeEncodeError:
        return content.encode("utf-8", "replace").decode("utf-8")


@functools.lru_cache(maxsize=8192)
def text_width(content: str, size_px: int, weight: int = 400) -> int:
    """Return the advance width of `content` in pixels."""
    return int(cv2.getTextSize((0, 0), drawable(content), (0, 0), _font(), size_px, weight)[2])


@functools.lru_cache(maxsize=8192)
def fit_text(content: str, size_px: int, weight: int, max_w: int) -> str:
    """Return `content`, cut and ended with '…' if needed so that it is at most `max_w` pixels wide."""
    content = drawable(content)
    if text_width(content, size_px, weight) <= max_w:
        return content
    lo, hi = 0, len(content)  # the longest prefix that fits with the ellipsis, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_width(content[:mid].rstrip() + ELLIPSIS, size_px, weight) <= max_w:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return ELLIPSIS if text_width(ELLIPSIS, size_px, weight) <= max_w else ""
    return content[:lo].rstrip() + ELLIPSIS


def shrink_to_fit(content: str, size_px: int, weight: int, max_w: int, min_px: int) -> int:
    """Return the largest font size from `size_px` down to `min_px` at which `content` fits in `max_w` pixels
    (`min_px` if none does; the text is then ellipsised)."""
    while size_px > min_px and text_width(content, size_px, weight) > max_w:
        size_px -= 1
    return size_px


def text(img: np.ndarray, box: Rect, content: str, size_px: int, color: tuple[int, int, int], *,
         weight: int = 400, align: str = "left", baseline: int | None = None) -> int:
    """Draw `content` inside `box` (ellipsised to its width, clipped to it); return the drawn width.

    `baseline` is relative to the box's top; by default the capitals are centred vertically.
    """
    if box.w <= 0 or box.h <= 0 or not content:
        return 0
    shown = fit_text(content, size_px, weight, box.w)  # drawable: fit_text replaces what OpenCV cannot take
    if not shown:
        return 0
    width = text_width(shown, size_px, weight)
    x = {"left": 0, "right": box.w - width, "center": (box.w - width) // 2}[align]
    y = round(box.h / 2 + 0.375 * size_px) if baseline is None else baseline
    roi = img[box.y: box.y1, box.x: box.x1]
    cv2.putText(roi, shown, (x, y), color, _font(), size_px, weight)
    return width


def wrap_text(content: str, size_px: int, weight: int, width: int, max_lines: int, first_indent: int = 0
              ) -> list[str]:
    """Return `content` broken into at most `max_lines` lines of `width` pixels; the last one ellipsised.

    The first line is `first_indent` pixels shorter (a user name drawn before it).
    """
    if max_lines < 1:
        return []
    words, lines, i = drawable(content).split(), [], 0
    while i < len(words):
        room = width - (first_indent if not lines else 0)
        if len(lines) == max_lines - 1:  # the last line takes the rest, ellipsised
            lines.append(fit_text(" ".join(words[i:]), size_px, weight, room))
            break
        line, i = words[i], i + 1
        while i < len(words) and text_width(f"{line} {words[i]}", size_px, weight) <= room:
            line, i = f"{line} {words[i]}", i + 1
        lines.append(fit_text(line, size_px, weight, room))  # a single word may be wider than the box
    return lines


def draw_card(img: np.ndarray, box: Rect, fill: tuple[int, int, int], border: tuple[int, int, int] | None,
              radius: int) -> None:
    """Fill a rounded rectangle exactly covering `box`, with an optional 1-pixel border."""
    roi = img[box.y: box.y1, box.x: box.x1]
    h, w = roi.shape[:2]
    r = max(0, min(radius, w // 2, h // 2))
    mask = np.zeros((h, w), np.uint8)
    cv2.rectangle(mask, (r, 0), (w - 1 - r, h - 1), 255, -1)
    cv2.rectangle(mask, (0, r), (w - 1, h - 1 - r), 255, -1)
    for cx, cy in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
        cv2.circle(mask, (cx, cy), r, 255, -1, cv2.LINE_AA)
    layers = [(mask, fill)]
    if border is not None:
        inner = cv2.erode(mask, np.ones((3, 3), np.uint8))
        layers = [(mask, border), (inner, fill)]
    for alpha_u8, color in layers:
        alpha = alpha_u8[..., None].astype(np.float32) / 255.0
        roi[:] = (roi * (1 - alpha) + np.array(color, np.float32) * alpha + 0.5).astype(np.uint8)


def check_frame(frame: object, name: str) -> np.ndarray:
    """Return `frame` if it is uint8[H, W, 3]; raise OverlayError naming it otherwise."""
    if not isinstance(frame, np.ndarray):
        raise OverlayError(f"{name} must be a numpy uint8[H, W, 3] array, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or 0 in frame.shape:
        raise OverlayError(f"{name} must be uint8[H, W, 3], got {frame.dtype}{list(frame.shape)}")
    return frame


def scale_crisp(frame: np.ndarray, box_w: int, box_h: int) -> np.ndarray:
    """Return `frame` scaled to fit (box_w, box_h) keeping its aspect: nearest neighbour when enlarging
    (an integer factor when that loses at most a fifth of the size, so pixel art stays even), area when shrinking.
    """
    h, w = frame.shape[:2]
    factor = min(box_w / w, box_h / h)
    if factor >= 1:
        if math.floor(factor) >= 0.8 * factor:
            factor = math.floor(factor)
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA
    out_w, out_h = min(box_w, max(1, round(w * factor))), min(box_h, max(1, round(h * factor)))
    if (out_w, out_h) == (w, h):
        return frame
    return cv2.resize(frame, (out_w, out_h), interpolation=interp)
