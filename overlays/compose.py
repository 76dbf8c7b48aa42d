"""The broadcast frame: live game, dream vs reality, learning curves, HUD, results, poll and chat.

`compose` copies a cached base frame and draws only what changes every frame on it: the game view, the
action and the HUD values. The base is the static background (one per layout) with the header, dream strips,
curves, results, poll and chat pasted in; each of those is rendered once per cache key and reused (the keys
are described in `overlays.state`). Caches are module-level, keep one entry per layout and panel, and are
safe to share between threads (a race renders a panel twice; it never shows a wrong one).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np

from overlays.charts import draw_chart
from overlays.draw import ACCENT, BACKGROUND, MUTED, SERIES, TEXT, check_frame, format_value, text
from overlays.layout import Layout, Rect
from overlays.panels import (
    draw_action,
    draw_chat,
    draw_dream,
    draw_game,
    draw_header,
    draw_hud,
    draw_poll,
    draw_results,
    draw_static,
    placeholder,
)
from overlays.state import Curve, Dream, OverlayState, Poll

__all__ = ["MAX_CURVES", "chart_boxes", "clear_caches", "compose", "fallback_frame", "format_value"]

MAX_CURVES = 4
TAGLINE = "a DreamerV3 agent learning to play from pixels, live"
_MAX_ENTRIES = 256  # a bound for the caches when many layouts are used (tests); the app uses one

_panels: dict[tuple[Layout, str], tuple[Hashable, np.ndarray]] = {}
_bases: dict[Layout, tuple[Hashable, np.ndarray]] = {}


def clear_caches() -> None:
    """Forget every cached background, panel and base frame (tests compare cached with fresh renders)."""
    _panels.clear()
    _bases.clear()
    _static.cache_clear()
    _fallback.cache_clear()


def compose(frame: np.ndarray | None, state: OverlayState | Mapping[str, object], layout: Layout) -> np.ndarray:
    """Return a new uint8[layout.height, layout.width, 3] broadcast frame; the inputs are not modified.

    `frame` is the game's RGB image (any size, uint8[H, W, 3]) or None before the first one exists, which
    gives the fallback frame with `state.notice` (or "Starting..."). A plain mapping as `state` is read as
    the HUD (its 'notice' key as the notice), as the walking skeleton passed it.
    """
    if isinstance(state, Mapping):
        state = OverlayState(hud={k: v for k, v in state.items() if k != "notice"},
                             notice=str(state.get("notice") or ""))
    if frame is None:
        return fallback_frame(layout, state.notice or "Starting...")
    check_frame(frame, "game frame")
    img = _base(layout, state).copy()
    draw_game(img, layout.game, layout, frame, state.arrow)
    draw_action(img, layout.action, layout, state.action)
    draw_hud(img, layout.hud, layout, state.hud)
    return img


def fallback_frame(layout: Layout, text: str = "Starting...") -> np.ndarray:
    """Return a clean full frame with one centred message ("Starting...", "Be right back"); never black."""
    return _fallback(layout, text).copy()


# -- caches ----------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _static(layout: Layout) -> np.ndarray:
    return draw_static(layout)


def _panel(layout: Layout, name: str, box: Rect, key: Hashable, render: Callable[[np.ndarray, Rect], None]
           ) -> np.ndarray:
    """Return the image of `box` rendered by `render` on the static background, reused while `key` holds."""
    entry = _panels.get((layout, name))
    if entry is not None and entry[0] == key:
        return entry[1]
    canvas = _static(layout)[box.y: box.y1, box.x: box.x1].copy()
    render(canvas, Rect(0, 0, box.w, box.h))
    canvas.setflags(write=False)
    if len(_panels) >= _MAX_ENTRIES:
        _panels.clear()
    _panels[(layout, name)] = (key, canvas)
    return canvas


def _base(layout: Layout, state: OverlayState) -> np.ndarray:
    """Return the frame without the per-frame parts: static background plus every cached panel."""
    b = layout.boxes
    curves = tuple(state.curves[:MAX_CURVES])
    results = tuple(state.results[-10:])
    chat = tuple(state.chat[-5:])
    parts = [
        ("header", (state.run_name, state.game, state.opponent, state.notice),
         lambda img, box: draw_header(img, box, layout, state.run_name, state.game, state.opponent, state.notice)),
        ("dream", dream_key(state.dream), lambda img, box: draw_dream(img, box, layout, state.dream)),
        ("curves", tuple(curve_key(c) for c in curves), lambda img, box: _draw_curves(img, box, layout, curves)),
        ("results", tuple((r.outcome, repr(r.score)) for r in results),
         lambda img, box: draw_results(img, box, layout, results)),
        ("poll", poll_key(state.poll), lambda img, box: draw_poll(img, box, layout, state.poll)),
        ("chat", tuple((c.user, c.text) for c in chat), lambda img, box: draw_chat(img, box, layout, chat)),
    ]
    keys = tuple(key for _, key, _ in parts)
    entry = _bases.get(layout)
    if entry is not None and entry[0] == keys:
        return entry[1]
    img = _static(layout).copy()
    for name, key, render in parts:
        box = b[name]
        img[box.y: box.y1, box.x: box.x1] = _panel(layout, name, box, key, render)
    img.setflags(write=False)
    if len(_bases) >= _MAX_ENTRIES:
        _bases.clear()
    _bases[layout] = (keys, img)
    return img


def chart_boxes(box: Rect, layout: Layout) -> list[Rect]:
    """Return the 2x2 chart boxes of a curves panel at `box`, in reading order."""
    px = layout.px
    inner = Rect(box.x + px(12), box.y + px(34), box.w - 2 * px(12), box.h - px(34) - px(12))
    gap_x, gap_y = px(20), px(12)
    w, h = (inner.w - gap_x) // 2, (inner.h - gap_y) // 2
    return [Rect(inner.x + c * (w + gap_x), inner.y + r * (h + gap_y), w, h) for r in range(2) for c in range(2)]


def _draw_curves(img: np.ndarray, box: Rect, layout: Layout, curves: Sequence[Curve]) -> None:
    if not curves:
        placeholder(img, box, layout)
        return
    for i, (curve, chart) in enumerate(zip(curves, chart_boxes(box, layout), strict=False)):
        color = curve.color or SERIES[i % len(SERIES)]
        image = _panel(layout, f"chart{i}", _offset(chart, layout.curves), curve_key(curve),
                       lambda canvas, cbox, c=curve, k=color: draw_chart(canvas, cbox, layout, c, k))
        img[chart.y: chart.y1, chart.x: chart.x1] = image


def _offset(r: Rect, origin: Rect) -> Rect:
    """Return `r`, given relative to `origin`'s corner, in frame coordinates."""
    return Rect(origin.x + r.x, origin.y + r.y, r.w, r.h)


