"""Replay: uint8 frames and transitions in a RAM ring per actor stream, persisted in fixed-size chunks.

Each stream (one actor's env) appends steps in order. Sampling returns B sequences of T consecutive
steps from one stream (they may cross episode boundaries; `is_first` marks where the world model must
reset). Every newly completed, non-overlapping sequence enters an online queue and is sampled before
any uniform draw, so fresh experience is always trained on at least once.

Completed chunks of `chunk_steps` steps are written as .npz files (temp name, fsync, then rename) under
the run dir by a background writer thread, so the actor that calls `add` never waits for the disk; at
start-up the newest chunks are loaded back up to the RAM capacity. A kill -9 loses at most the
unwritten part of the current chunk and the chunks still queued; `close()` writes all of them.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Replay", "Step", "pack_mask", "step_spec", "unpack_mask"]

log = logging.getLogger(__name__)

LATENT_KEYS = ("deter", "stoch", "latent_ok")
OPTIONAL_KEYS = (*LATENT_KEYS, "action_mask")
"""Fields a chunk written before they were configured may lack (they load as in `MISSING`, else zero)."""
WRITE_QUEUE = 4
"""Chunks waiting for the writer thread before `add` waits too (a disk slower than the actor)."""


@dataclass(frozen=True)
class Step:
    """Field names, shapes and dtypes of one stored step."""

    image_shape: tuple[int, int, int]
    action_shape: tuple[int, ...]
    action_dtype: str
    latent: tuple[int, int] | None = None
    """(deter, stoch) sizes when the replay keeps each step's latent state (replay context), else None."""
    mask: int | None = None
    """The number of discrete actions when the env marks its legal ones (`action_mask`), else None."""

    def fields(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        fields = {
            "image": (self.image_shape, np.dtype(np.uint8)),
            "action": (self.action_shape, np.dtype(self.action_dtype)),
            "reward": ((), np.dtype(np.float32)),
            "is_first": ((), np.dtype(bool)),
            "is_last": ((), np.dtype(bool)),
            "is_terminal": ((), np.dtype(bool)),
        }
        if self.mask is not None:
            # Packed 8 legal-action bits per byte (`pack_mask`): chess's 4,096 from-to moves take 512 bytes a
            # step instead of 4,096 (a third of a 64x64 frame; 3.6 GB less RAM per million steps).
            fields["action_mask"] = ((packed_size(self.mask),), np.dtype(np.uint8))
        if self.latent is not None:
            deter, stoch = self.latent
            fields["deter"] = ((deter,), np.dtype(np.float16))
            fields["stoch"] = ((stoch,), np.dtype(np.uint16))  # the class index of each categorical latent
            fields["latent_ok"] = ((), np.dtype(bool))  # False until a latent was written for the step
        return fields

    def nbytes(self) -> int:
        return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in self.fields().values())


def step_spec(image_shape: tuple[int, int, int], action_shape: tuple[int, ...] = (),
              action_dtype: str = "int32", latent: tuple[int, int] | None = None, mask: int | None = None) -> Step:
    """Return the layout of a step: an image, an action (index or vector), reward and episode flags, with
    `latent=(deter, stoch)` the step's latent state for replay context, and with `mask=n` the legal actions."""
    return Step(tuple(image_shape), tuple(action_shape), action_dtype, tuple(latent) if latent else None, mask)


MISSING = {"action_mask": 0xFF}
"""The value of a field a step or an older chunk lacks, where it is not zero: an unknown mask allows all."""


def packed_size(n: int) -> int:
    """Bytes of a packed mask of `n` actions."""
    return (n + 7) // 8


def pack_mask(mask: np.ndarray) -> np.ndarray:
    """Pack bool[..., n] legal actions into uint8[..., ceil(n / 8)], action i in bit i % 8 of byte i // 8.

    The train step unpacks with `jnp.unpackbits(x, axis=-1, count=n, bitorder="little")`.
    """
    return np.packbits(np.asarray(mask, bool), axis=-1, bitorder="little")


