"""Whole-run learning curves in bounded memory, kept across restarts.

A run lasts weeks, so its curves cannot keep every episode: each curve holds at most `size` points, and when
it is full, neighbouring points are merged pairwise (mean step, mean value); from then on each point stands
for twice as many values. The whole run stays in view at an even resolution, and the averaging smooths the
noise of single episodes. The values not yet making a full point are shown as one provisional last point.

The curves are fed from the rows of `metrics/metrics.jsonl` as they are written (MetricsWriter.subscribe) and
remember how far into that file they have read. They are saved as `metrics/curves.json` beside it (at every
state save) and loaded at start, which then takes the rows written after that save too: a kill -9 loses no
point. A run dir without that file (an older version) has its curves rebuilt once from the whole metrics file.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from app.metrics import read_metrics_from
from app.rundir import atomic_write_text

__all__ = ["CURVES", "CURVE_SOURCES", "RunCurve", "RunCurves", "world_model_loss"]

log = logging.getLogger(__name__)

WORLD_MODEL_LOSSES = ("loss/image", "loss/reward", "loss/cont", "loss/dyn")


def world_model_loss(row: Mapping[str, Any]) -> float | None:
    """The world model's total loss of a metrics row (rep at its 0.1 scale), or None when the row has none."""
    if not all(isinstance(row.get(k), int | float) for k in WORLD_MODEL_LOSSES):
        return None
    rep = row.get("loss/rep")
    return sum(float(row[k]) for k in WORLD_MODEL_LOSSES) + 0.1 * (float(rep) if isinstance(rep, int | float) else 0.0)


def _key(name: str) -> Callable[[Mapping[str, Any]], float | None]:
    return lambda row: float(row[name]) if isinstance(row.get(name), int | float) else None


CURVE_SOURCES: dict[str, Callable[[Mapping[str, Any]], float | None]] = {
    "episode score": _key("episode/score"),
    "world-model loss": world_model_loss,
    "eval score": _key("eval/score"),
    "Elo": _key("eval/elo"),
}
"""Chart title -> its value in a metrics row (None: the row has none)."""

CURVES = tuple(CURVE_SOURCES)


