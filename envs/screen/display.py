"""The X display a screen env plays on: `VirtualDisplay` (a private Xvfb that picks its own free display number)
and `Screen` (a display with screen capture, XTEST input and the programs started on it, closed together).
Game logic lives in the envs, not here."""

from __future__ import annotations

import logging
import os
import select
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from envs.errors import EnvError
from envs.screen.actuator import XInput
from envs.screen.capture import Region, ScreenCapture
from envs.screen.processes import ChildProcess

__all__ = ["Screen", "VirtualDisplay"]

log = logging.getLogger(__name__)

XVFB_START_TIMEOUT_S = 20.0
"""How long Xvfb may take to report its display number (it takes about 0.1 s)."""


def _read_line(fd: int, timeout_s: float) -> str | None:
    """Return the first line written to pipe `fd`, or None on EOF or timeout."""
    data = b""
    deadline = time.monotonic() + timeout_s
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return None
        chunk = os.read(fd, 64)
        if not chunk:
            return None
        data += chunk
    return data.decode().strip()


class VirtualDisplay:
    """A private Xvfb (`Xvfb -displayfd`, so it takes the first free display number); `name` is like ':3'.

    Started without `-auth`, it accepts local clients without a cookie, so no Xauthority file is needed; with
    `-noreset`, because a server reset when its last client leaves drops clients that connect meanwhile.
    `close()` stops it (also at garbage collection or exit).
    """

    def __init__(self, size: tuple[int, int] = (1024, 768)) -> None:
        xvfb = shutil.which("Xvfb")
        if xvfb is None:
            raise EnvError("Xvfb not found on PATH; install it (apt install xvfb) or give the env an existing "
                           "display such as ':0'")
        self._dir = tempfile.TemporaryDirectory(prefix="dreamstream-xvfb-")
        read_fd, write_fd = os.pipe()
        try:
            self.process = ChildProcess(
                [xvfb, "-displayfd", str(write_fd), "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp",
                 "-noreset"],
                name="Xvfb", log_path=Path(self._dir.name) / "xvfb.log", pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        try:
            number = _read_line(read_fd, XVFB_START_TIMEOUT_S)
        finally:
            os.close(read_fd)
        if not number:
            tail = self.process.log_tail()
            self.close()
            raise EnvError(f"Xvfb did not report a display number within {XVFB_START_TIMEOUT_S:.0f} s "
                           f"(its output: {tail or 'none'}); check that Xvfb runs on this machine")
        self.name = f":{number}"
        self.size = size
        log.info("started Xvfb on %s (%dx%d, pid %d)", self.name, size[0], size[1], self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        self.process.close()
        self._dir.cleanup()


class Screen:
    """An X display an env plays on, a private Xvfb when `display` is '', with capture and input.

    Programs started with `start()` get this display in their environment and are stopped by `close()`,
    before the display itself.
    """

    def __init__(self, display: str = "", size: tuple[int, int] = (1024, 768)) -> None:
        self.virtual = VirtualDisplay(size) if not display else None
        self.name = display or self.virtual.name
        self.programs: list[ChildProcess] = []
        self._capture: ScreenCapture | None = None
        self._input: XInput | None = None
        try:
            self._capture = ScreenCapture(self.name)
            self._input = XInput(self.name)
        except EnvError:
            self.close()
            raise

    @property
    def region(self) -> Region:
        """The whole screen."""
        assert self._capture is not None
        return self._capture.screen

    def check_region(self, region: Region, key: str) -> None:
        """Raise EnvError when `region` (config key `key`) does not fit on the screen."""
        assert self._capture is not None
        self._capture.check_region(region, key)

    def start(self, argv: Sequence[str], *, name: str, env: Mapping[str, str] | None = None,
              cwd: str | Path | None = None, log_path: str | Path | None = None) -> ChildProcess:
        """Start a program on this display; it inherits this process's environment plus `env` and DISPLAY."""
        if shutil.which(argv[0], path=(env or os.environ).get("PATH")) is None:
            raise EnvError(f"{name}: program {argv[0]!r} not found on PATH; install it or give its full path")
        child_env = {**os.environ, **(env or {}), "DISPLAY": self.name}
        program = ChildProcess(argv, name=name, env=child_env, cwd=cwd, log_path=log_path)
        self.programs.append(program)
        return program

    def grab(self, region: Region) -> np.ndarray:
        """Return the RGB pixels of `region`, uint8[height, width, 3]."""
        assert self._capture is not None
        return self._capture.grab(region)

    def click(self, x: int, y: int) -> None:
        assert self._input is not None
        self._input.click(x, y)

    def move(self, x: int, y: int) -> None:
        assert self._input is not None
        self._input.move(x, y)

    def press(self, keys: Sequence[str]) -> None:
        assert self._input is not None
        self._input.press(keys)

    def keycode(self, name: str) -> int:
        """Return the keycode of key `name`, or raise EnvError naming the valid forms."""
        assert self._input is not None
        return self._input.keycode(name)

    def close(self) -> None:
        """Stop the programs, drop the connections and stop a private Xvfb; safe to call twice."""
        for program in reversed(self.programs):
            program.close()
        for part in (self._input, self._capture):
            if part is not None:
                part.close()
        self._input = self._capture = None
        if self.virtual is not None:
            self.virtual.close()
