"""The metrics store: namespaced scalars to `metrics/metrics.jsonl` and, optionally, TensorBoard events.

Rows are appended and flushed as they come, so a crash loses at most the row being written; a torn
last line (kill -9 mid-write) is skipped when the file is read back. Listeners (the learning curves) see every
row as it is written, in file order, with its end offset in the file, so they can save how far they have read
and catch up on the rows after it at the next start (`read_metrics_from`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

__all__ = ["MetricsWriter", "read_metrics", "read_metrics_from"]

log = logging.getLogger(__name__)


class MetricsWriter:
    """Appends `{step, time, key: value, ...}` rows; thread-safe; `write` never raises and never blocks on output.

    A failed append (a full disk) loses that row from the file, is counted in `write_errors` and logged once per
    streak; the listeners still get the row, and the next row that fits starts on a line of its own. TensorBoard
    events are written by a thread of their own from a bounded queue: tensorboardX's writer thread dies on a
    write error and its `add_scalar` then blocks for good, which must stall only TensorBoard, never a writer.
    """

    def __init__(self, directory: Path, *, tensorboard: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "metrics.jsonl"
        torn = _ends_mid_line(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.offset = os.fstat(self._fd).st_size
        """Bytes in metrics.jsonl after the last row written."""
        self._torn = torn  # a kill -9 mid-row: end that line so the next row starts clean
        self.write_errors = 0
        """Rows that could not be appended to metrics.jsonl (e.g. a full disk)."""
        self._failing = False
        self._listeners: list[Callable[[int, dict[str, float | None], int], None]] = []
        self._lock = threading.Lock()
        self.tensorboard = _TensorBoard(directory / "tensorboard") if tensorboard else None

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Store one row of scalars at env step `step`; non-finite values are stored as null."""
        row = {"step": int(step), "time": round(time.time(), 3)}
        for key, value in metrics.items():
            value = float(value)
            row[key] = value if math.isfinite(value) else None
        data = (json.dumps(row) + "\n").encode()
        with self._lock:
            self._append(data)
            if self.tensorboard is not None:
                self.tensorboard.put(int(step), row)
            for listener in self._listeners:
                try:
                    listener(int(step), row, self.offset)
                except Exception:  # a picture of the metrics must never lose a row or stop its writer
                    log.exception("a metrics listener failed on the row of env step %d", step)

    def _append(self, data: bytes) -> None:
        try:
            if self._torn:  # the end of a row cut by a kill -9 or a failed write
                _write_all(self._fd, b"\n")
                self._torn = False
            _write_all(self._fd, data)
        except OSError as exc:
            self.write_errors += 1
            self._torn = True
            if not self._failing:
                log.error("cannot append to %s (%s): metrics rows are lost until it can be written again",
                          self.path, exc)
            self._failing = True
        else:
            if self._failing:
                log.warning("%s is written again (%d rows lost in all)", self.path, self.write_errors)
            self._failing = False
            self.offset = os.fstat(self._fd).st_size  # after a failure, an ended torn line moved it on too

    def health(self) -> dict[str, int]:
        """Rows lost: not appended to metrics.jsonl, not written to TensorBoard (a stalled writer)."""
        return {"write_errors": self.write_errors,
                "tensorboard_dropped": self.tensorboard.dropped if self.tensorboard is not None else 0}

    def subscribe(self, listener: Callable[[int, dict[str, float | None], int], None]) -> None:
        """Call `listener(step, row, end_offset)` after each row is written: in file order, under the writer's
        lock (so it must be quick and must not write metrics itself)."""
        with self._lock:
            self._listeners.append(listener)

    def close(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        if self.tensorboard is not None:
            self.tensorboard.close(timeout_s)


class _TensorBoard:
    """tensorboardX on its own daemon thread, fed from a bounded queue (full: the row is dropped and counted)."""

    QUEUE_ROWS = 1000

    def __init__(self, directory: Path) -> None:
        from tensorboardX import SummaryWriter  # optional output, imported when asked for

        self._writer = SummaryWriter(str(directory), flush_secs=30)
        self._queue: queue.Queue[tuple[int, dict] | None] = queue.Queue(self.QUEUE_ROWS)
        self.dropped = 0
        """Rows not written to TensorBoard because its queue was full (its writer stalled)."""
        self._thread = threading.Thread(target=self._run, name="metrics-tensorboard", daemon=True)
        self._thread.start()

    def put(self, step: int, row: dict) -> None:
        try:
            self._queue.put_nowait((step, row))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                log.error("TensorBoard output has stalled (its writer failed, e.g. on a full disk): its rows are "
                          "dropped; metrics.jsonl goes on; restart the app to write TensorBoard events again")

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            step, row = item
            try:
                for key, value in row.items():
                    if key not in ("step", "time") and value is not None:
                        self._writer.add_scalar(key, value, global_step=step)
            except Exception:
                log.exception("TensorBoard could not take the row of env step %d", step)
        with contextlib.suppress(Exception):
            self._writer.close()

    def close(self, timeout_s: float) -> None:
        """Write what is queued and close; gives up after `timeout_s` in all (a stalled writer is left behind)."""
        deadline = time.monotonic() + timeout_s
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(max(0.0, deadline - time.monotonic()))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