class RunCurve:
    """One curve of the whole run in at most `size` points (see the module's docstring)."""

    def __init__(self, size: int) -> None:
        self.size = max(2, size - size % 2)
        self.points: list[tuple[float, float]] = []
        self.per_point = 1
        """Values each point stands for (a power of two)."""
        self.pending: list[tuple[float, float]] = []
        self.count = 0
        """Values added over the whole run."""

    def add(self, step: float, value: float) -> None:
        if not math.isfinite(value):
            return
        self.pending.append((float(step), float(value)))
        self.count += 1
        if len(self.pending) < self.per_point:
            return
        self.points.append(_mean(self.pending))
        self.pending = []
        if len(self.points) >= self.size:
            self._halve()

    def _halve(self) -> None:
        """Merge neighbouring points pairwise; each point then stands for twice as many values. An odd last
        point has only half a bin: its values go back to `pending` (as copies of its mean) instead."""
        if len(self.points) % 2:
            self.pending = [self.points.pop()] * self.per_point + self.pending
        self.points = [_mean(self.points[i:i + 2]) for i in range(0, len(self.points), 2)]
        self.per_point *= 2

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of the points, the provisional last one included."""
        points = self.points + ([_mean(self.pending)] if self.pending else [])
        if not points:
            return np.zeros(0), np.zeros(0)
        steps, values = zip(*points, strict=True)
        return np.asarray(steps), np.asarray(values)

    def to_dict(self) -> dict[str, Any]:
        return {"per_point": self.per_point, "count": self.count, "points": self.points, "pending": self.pending}

    def copy(self) -> RunCurve:
        other = RunCurve(self.size)
        other.points, other.pending, other.per_point, other.count = list(self.points), list(self.pending), \
            self.per_point, self.count
        return other

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], size: int) -> RunCurve:
        """Rebuild a saved curve (ValueError when it is not one); a curve saved with more points than `size`
        allows is merged down to fit."""
        if not isinstance(data, Mapping):
            raise ValueError("a saved curve must be an object")
        curve = cls(size)
        per_point = int(data["per_point"])
        if per_point < 1 or per_point & (per_point - 1):
            raise ValueError(f"per_point = {per_point} is not a power of two")

        def pairs(name: str) -> list[tuple[float, float]]:
            out = [(float(s), float(v)) for s, v in data[name]]
            if not all(math.isfinite(s) and math.isfinite(v) for s, v in out):
                raise ValueError(f"non-finite {name}")
            return out

        curve.per_point, curve.points, curve.pending = per_point, pairs("points"), pairs("pending")[:per_point - 1]
        curve.count = int(data.get("count", 0))
        while len(curve.points) >= curve.size:
            curve._halve()
        while len(curve.pending) >= curve.per_point:  # an odd point went back to pending: complete its bin
            curve.points.append(_mean(curve.pending[:curve.per_point]))
            curve.pending = curve.pending[curve.per_point:]
        return curve

    def last_step(self) -> float | None:
        steps, _ = self.arrays()
        return float(steps.max()) if steps.size else None


def _mean(points: list[tuple[float, float]]) -> tuple[float, float]:
    return sum(s for s, _ in points) / len(points), sum(v for _, v in points) / len(points)


class RunCurves:
    """The run's learning curves by chart title; not thread-safe (the caller holds its lock)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.curves = {label: RunCurve(size) for label in CURVES}
        self.version = 0
        self.offset = 0
        """Bytes of metrics.jsonl whose rows the curves hold."""
        self.saved_state_step: float | None = None
        """After load(): the env step of state.json when the loaded curves were saved (for a file from before
        that was recorded, the largest step of its curves); None when unknown."""

    def add_row(self, step: int, row: Mapping[str, Any]) -> list[str]:
        """Add what a metrics row holds for each curve; return the titles of the curves it changed."""
        changed = []
        for label, source in CURVE_SOURCES.items():
            value = source(row)
            if value is not None and math.isfinite(value):
                self.curves[label].add(step, value)
                changed.append(label)
        if changed:
            self.version += 1
        return changed

    def copy(self) -> RunCurves:
        """A copy to serialise without holding the caller's lock (the curves grow in place)."""
        other = RunCurves(self.size)
        other.curves = {label: curve.copy() for label, curve in self.curves.items()}
        other.version, other.offset = self.version, self.offset
        return other

    def last_step(self) -> float | None:
        """The largest env step any curve holds (None: they are empty)."""
        steps = [s for curve in self.curves.values() if (s := curve.last_step()) is not None]
        return max(steps) if steps else None

    def reset(self) -> None:
        self.curves = {label: RunCurve(self.size) for label in CURVES}
        self.version += 1
        self.offset = 0

    def to_json(self, state_step: int | None = None) -> str:
        """`state_step`: the env step of the state.json saved with these curves (see saved_state_step)."""
        return json.dumps({"version": 1, "size": self.size, "metrics_offset": self.offset,
                           "state_env_step": state_step,
                           "curves": {label: curve.to_dict() for label, curve in self.curves.items()}})

    def save(self, path: Path, state_step: int | None = None) -> None:
        atomic_write_text(path, self.to_json(state_step))

    def load(self, path: Path, metrics_path: Path) -> None:
        """Take the curves saved at `path` and the metrics rows written after that save; without that file,
        rebuild them from all the metrics rows (once). A damaged file, or a metrics file shorter than the saved
        curves had read, is reported and the curves are rebuilt from the metrics instead."""
        size = metrics_path.stat().st_size if metrics_path.exists() else 0
        if path.exists():
            try:
                data = json.loads(path.read_text())
                saved, offset, state_step = data["curves"], data.get("metrics_offset"), data.get("state_env_step")
                if not isinstance(saved, dict):
                    raise ValueError("'curves' must be an object")
                if offset is not None and (not isinstance(offset, int) or isinstance(offset, bool) or offset < 0):
                    raise ValueError(f"bad metrics_offset {offset!r}")
                if state_step is not None and not isinstance(state_step, int | float):
                    raise ValueError(f"bad state_env_step {state_step!r}")
                if offset is not None and offset > size:
                    raise ValueError(f"it has read {offset} bytes of {metrics_path.name}, which now has {size}")
                curves = {label: RunCurve.from_dict(saved[label], self.size) if label in saved else RunCurve(self.size)
                          for label in CURVES}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("%s is unreadable (%s: %s); rebuilding the learning curves from %s", path,
                            type(exc).__name__, exc, metrics_path.name)
            else:
                self.curves = curves
                self.version += 1
                # A file from before offsets were saved was written with state.json: its last step is that
                # state's (no rows after it were taken in).
                self.saved_state_step = state_step if state_step is not None or offset is not None else \
                    self.last_step()
                if offset is None:  # saved by a version without offsets: the rows since are not known
                    self.offset = size
                    return
                self.offset = offset
                rows = self._read(metrics_path)
                if rows:
                    log.info("the learning curves took %d metrics rows written after their last save", rows)
                return
        if not metrics_path.exists():
            return
        t0 = time.monotonic()
        self.reset()
        rows = self._read(metrics_path)
        log.info("rebuilt the learning curves from %d metrics rows in %.1fs", rows, time.monotonic() - t0)

    def _read(self, metrics_path: Path) -> int:
        """Add the metrics rows from `self.offset` on (OSError: the caller starts with empty curves)."""
        rows = 0
        if not metrics_path.exists():
            return rows
        for row, end in read_metrics_from(metrics_path, self.offset):
            if isinstance(row, dict) and isinstance(row.get("step"), int | float):
                self.add_row(int(row["step"]), row)
                rows += 1
            self.offset = end
        return rows

    def as_lists(self) -> dict[str, dict[str, Any]]:
        """Plain data for the dashboard: {title: {steps, values, per_point, count}}."""
        out = {}
        for label, curve in self.curves.items():
            steps, values = curve.arrays()
            out[label] = {"steps": [round(s) for s in steps.tolist()], "values": [round(v, 4) for v in values.tolist()],
                          "per_point": curve.per_point, "count": curve.count}
        return out
