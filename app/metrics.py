"""The metrics store: namespaced scalars to `metrics/metrics.jsonl` and, optionally, TensorBoard events.

Rows are appended and flushed as they come, so a crash loses at most the row being written; a torn
last line (kill -9 mid-write) is skipped when the file is read back.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["MetricsWriter", "read_metrics"]

log = logging.getLogger(__name__)


class MetricsWriter:
    """Appends `{step, time, key: value, ...}` rows; thread-safe."""

    def __init__(self, directory: Path, *, tensorboard: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "metrics.jsonl"
        torn = _ends_mid_line(self.path)
        self._file = self.path.open("a", buffering=1)
        if torn:  # a kill -9 mid-row: end that line so the next row starts clean
            self._file.write("\n")
        self._lock = threading.Lock()
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter  # optional output, imported when asked for

            self._tb = SummaryWriter(str(directory / "tensorboard"), flush_secs=30)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Store one row of scalars at env step `step`; non-finite values are stored as null."""
        row = {"step": int(step), "time": round(time.time(), 3)}
        for key, value in metrics.items():
            value = float(value)
            row[key] = value if math.isfinite(value) else None
        with self._lock:
            self._file.write(json.dumps(row) + "\n")
            if self._tb is not None:
                for key, value in row.items():
                    if key not in ("step", "time") and value is not None:
                        self._tb.add_scalar(key, value, global_step=step)

    def close(self) -> None:
        with self._lock:
            self._file.close()
            if self._tb is not None:
                self._tb.close()


def _ends_mid_line(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) != b"\n"


def read_metrics(path: Path) -> Iterator[dict[str, float]]:
    """Yield the rows of a metrics.jsonl file, skipping a torn last line."""
    if not path.exists():
        return
    with path.open() as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                log.warning("skipping a torn line in %s", path)
