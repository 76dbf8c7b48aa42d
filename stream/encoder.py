"""One ffmpeg process fed raw RGB frames on stdin, with its stderr drained, redacted and logged."""

from __future__ import annotations

import collections
import logging
import re
import subprocess
import threading
import time

from stream.ffmpeg_args import redact

__all__ = ["EncoderProcess"]

log = logging.getLogger(__name__)


_SINK_FAILED = re.compile(r"Slave muxer #(\d+) failed: (.*?)(?:, continuing with \d+/\d+ slaves\.?)?$")
"""ffmpeg's tee on a sink with onfail=ignore that failed (at its opening or later)."""


_QUIET = re.compile(r"Thread message queue blocking")
"""ffmpeg warnings that are expected and say nothing wrong: the short raw-frame queue fills while an ingest
connects (the pacer waits meanwhile)."""


class EncoderProcess:
    """Owns one ffmpeg child. `write` blocks while ffmpeg is busy; `stop` never deadlocks.

    stderr is read by a thread (an undrained pipe would block ffmpeg) and every line is redacted
    before it is logged or kept, because ffmpeg prints the full output URL, stream key included.
    """

    def __init__(self, argv: list[str], secrets: tuple[str, ...] = ()) -> None:
        self._secrets = secrets
        log.debug("starting %s", redact(" ".join(argv), secrets))
        # A new session keeps the terminal's Ctrl-C away from ffmpeg: the app decides when it stops.
        # If the app dies (even by kill -9), stdin reaches EOF and ffmpeg ends by itself (-shortest).
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0, start_new_session=True)
        self.pid = self.proc.pid
        self.started_at = time.monotonic()
        self.errors: collections.deque[str] = collections.deque(maxlen=20)
        self.kill_reason = ""
        self.progress: dict[str, str] = {}
        """The newest complete block of ffmpeg's -progress output (bitrate, total_size, speed, ...)."""
        self.progress_at: float | None = None
        self.failed_sinks: dict[int, str] = {}
        """Sinks of a tee output that failed while ffmpeg goes on with the others: index -> ffmpeg's reason."""
        self._stderr = threading.Thread(target=self._drain, name=f"ffmpeg-stderr-{self.pid}", daemon=True)
        self._stdout = threading.Thread(target=self._read_progress, name=f"ffmpeg-progress-{self.pid}",
                                        daemon=True)
        self._stderr.start()
        self._stdout.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            line = redact(raw.decode(errors="replace").rstrip(), self._secrets)
            if line and _QUIET.search(line):
                log.debug("ffmpeg[%d]: %s", self.pid, line)
            elif line:
                self.errors.append(line)
                log.warning("ffmpeg[%d]: %s", self.pid, line)
                failed = _SINK_FAILED.search(line)
                if failed:
                    self.failed_sinks.setdefault(int(failed[1]), failed[2])

    def _read_progress(self) -> None:
        assert self.proc.stdout is not None
        block: dict[str, str] = {}
        for raw in iter(self.proc.stdout.readline, b""):
            key, _, value = raw.decode(errors="replace").strip().partition("=")
            block[key] = value
            if key == "progress":  # the last line of each block
                self.progress, self.progress_at, block = block, time.monotonic(), {}

    @property
    def bitrate_kbps(self) -> float | None:
        """The output bitrate ffmpeg reports (None until its first progress block)."""
        text = self.progress.get("bitrate", "").removesuffix("kbits/s")
        try:
            return float(text)
        except ValueError:
            return None

    @property
    def last_error(self) -> str:
        return self.errors[-1] if self.errors else ""

    def is_running(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def write(self, data: memoryview) -> None:
        """Write all of `data` to ffmpeg's stdin; raises OSError (BrokenPipeError) when ffmpeg is gone."""
        stdin = self.proc.stdin
        assert stdin is not None
        view = data.cast("B") if data.format != "B" else data
        while view.nbytes:
            n = stdin.write(view)
            if n is None:  # pragma: no cover - only for non-blocking pipes
                continue
            view = view[n:]

    def kill(self, reason: str = "") -> None:
        """Kill ffmpeg at once (the watchdog does when a write hangs); `reason` is kept for health reports."""
        if self.is_running():
            self.kill_reason = self.kill_reason or reason
            self.proc.kill()

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """End ffmpeg: close stdin so it finishes the file, then SIGTERM, then SIGKILL. Returns its code.

        Call only when no thread is writing: closing a pipe that another thread is blocked on can deadlock,
        so callers kill first if their writer may be stuck.
        """
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except OSError:
            pass
        for action in (None, self.proc.terminate, self.proc.kill):
            if action is not None and self.is_running():
                action()
            try:
                self.proc.wait(timeout=timeout_s)
                break
            except subprocess.TimeoutExpired:
                continue
        self._stderr.join(timeout=2.0)
        self._stdout.join(timeout=2.0)
        for pipe in (self.proc.stderr, self.proc.stdout):
            if pipe:
                pipe.close()
        return self.proc.returncode
