"""Learning-curve charts drawn with OpenCV: a thick mean line over a faint min-max band, few ticks, big labels.

Series of thousands of points are reduced to two pixels per bucket before drawing; empty, single-point,
constant and NaN-holding series are all valid input.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from overlays.draw import BORDER, MUTED, TEXT, compact, text
from overlays.layout import Layout, Rect
from overlays.state import Curve

__all__ = ["clean_series", "downsample", "draw_chart", "nice_ticks"]

SHIFT = 4  # sub-pixel precision of polylines: coordinates are in 1/16 pixel
BAND_ALPHA = 0.22
MARKERS_BELOW = 40
"""Series with fewer points get a dot on every point (sparse eval scores, Elo after a few matches)."""


LIMIT = 1e300
"""The largest magnitude a chart draws; beyond it the value is drawn at the limit."""


def clean_series(steps: object, values: object) -> tuple[np.ndarray, np.ndarray]:
    """Return (x, y) float64 arrays of the finite pairs, sorted by x; lengths are cut to the shorter input."""
    x = np.asarray(steps, np.float64).ravel()
    y = np.asarray(values, np.float64).ravel()
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    keep = np.isfinite(x) & np.isfinite(y)
    # Finite, but so large that a span or a margin between two of them overflows to inf: held to +-1e300.
    x, y = np.clip(x[keep], -LIMIT, LIMIT), np.clip(y[keep], -LIMIT, LIMIT)
    if len(x) > 1 and np.any(np.diff(x) < 0):
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
    return x, y


def downsample(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_mid, y_mean, y_min, y_max) per x bucket: `buckets` equal slices of x's range, empty ones dropped."""
    if len(x) <= buckets:
        return x, y, y, y
    lo, hi = x[0], x[-1]
    ids = np.minimum(((x - lo) / (hi - lo) * buckets).astype(np.int64), buckets - 1)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # x is sorted, so each bucket is one run
    counts = np.diff(np.r_[starts, len(x)])
    mean = np.add.reduceat(y, starts) / counts
    x_mid = np.add.reduceat(x, starts) / counts
    return x_mid, mean, np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts)


def nice_ticks(lo: float, hi: float) -> list[float]:
    """Return two to four round tick values inside [lo, hi]: multiples of the largest step among 1, 2, 2.5 and 5
    times a power of ten that still gives two ticks (a single one when lo == hi)."""
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return [lo] if math.isfinite(lo) else []
    power = 10.0 ** math.floor(math.log10(span))
    for step in (m * power for m in (5, 2.5, 2, 1, 0.5, 0.25, 0.2, 0.1)):
        first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
        if last - first >= 1:
            return [0.0 if k == 0 else k * step for k in range(first, last + 1)]
    return [lo, hi]


def _value_range(y: np.ndarray) -> tuple[float, float]:
    lo, hi = float(y.min()), float(y.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):  # constant: centre it in a small range around the value
        half = max(abs(hi) * 0.1, 1.0)
        return lo - half, hi + half
    margin = (hi - lo) * 0.08
    return lo - margin, hi + margin


def draw_chart(img: np.ndarray, box: Rect, layout: Layout, curve: Curve, color: tuple[int, int, int]) -> None:
    """Draw one curve in `box`: title and current value on top, plot with y ticks left and x range below."""
    px = layout.px
    x, y = clean_series(curve.steps, curve.values)
    head = Rect(box.x, box.y, box.w, px(22))
    current = compact(float(y[-1])) if len(y) else "–"
    value_w = text(img, head, current, px(18), color if len(y) else MUTED, weight=800, align="right",
                   baseline=px(17))
    text(img, Rect(box.x, box.y, box.w - value_w - px(8), px(22)), curve.label or "–", px(14), TEXT, weight=600,
         baseline=px(17))
    ylab_w = px(38)
    plot = Rect(box.x + ylab_w, box.y + px(28), box.w - ylab_w - px(4), box.h - px(28) - px(18))
    if plot.w < 4 or plot.h < 4:
        return
    img[plot.y1: plot.y1 + 1, plot.x: plot.x1] = BORDER
    if not len(y):
        text(img, plot, "no data yet", px(14), MUTED, align="center")
        return

    # Axes: a few round y ticks with faint grid lines, and the x range (env steps) under the plot.
    lo, hi = _value_range(y)
    x_lo, x_hi = float(x[0]), float(x[-1])
    if x_hi <= x_lo:
        x_lo, x_hi = x_lo - 1.0, x_hi + 1.0

    inset = px(6)  # room for the end dot, so it is never cut by the plot's edge

    def to_px(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        u = plot.x + inset + (xs - x_lo) / (x_hi - x_lo) * (plot.w - 1 - 2 * inset)
        v = plot.y1 - 1 - (ys - lo) / (hi - lo) * (plot.h - 1)
        return np.round(np.stack([u, v], -1) * (1 << SHIFT)).astype(np.int32)

    for t in nice_ticks(float(y.min()), float(y.max())) if y.max() > y.min() else [float(y[0])]:
        ty = round(plot.y1 - 1 - (t - lo) / (hi - lo) * (plot.h - 1))
        if plot.y <= ty < plot.y1 - 1:
            img[ty: ty + 1, plot.x: plot.x1] = (34, 38, 50)
        label_box = Rect(box.x, ty - px(10), ylab_w - px(6), px(20))
        if label_box.y >= box.y + px(22) and label_box.y1 <= plot.y1 + px(8):
            text(img, label_box, compact(t, trim=True), px(12), MUTED, align="right")
    axis = Rect(plot.x, plot.y1 + px(2), plot.w, px(16))
    text(img, axis, compact(float(x[0])), px(12), MUTED, baseline=px(13))
    text(img, axis, f"{compact(float(x[-1]))} steps", px(12), MUTED, align="right", baseline=px(13))

    # Data: a faint band from each bucket's min to max, the bucket means as a thick line, the last point as a dot.
    roi = img[plot.y: plot.y1, plot.x: plot.x1]
    origin = np.array([plot.x, plot.y], np.int32) << SHIFT
    xm, ym, ymin, ymax = downsample(x, y, max(2, plot.w // 2))
    line = to_px(xm, ym) - origin
    if len(xm) > 1 and np.any(ymin != ymax):
        band = np.concatenate([to_px(xm, ymax), to_px(xm, ymin)[::-1]]) - origin
        layer = roi.copy()
        cv2.fillPoly(layer, [band], color, cv2.LINE_AA, SHIFT)
        cv2.addWeighted(layer, BAND_ALPHA, roi, 1 - BAND_ALPHA, 0, dst=roi)
    if len(xm) > 1:
        cv2.polylines(roi, [line], False, color, px(3), cv2.LINE_AA, SHIFT)
    if len(x) < MARKERS_BELOW:
        for p in line:
            cv2.circle(roi, (int(p[0]), int(p[1])), px(3) << SHIFT, color, -1, cv2.LINE_AA, SHIFT)
    last = line[-1]
    cv2.circle(roi, (int(last[0]), int(last[1])), px(5) << SHIFT, TEXT, -1, cv2.LINE_AA, SHIFT)
    cv2.circle(roi, (int(last[0]), int(last[1])), px(3) << SHIFT, color, -1, cv2.LINE_AA, SHIFT)
