"""The metrics store: namespaced scalars to `metrics/metrics.jsonl` and, optionally, TensorBoard events.

Rows are appended and flushed as they come, so a crash loses at most the row being written; a torn
last line (kill -9 mid-write) is skipped when the file is read back. Listeners (the learning curves) see every
row as it is written, in file order, with its end offset in the file, so they can save how far they have read
and catch up on the rows after it at the next start (`read_metrics_from`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

__all__ = ["MetricsWriter", "read_metrics", "read_metrics_from"]

log = logging.getLogger(__name__)


class MetricsWriter:
    """Appends `{step, time, key: value, ...}` rows; thread-safe."""

    def __init__(self, directory: Path, *, tensorboard: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "metrics.jsonl"
        torn = _ends_mid_line(self.path)
        self._file = self.path.open("a", buffering=1, encoding="utf-8", newline="\n")  # offsets count bytes
        if torn:  # a kill -9 mid-row: end that line so the next row starts clean
            self._file.write("\n")
        self._file.flush()
        self.offset = self.path.stat().st_size
        """Bytes in metrics.jsonl after the last row written."""
        self._listeners: list[Callable[[int, dict[str, float | None], int], None]] = []
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
        line = json.dumps(row) + "\n"
        with self._lock:
            self._file.write(line)
            self.offset += len(line.encode())
            if self._tb is not None:
                for key, value in row.items():
                    if key not in ("step", "time") and value is not None:
                        self._tb.add_scalar(key, value, global_step=step)
            for listener in self._listeners:
                try:
                    listener(int(step), row, self.offset)
                except Exception:  # a picture of the metrics must never lose a row or stop its writer
                    log.exception("a metrics listener failed on the row of env step %d", step)

    def subscribe(self, listener: Callable[[int, dict[str, float | None], int], None]) -> None:
        """Call `listener(step, row, end_offset)` after each row is written: in file order, under the writer's
        lock (so it must be quick and must not write metrics itself)."""
        with self._lock:
            self._listeners.append(listener)

    def close(self) -> None:
        with self._lock:
            self._file.close()
            if self._tb is not None:
                self._tb.close()


def read_metrics_from(path: Path, offset: int = 0) -> Iterator[tuple[dict, int]]:
    """Yield (row, end offset) for each complete row of a metrics.jsonl file from byte `offset` on; a torn last
    line is not yet a row, and a damaged line is skipped."""
    with path.open("rb") as fh:
        fh.seek(offset)
        for line in fh:
            offset += len(line)
            if not line.endswith(b"\n"):
                return
            if not line.strip():  # the line end the writer adds after a torn row
                continue
            try:
                yield json.loads(line), offset
            except (json.JSONDecodeError, UnicodeDecodeError):
                log.warning("skipping a damaged line in %s", path)


def _ends_mid_line(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) != b"\n"


def read_metrics(path: Path) -> Iterator[dict[str, float]]:
    """Yield the rows of a metrics.jsonl file (none when it is missing), skipping a torn last line."""
    if path.exists():
        yield from (row for row, _ in read_metrics_from(path))