# -- cache keys ------------------------------------------------------------------------------------------------------


def _digest(*parts: object) -> bytes:
    """Return a 16-byte digest of arrays, sequences of arrays or numbers, and plain values."""
    h = hashlib.blake2b(digest_size=16)

    def feed(p: object) -> None:
        if p is None:
            h.update(b"\x00none")
        elif isinstance(p, np.ndarray):
            h.update(f"\x00{p.dtype.str}{p.shape}".encode())
            h.update(np.ascontiguousarray(p).reshape(-1).view(np.uint8))
        elif isinstance(p, list | tuple) and p and isinstance(p[0], np.ndarray):
            h.update(f"\x00seq{len(p)}".encode())
            for q in p:
                feed(q)
        elif isinstance(p, list | tuple | Sequence) and not isinstance(p, str | bytes):
            feed(np.asarray(p, np.float64))
        else:
            h.update(f"\x00{p!r}".encode())

    for part in parts:
        feed(part)
    return h.digest()


def dream_key(dream: Dream) -> Hashable:
    """Return the cache key of the dream strips: their version, or a digest of their content."""
    if dream.version is not None:
        return ("version", dream.version)
    return ("digest", _digest(dream.context, dream.reality, dream.prediction, dream.imagined, dream.imagined_reward))


def curve_key(curve: Curve) -> Hashable:
    """Return the cache key of one chart: label and colour, with the version or a digest of the series."""
    data = ("version", curve.version) if curve.version is not None else ("digest", _digest(curve.steps, curve.values))
    return (curve.label, curve.color, *data)


def poll_key(poll: Poll | None) -> Hashable:
    """Return what the poll panel shows, as a key: it changes once a second while a poll runs."""
    if poll is None:
        return None
    left = poll.seconds_left
    shown_left = None if left is None or not math.isfinite(left) else max(0, math.ceil(left))
    return (poll.question, tuple((str(k), repr(v)) for k, v in poll.votes.items()), shown_left)


# -- fallback --------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _fallback(layout: Layout, message: str) -> np.ndarray:
    px = layout.px
    img = np.empty((layout.height, layout.width, 3), np.uint8)
    # A soft vertical gradient: a clean card even where the encoder would flatten a single colour.
    ramp = np.linspace(0.0, 1.0, layout.height, dtype=np.float32)[:, None, None]
    top, bottom = np.array((26, 30, 42), np.float32), np.array(BACKGROUND, np.float32)
    img[:] = (top * (1 - ramp) + bottom * ramp + 0.5).astype(np.uint8)
    cy = layout.height // 2
    margin = px(40)
    wide = Rect(margin, 0, layout.width - 2 * margin, layout.height)
    text(img, Rect(wide.x, cy - px(80), wide.w, px(60)), layout.title, px(48), ACCENT, weight=800, align="center")
    bar_w = px(72)
    img[cy - px(6): cy - px(2), (layout.width - bar_w) // 2: (layout.width + bar_w) // 2] = ACCENT
    text(img, Rect(wide.x, cy + px(10), wide.w, px(56)), message or "Starting...", px(34), TEXT, weight=600,
         align="center")
    text(img, Rect(wide.x, cy + px(70), wide.w, px(30)), TAGLINE, px(17), MUTED, align="center")
    img.setflags(write=False)
    return img
