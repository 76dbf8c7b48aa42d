"""`ReplayDevice`: recorded frames in place of a live game window, for tests and detector calibration.

It serves frames in order (looping at the end, or from the start again after `rewind()`), records every tap
with its time, and runs on a virtual clock: `sleep` advances time instantly, so an env paced at 2 Hz replays as
fast as the frames can be read and the tap times are exact.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from envs.errors import EnvError
from envs.screen.detectors import load_png

__all__ = ["ReplayDevice", "Tap"]

log = logging.getLogger(__name__)

TAPS_KEPT = 10_000
"""Taps a ReplayDevice keeps in memory (the newest); older ones are dropped, counted in `tap_count`."""


class Tap(NamedTuple):
    """A tap the env sent: virtual time in seconds and window pixel coordinates."""

    t_s: float
    x: int
    y: int


class ReplayDevice:
    """Frames from a directory of PNGs (served in file-name order) or from a list of uint8[H, W, 3] RGB arrays.

    All frames must have the size of the first; `size` is (width, height). `taps` lists what was tapped.
    """

    def __init__(self, frames: str | Path | Sequence[np.ndarray]) -> None:
        if isinstance(frames, str | Path):
            self._paths = sorted(Path(frames).glob("*.png"))
            if not self._paths:
                raise EnvError(f"replay directory {str(frames)!r} holds no .png frames; record some with "
                               "`python -m envs.screen.calibrate record` or fix clash.replay_dir")
            self._arrays: list[np.ndarray] = []
        else:
            self._paths = []
            self._arrays = [np.asarray(f) for f in frames]
            if not self._arrays:
                raise EnvError("ReplayDevice got an empty list of frames; give at least one uint8[H, W, 3] array")
        first = self._frame(0)
        self.size = (first.shape[1], first.shape[0])
        self.taps: list[Tap] = []
        """The newest taps (at least the last TAPS_KEPT); `tap_count` counts them all."""
        self.tap_count = 0
        self.frames_served = 0
        self._next = 0
        self._t_s = 0.0

    def __len__(self) -> int:
        return len(self._paths) or len(self._arrays)

    def _frame(self, index: int) -> np.ndarray:
        frame = load_png(self._paths[index]) if self._paths else self._arrays[index]
        name = self._paths[index].name if self._paths else f"#{index}"
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise EnvError(f"replay frame {name} is {frame.dtype}{list(frame.shape)}; frames must be "
                           "uint8[height, width, 3] RGB")
        if index and (frame.shape[1], frame.shape[0]) != self.size:
            raise EnvError(f"replay frame {name} is {frame.shape[1]}x{frame.shape[0]} but the first frame is "
                           f"{self.size[0]}x{self.size[1]}; record every frame from the same window size")
        return frame

    def grab(self) -> np.ndarray:
        """Return the next frame (a copy), starting over after the last."""
        frame = self._frame(self._next)
        self._next = (self._next + 1) % len(self)
        self.frames_served += 1
        return frame.copy()

    def rewind(self) -> None:
        """Serve the first frame next (the clock and the recorded taps go on)."""
        self._next = 0

    def tap(self, x: int, y: int) -> None:
        self.taps.append(Tap(self._t_s, x, y))
        self.tap_count += 1
        if len(self.taps) >= 2 * TAPS_KEPT:  # a replay streamed for days: up to 60 taps a second
            del self.taps[:-TAPS_KEPT]

    def now(self) -> float:
        return self._t_s

    def sleep(self, seconds: float) -> None:
        self._t_s += max(seconds, 0.0)

    def close(self) -> None:
        log.debug("replay closed after %d frames and %d taps", self.frames_served, self.tap_count)