def unpack_mask(packed: np.ndarray, n: int) -> np.ndarray:
    """Return bool[..., n] from `pack_mask`'s uint8[..., ceil(n / 8)]."""
    return np.unpackbits(packed, axis=-1, count=n, bitorder="little").astype(bool)


def _packed_masks(spec: Step, steps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pack the `action_mask` of a step or of a block of steps unless it is packed already (the env gives
    bools, and so do chunks written before masks were packed)."""
    mask = steps.get("action_mask")
    if spec.mask is None or mask is None:
        return steps
    mask = np.asarray(mask)
    if mask.dtype == np.uint8 and mask.shape[-1] == packed_size(spec.mask):  # (one action: 0/1 = its bit)
        return steps
    return {**steps, "action_mask": pack_mask(mask)}  # bools, or 0/1 integers


def _chunk_name(stream: int, start: int, steps: int) -> str:
    return f"chunk-{stream:02d}-{start:012d}-{steps:06d}.npz"


class _Stream:
    """One actor's ring buffer. `count` numbers the steps ever appended; the newest `size` are in RAM."""

    def __init__(self, spec: Step, capacity: int) -> None:
        self.capacity = capacity
        self.data = {k: np.zeros((capacity, *shape), dtype) for k, (shape, dtype) in spec.fields().items()}
        self.count = 0
        self.size = 0

    def append(self, step: dict[str, np.ndarray]) -> None:
        i = self.count % self.capacity
        for key, array in self.data.items():
            array[i] = step.get(key, MISSING.get(key, 0))  # a latent not given is zero, with latent_ok False
        self.count += 1
        self.size = min(self.size + 1, self.capacity)

    def extend(self, start: int, steps: dict[str, np.ndarray]) -> int:
        """Append a block of steps numbered from `start`; return the number it got. After a gap (a chunk that
        was never written or is damaged) the block follows the steps before it, as a new sequence (is_first):
        numbered from `start`, the steps before the gap could no longer be sampled."""
        n = len(steps["reward"])
        if start != self.count:
            steps = {**steps, "is_first": steps["is_first"].copy()}
            steps["is_first"][0] = True
            if self.size == 0:
                self.count = start  # the first block: its own numbering
        start = self.count
        idx = np.arange(self.count, self.count + n) % self.capacity
        for key, array in self.data.items():
            array[idx] = steps.get(key, MISSING.get(key, 0))  # chunks without latents load with latent_ok False
        self.count += n
        self.size = min(self.size + n, self.capacity)
        return start

    def window(self, start: int, length: int) -> dict[str, np.ndarray]:
        """Return steps [start, start + length) by their global index (all must still be in RAM)."""
        out = {k: np.empty((1, length, *v.shape[1:]), v.dtype) for k, v in self.data.items()}
        self.copy_window(start, out, 0)
        return {k: v[0] for k, v in out.items()}

    def copy_window(self, start: int, out: dict[str, np.ndarray], row: int) -> None:
        """Copy steps [start, start + L) into row `row` of each [B, L, ...] array in `out`."""
        lo = start % self.capacity
        for k, v in self.data.items():
            dst = out[k][row]
            if lo + len(dst) <= self.capacity:  # contiguous in the ring: a plain copy, much faster than a gather
                dst[...] = v[lo:lo + len(dst)]
            else:
                np.take(v, np.arange(lo, lo + len(dst)) % self.capacity, axis=0, out=dst)


class Replay:
    """Sequence replay over several streams with an online queue and on-disk chunks."""

    def __init__(self, spec: Step, *, capacity: int, length: int, streams: int = 1, directory: Path | None = None,
                 chunk_steps: int = 1024, seed: int = 0, context: int = 0) -> None:
        """`length`: steps per sampled sequence, of which the first `context` only give the starting latent
        (replay context); the online queue steps by `length - context`, so every new step is trained once."""
        if capacity // streams < length + chunk_steps:
            raise ValueError(f"replay capacity {capacity} is too small for {streams} streams of sequences of "
                             f"{length} steps with {chunk_steps}-step chunks")
        if not 0 <= context < length:
            raise ValueError(f"replay context {context} must be below the sequence length {length}")
        self.spec, self.length, self.chunk_steps = spec, length, chunk_steps
        self.stride = length - context
        self.directory = directory
        self._streams = [_Stream(spec, capacity // streams) for _ in range(streams)]
        # Sequences not yet trained on. Bounded by what the ring can still hold: while nothing samples (a paused
        # learner, for days), the oldest entries, already overwritten, drop out instead of piling up.
        self._online: collections.deque[tuple[int, int]] = collections.deque(
            maxlen=sum(s.capacity // self.stride + 1 for s in self._streams))
        self._next_online = [0] * streams
        self._saved_upto = [0] * streams
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self.inserted = 0
        self.sampled_sequences = 0
        self.write_errors = 0
        self._writes: queue.Queue[tuple[int, int, dict[str, np.ndarray] | int] | None] = queue.Queue(WRITE_QUEUE)
        # Queued chunks, the one being written and the one filling all fit in the ring: none can be overwritten.
        self._lazy_copy = capacity // streams >= (WRITE_QUEUE + 3) * chunk_steps
        self._writer: threading.Thread | None = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            for stale in directory.glob(".chunk-*.npz.tmp"):  # a write cut short by a kill -9
                stale.unlink(missing_ok=True)
            self._writer = threading.Thread(target=self._write_loop, name="replay-writer", daemon=True)
            self._writer.start()

    # -- writing ------------------------------------------------------------------------------------------

    def add(self, step: dict[str, np.ndarray], stream: int = 0) -> None:
        """Append one step (keys: image, action, reward, is_first, is_last, is_terminal) to `stream`."""
        s = self._streams[stream]
        step = _packed_masks(self.spec, step)
        with self._lock:
            s.append(step)
            self.inserted += 1
            # A new non-overlapping sequence is complete: queue it for the online selector.
            while s.count - self._next_online[stream] >= self.length:
                self._online.append((stream, self._next_online[stream]))
                self._next_online[stream] += self.stride
            chunk = None
            if self.directory is not None and s.count - self._saved_upto[stream] >= self.chunk_steps:
                start = self._saved_upto[stream]
                # The writer thread copies the finished steps out of the ring itself when they cannot be
                # overwritten before it gets to them: the actor then never pays the ~10 MB copy.
                chunk = (start, self.chunk_steps if self._lazy_copy else s.window(start, self.chunk_steps))
                self._saved_upto[stream] += self.chunk_steps
        if chunk is not None:
            self._queue_write(stream, *chunk)

    def _queue_write(self, stream: int, start: int, data: dict[str, np.ndarray] | int) -> None:
        """Hand steps [start, ...) of `stream` to the writer: their copy, or their count to copy there."""
        if self._writer is None or not self._writer.is_alive():  # closed: write in the caller's thread
            self._write_chunk(stream, start, self._chunk_data(stream, start, data))
            return
        try:
            self._writes.put_nowait((stream, start, data))
        except queue.Full:
            log.warning("replay chunks are written more slowly than they fill; the actor waits for the disk")
            self._writes.put((stream, start, data))

    def _chunk_data(self, stream: int, start: int, data: dict[str, np.ndarray] | int) -> dict[str, np.ndarray]:
        if not isinstance(data, int):
            return data
        s = self._streams[stream]
        copied = s.window(start, data)  # finished steps: the actor only appends after them, without the lock
        if s.count - start > s.capacity:  # read after the copy: were any overwritten while it ran?
            raise RuntimeError(f"steps {start}..{start + data} left the ring buffer before they were written")
        return copied

    def _write_loop(self) -> None:
        while (item := self._writes.get()) is not None:
            stream, start, data = item
            try:
                self._write_chunk(stream, start, self._chunk_data(stream, start, data))
            except Exception as exc:  # a full or failing disk: the steps stay in RAM and the run goes on
                self.write_errors += 1
                log.error("could not write replay chunk of stream %d at step %d (kept in RAM only): %s: %s",
                          stream, start, type(exc).__name__, exc)
            finally:
                self._writes.task_done()
        self._writes.task_done()

    def flush(self) -> None:
        """Wait until every completed chunk handed to the writer thread is on disk."""
        if self._writer is not None and self._writer.is_alive():
            self._writes.join()

    def _write_chunk(self, stream: int, start: int, data: dict[str, np.ndarray]) -> None:
        assert self.directory is not None
        n = len(data["reward"])
        name = _chunk_name(stream, start, n)
        tmp = self.directory / f".{name}.tmp"
        try:
            with tmp.open("wb") as fh:
                np.savez(fh, **data)
                fh.flush()
                os.fsync(fh.fileno())  # the rename must never publish a file whose bytes are not on disk yet
            tmp.replace(self.directory / name)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk: the partial file would keep the space it took
            raise
        self._prune(stream)

    def _chunks(self) -> dict[int, list[tuple[int, int, Path]]]:
        """Return {stream: [(start, steps, path), ...] newest first} for the chunk files on disk."""
        assert self.directory is not None
        found: dict[int, list[tuple[int, int, Path]]] = collections.defaultdict(list)
        for path in self.directory.glob("chunk-*.npz"):
            try:
                _, stream, start, n = path.stem.split("-")
                found[int(stream)].append((int(start), int(n), path))
            except ValueError:
                log.warning("ignoring unexpected replay file %s", path.name)
        for chunks in found.values():
            chunks.sort(reverse=True)
        return found

    def _prune(self, stream: int) -> None:
        """Delete a stream's chunk files older than its RAM capacity: the disk holds what a restart can load."""
        capacity, total = self._streams[stream].capacity, 0
        for _start, n, path in self._chunks().get(stream, []):
            total += n
            if total > capacity:
                try:
                    path.unlink()
                except OSError as exc:
                    log.warning("could not delete old replay chunk %s: %s", path.name, exc)

    def close(self) -> None:
        """Write the queued chunks and the steps not yet in a chunk, so a clean stop loses nothing."""
        if self.directory is None or self._writer is None:
            return
        with self._lock:
            pending = []
            for i, s in enumerate(self._streams):
                start = self._saved_upto[i]
                if s.count > start:
                    pending.append((i, start, s.window(start, s.count - start)))
                    self._saved_upto[i] = s.count
        for item in pending:
            self._queue_write(*item)
        if self._writer.is_alive():
            self._writes.put(None)
            self._writer.join()
        if self.write_errors:
            log.error("%d replay chunks could not be written; a restart loads only the others", self.write_errors)

    def load(self) -> int:
        """Load the newest chunks from disk back into RAM (up to capacity per stream); return steps loaded."""
        if self.directory is None:
            return 0
        t0 = time.monotonic()
        loaded = 0
        for stream, chunks in self._chunks().items():
            if stream >= len(self._streams):
                log.warning("replay has chunks of stream %d but only %d streams are configured; skipping them",
                            stream, len(self._streams))
                continue
            s = self._streams[stream]
            keep, total = [], 0
            for start, n, path in chunks:
                if total + n > s.capacity:
                    break
                keep.append((start, path))
                total += n
            for start, path in sorted(keep):
                try:
                    with np.load(path) as data:
                        arrays = {k: data[k] for k in s.data if k in data.files or k not in OPTIONAL_KEYS}
                except Exception as exc:  # a torn or foreign file: BadZipFile, EOFError, ...
                    log.warning("deleting damaged replay chunk %s: %s: %s", path.name, type(exc).__name__, exc)
                    path.unlink(missing_ok=True)
                    continue
                placed = s.extend(start, _packed_masks(self.spec, arrays))  # numbering goes on after the newest
                n = len(arrays["reward"])
                loaded += n
                if placed != start:  # a gap was closed: the file takes the number its steps now have
                    try:
                        path.rename(self.directory / _chunk_name(stream, placed, n))
                    except OSError as exc:
                        log.warning("could not rename replay chunk %s after a gap: %s", path.name, exc)
            self._saved_upto[stream] = s.count
            self._next_online[stream] = s.count  # loaded data was trained on before: not queued again
        self.inserted = loaded
        if loaded:
            log.info("loaded %d replay steps from %s in %.1fs", loaded, self.directory, time.monotonic() - t0)
        return loaded

    # -- sampling -----------------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return sum(s.size for s in self._streams)

    def can_sample(self) -> bool:
        return any(s.size >= self.length for s in self._streams)

    def sample(self, batch: int) -> dict[str, np.ndarray]:
        """Return a batch of sequences: each key has shape [batch, length, ...]."""
        return self.sample_with_positions(batch)[0]

    def batch_buffers(self, batch: int) -> dict[str, np.ndarray]:
        """Return arrays for `sample_with_positions(batch, out=...)` to fill, to be reused batch after batch."""
        fields = self._streams[0].data
        return {k: np.empty((batch, self.length, *v.shape[1:]), v.dtype) for k, v in fields.items()}

    def sample_with_positions(self, batch: int, out: dict[str, np.ndarray] | None = None
                              ) -> tuple[dict[str, np.ndarray], list[tuple[int, int]]]:
        """Return a batch as `sample` does, and each sequence's (stream, first step) for `write_latents`.

        With `out` (from `batch_buffers`), the batch is copied into those arrays and they are returned. The
        learner reuses them: a fresh 12 MB batch per update costs page faults while the GIL is held, which
        measurably stalled the actor thread (benchmarks/README.md, train_speed.py).
        """
        if out is None:
            out = self.batch_buffers(batch)
        with self._lock:
            starts = []
            while self._online and len(starts) < batch:
                stream, start = self._online.popleft()
                if start >= self._streams[stream].count - self._streams[stream].size:  # not yet overwritten
                    starts.append((stream, start))
            eligible = [i for i, s in enumerate(self._streams) if s.size >= self.length]
            if not eligible:
                raise RuntimeError("replay holds no complete sequence yet")
            weights = np.array([self._streams[i].size - self.length + 1 for i in eligible], float)
            # (a stream's `size` newest steps are valid; a sequence must lie inside them)
            while len(starts) < batch:
                stream = eligible[self._rng.choice(len(eligible), p=weights / weights.sum())]
                s = self._streams[stream]
                oldest = s.count - s.size
                starts.append((stream, int(self._rng.integers(oldest, s.count - self.length + 1))))
            for row, (i, start) in enumerate(starts):
                self._streams[i].copy_window(start, out, row)
            self.sampled_sequences += batch
        return out, starts

    def write_latents(self, positions: list[tuple[int, int]], deter: np.ndarray, stoch: np.ndarray,
                      offset: int = 0) -> int:
        """Store the latents computed in training for steps start+offset.. of each sampled sequence.

        deter float[B, L, deter], stoch int[B, L, stoch]; steps overwritten since sampling are skipped.
        Returns the number of steps written.
        """
        written = 0
        with self._lock:
            for (stream, start), d, z in zip(positions, deter, stoch, strict=True):
                s = self._streams[stream]
                steps = np.arange(start + offset, start + offset + len(d))
                keep = steps >= s.count - s.size
                idx = steps[keep] % s.capacity
                s.data["deter"][idx] = d[keep]
                s.data["stoch"][idx] = z[keep]
                s.data["latent_ok"][idx] = True
                written += int(keep.sum())
        return written

    def ram_bytes(self) -> int:
        return sum(a.nbytes for s in self._streams for a in s.data.values())
