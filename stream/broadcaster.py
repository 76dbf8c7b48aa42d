"""The supervised, non-blocking broadcast: `offer(frame)` returns at once; a pacer feeds ffmpeg at exactly fps.

The pacer repeats the last frame when the app is slow and drops stale ones when it is fast, so stream
timestamps stay wall-clock true and training never waits on the encoder. A dead or stalled ffmpeg is
restarted with exponential backoff and jitter while `offer` keeps working.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from stream.config import StreamConfig
from stream.encoder import EncoderProcess
from stream.ffmpeg_args import RECORDING_NAME, Output, ffmpeg_argv

__all__ = ["Broadcaster", "prune_recordings"]

log = logging.getLogger(__name__)

INGEST_RETRY_MAX_S = 600.0
"""Longest wait between retries of an ingest that fails while the recording and the preview go on."""
STABLE_AFTER_S = 60.0
"""An encoder that ran this long resets the backoff to its first step."""
NETWORK_ERRORS = ("connection refused", "timed out", "no route to host", "network is unreachable",
                  "name or service not known", "temporary failure in name resolution", "cannot open connection")
"""ffmpeg's words for a failure to reach the server at all (lower case)."""
PRUNE_EVERY_S = 60.0


def prune_recordings(directory: Path, keep_mb: int, pattern: str = "stream-*.flv") -> list[Path]:
    """Delete the oldest recordings beyond `keep_mb` in total (never the newest); return what was deleted."""
    if keep_mb <= 0 or not directory.is_dir():
        return []
    # Two pruners share the folder (the stream's pacer and the app's minute job): a file may vanish at any
    # point here, which is no error.
    sizes: list[tuple[float, int, Path]] = []
    for path in directory.glob(pattern):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        sizes.append((st.st_mtime, st.st_size, path))
    sizes.sort(key=lambda x: x[0])
    total = sum(size for _, size, _ in sizes)
    deleted = []
    for _, size, path in sizes[:-1]:
        if total <= keep_mb * 1_000_000:
            break
        total -= size
        path.unlink(missing_ok=True)
        deleted.append(path)
    if deleted:
        log.info("deleted %d old recordings to stay under %d MB", len(deleted), keep_mb)
    return deleted


class _Backoff:
    """Jittered waits between retries, doubling from 1 s up to `longest()` (read at each wait: config)."""

    def __init__(self, longest: Callable[[], float]) -> None:
        self.longest = longest
        self.reset()

    def reset(self) -> None:
        self._s = 1.0

    def next(self) -> float:
        delay = min(self._s, self.longest()) * random.uniform(0.8, 1.2)
        self._s = min(self._s * 2, self.longest())
        return delay


class _Probe:
    """Whether the host of an rtmp(s):// URL accepts a TCP connection on its port (1935 / 443 by default), found
    out on a daemon thread: a name lookup can outlast any timeout, and must not hold the pacer or the exit."""

    def __init__(self, url: str, timeout_s: float = 3.0) -> None:
        self.reachable = False
        self.done = threading.Event()
        threading.Thread(target=self._run, args=(url, timeout_s), name="stream-ingest-probe", daemon=True).start()

    def _run(self, url: str, timeout_s: float) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "rtmps" else 1935)
            with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
                self.reachable = True
        except (OSError, ValueError):
            pass
        finally:
            self.done.set()


class Broadcaster:
    """Feeds composed frames to a supervised ffmpeg at a fixed rate."""

    def __init__(self, cfg: StreamConfig, output: Output, *, recordings_dir: Path | None = None,
                 hls_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.output = output
        self.recordings_dir = recordings_dir
        self.hls_dir = hls_dir
        self._shape = (cfg.height, cfg.width, 3)
        self._lock = threading.Lock()
        self._latest: np.ndarray | None = None
        self._latest_is_new = False
        self._stop = threading.Event()
        self._tick = threading.Condition()
        self._ticks = 0
        self._thread: threading.Thread | None = None
        self._reconnect_reason = ""
        self._ingest_retry = False
        self._wake = threading.Event()  # the operator asked to reconnect now
        self._backoff = _Backoff(lambda: cfg.restart_backoff_max_s)
        # An ingest failing while the other outputs run is retried up to INGEST_RETRY_MAX_S apart, beyond
        # restart_backoff_max_s: a server that refuses the publish (a wrong key) would otherwise cut the preview and
        # start a new recording file every restart_backoff_max_s for as long as it refuses.
        self._ingest_backoff = _Backoff(lambda: max(INGEST_RETRY_MAX_S, cfg.restart_backoff_max_s))
        self._watchdog: threading.Thread | None = None
        self._encoder: EncoderProcess | None = None
        self._write_started: float | None = None
        self._state = "stopped"
        self._counts = {"frames_offered": 0, "frames_written": 0, "frames_repeated": 0, "frames_dropped": 0,
                        "restarts": 0, "stalls": 0, "scheduled_reconnects": 0}
        self._last_error = ""
        self._live_since: float | None = None
        self._started_at: float | None = None

    # -- producer side ------------------------------------------------------------------------------------

    def offer(self, frame: np.ndarray) -> None:
        """Make `frame` (uint8[height, width, 3]) the next one to send. O(1); never blocks on ffmpeg.

        The broadcaster keeps a reference: do not mutate the array after offering it.
        """
        if frame.shape != self._shape or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8{list(self._shape)}, got {frame.dtype}{list(frame.shape)}")
        with self._lock:
            if self._latest_is_new:
                self._counts["frames_dropped"] += 1
            self._latest = frame
            self._latest_is_new = True
            self._counts["frames_offered"] += 1

    def wait_tick(self, timeout_s: float) -> bool:
        """Wait until the pacer has sent a frame (True), or `timeout_s` passed (False).

        A producer that composes right after each tick offers exactly one fresh frame per frame sent, so
        nothing is dropped or repeated; when the encoder is down, the timeout keeps the producer going.
        """
        with self._tick:
            seen = self._ticks
            return self._tick.wait_for(lambda: self._ticks != seen, timeout=timeout_s)

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._started_at = time.monotonic()
        self._state = "starting"
        self._thread = threading.Thread(target=self._run, name="stream-pacer", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="stream-watchdog", daemon=True)
        self._thread.start()
        self._watchdog.start()
        log.info("stream started: %dx%d@%d %s %d kbps -> %s", self.cfg.width, self.cfg.height, self.cfg.fps,
                 self.cfg.preset, self.cfg.bitrate_kbps, self.output.shown)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop pacing and end ffmpeg (no orphan process is left behind)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s / 2)
            if self._thread.is_alive():
                # The pacer is stuck in a write: killing ffmpeg breaks the pipe and frees it.
                encoder = self._encoder
                if encoder is not None:
                    encoder.kill("shutting down while a frame write hung")
                self._thread.join(timeout=timeout_s / 2)
        if self._watchdog is not None:
            self._watchdog.join(timeout=2.0)
        self._thread = self._watchdog = None
        self._state = "stopped"
        self._live_since = None

    # -- pacer and supervision ----------------------------------------------------------------------------

    def _next_frame(self) -> np.ndarray | None:
        with self._lock:
            frame = self._latest
            if frame is not None and not self._latest_is_new:
                self._counts["frames_repeated"] += 1
            self._latest_is_new = False
        return frame

    def _spawn(self) -> EncoderProcess | None:
        self._wait_for_a_new_recording_name()
        if self._stop.is_set():
            return None  # closed meanwhile: no ffmpeg for a stopping broadcaster
        try:
            return EncoderProcess(ffmpeg_argv(self.cfg, self.output), self.output.secrets)
        except OSError as exc:
            self._last_error = f"cannot start ffmpeg: {exc}"
            log.error("%s", self._last_error)
            return None

    def _run(self) -> None:
        self._backoff.reset()
        self._clear_hls()  # a previous session's
        blank = np.full(self._shape, 40, np.uint8)
        while not self._stop.is_set():
            try:
                encoder = self._spawn()
                if encoder is None and self._stop.is_set():
                    break
                if encoder is not None:
                    self._encoder = encoder
                    self._state = "connecting"
                    self._pace(encoder, blank)
                    self._encoder = None
                    self._live_since = None
                    if not self._stop.is_set():
                        self._state = "connecting"  # not "live" while this one stops and the next one starts
                    code = encoder.stop(timeout_s=5.0)
                    ran_s = time.monotonic() - encoder.started_at
                    if self._stop.is_set():
                        break
                    self._clear_hls()  # its playlist must not outlive it (a player would ask for gone segments)
                    if self._reconnect_reason:
                        log.info("reconnected the stream: %s", self._reconnect_reason)
                        self._reconnect_reason = ""
                        self._counts["scheduled_reconnects"] += 1
                        self._backoff.reset()  # it had been live for hours: a failure now starts the backoff afresh
                        continue  # a planned reconnect: no backoff, not counted as a failure
                    if self._ingest_retry:  # the local outputs ran on while it waited: retry the ingest at once
                        self._ingest_retry = False
                        self._counts["restarts"] += 1
                        log.info("retrying the ingest %s", self.output.shown)
                        continue
                    self._last_error = self._hinted(
                        encoder.kill_reason or encoder.last_error or f"ffmpeg exited with code {code}", ran_s)
                    log.warning("ffmpeg ended after %.1fs (code %s): %s", ran_s, code, self._last_error)
                    if ran_s >= STABLE_AFTER_S:
                        self._backoff.reset()
            except Exception as exc:  # a bug here must never end the broadcast: log it, restart the encoder
                log.exception("stream loop error; restarting the encoder")
                self._last_error = f"internal error: {type(exc).__name__}: {exc}"
                self._abandon_encoder()
                self._clear_hls()
            self._counts["restarts"] += 1
            self._state = "reconnecting"
            self._live_since = None
            delay = self._backoff.next()
            log.info("restarting ffmpeg in %.1fs", delay)
            until = time.monotonic() + delay
            while not self._stop.is_set() and not self._wake.is_set() and time.monotonic() < until:
                self._stop.wait(min(0.2, until - time.monotonic()))
            if self._wake.is_set():
                self._wake.clear()
                log.info("restarting ffmpeg now, as the operator asked")

    def reconnect_now(self) -> str:
        """The operator's "reconnect now": restart the encoder at once, whether it is waiting out a backoff (a
        Twitch outage is over), retrying a failed ingest, or live (Twitch shows nothing). Returns what happens."""
        self._backoff.reset()
        self._ingest_backoff.reset()
        self._wake.set()
        return "restarting the live stream (viewers see a short cut)" if self._state == "live" else "reconnecting now"

    def _wait_for_a_new_recording_name(self) -> None:
        """Recordings are named by the second ffmpeg starts: a restart within the same second (a reconnect, an
        ingest retry) overwrote the recording it had just closed. Wait for the next second then (< 1 s)."""
        if self.recordings_dir is None:
            return
        for _ in range(3):
            name = time.strftime(RECORDING_NAME)
            if not (self.recordings_dir / name).exists():
                return
            self._stop.wait(1.0 - time.time() % 1.0 + 0.01)

    def _clear_hls(self) -> None:
        """Delete the previous ffmpeg's HLS playlist and segments: each new one numbers its segments from 0 again,
        and its `delete_segments` only removes its own, so the old ones stayed until reached again (for weeks).
        The playlist goes too: until the new ffmpeg writes its own, it would name deleted segments (a player
        opened then gave up on the 404s); without it, the dashboard shows frames until the preview is back."""
        if self.hls_dir is None or not self.hls_dir.is_dir():
            return
        for pattern in ("*.m3u8*", "*.ts*"):
            for path in self.hls_dir.glob(pattern):
                path.unlink(missing_ok=True)

    def _hinted(self, error: str, ran_s: float) -> str:
        """`error`, with where to look when Twitch ends a stream soon after it starts (a wrong or revoked key);
        not for a network failure (the key is sent only once a connection is made)."""
        if self.cfg.target != "twitch" or ran_s >= STABLE_AFTER_S or any(
                text in error.lower() for text in NETWORK_ERRORS):
            return error
        return (f"{error} (if Twitch keeps ending the stream at once, check TWITCH_STREAM_KEY: "
                "`dreamstream stream test --target twitch`)")

    def _abandon_encoder(self) -> None:
        encoder, self._encoder, self._live_since = self._encoder, None, None
        if encoder is not None:
            try:
                encoder.stop(timeout_s=5.0)
            except Exception:
                log.exception("could not stop ffmpeg after a stream loop error")

    def _pace(self, encoder: EncoderProcess, blank: np.ndarray) -> None:
        period = 1.0 / self.cfg.fps
        started = deadline = time.monotonic()
        last_prune = time.monotonic()
        retry_at: float | None = None  # the ingest failed: when to look whether it is back
        probe: _Probe | None = None
        while not self._stop.is_set() and encoder.is_running():
            if self._wake.is_set():
                self._wake.clear()
                if self.output.ingest_watched and 0 in encoder.failed_sinks:
                    self._ingest_retry = True  # the outputs that ran on are cut once, the ingest is retried
                else:
                    self._reconnect_reason = "asked by the operator"
                return
            frame = self._next_frame()
            data = memoryview(np.ascontiguousarray(blank if frame is None else frame)).cast("B")
            self._write_started = time.monotonic()
            try:
                encoder.write(data)
            except (BrokenPipeError, OSError, ValueError) as exc:
                self._last_error = f"ffmpeg pipe closed: {exc}"
                return
            finally:
                self._write_started = None
            self._counts["frames_written"] += 1
            with self._tick:
                self._ticks += 1
                self._tick.notify_all()
            now = time.monotonic()
            if self.output.ingest_watched and 0 in encoder.failed_sinks:
                if retry_at is None:
                    delay = self._ingest_backoff.next()
                    retry_at = now + delay
                    self._state, self._live_since = "reconnecting", None
                    self._last_error = self._hinted(f"the ingest failed: {encoder.failed_sinks[0]}",
                                                    now - started)
                    log.warning("%s; the recording and the preview go on; retrying it in %.1fs",
                                self._last_error, delay)
                elif now >= retry_at and probe is None:
                    # Restarted only once its server answers: each restart cuts the preview and starts a new
                    # recording file, which a long outage would otherwise do every restart_backoff_max_s.
                    probe = _Probe(self.output.url)
                elif probe is not None and probe.done.is_set():
                    if probe.reachable:
                        self._ingest_retry = True
                        return  # _run starts ffmpeg again at once
                    probe, retry_at = None, now + self._ingest_backoff.next()
            # Live once ffmpeg reports progress: its outputs are open (an RTMP connection was accepted).
            elif self._state != "live" and encoder.progress_at is not None:
                self._state = "live"
                self._live_since = now
                log.info("stream live -> %s", self.output.shown)
            if self._live_since is not None and now - self._live_since >= STABLE_AFTER_S:
                self._backoff.reset()
                self._ingest_backoff.reset()
            if self.output.is_file and self.recordings_dir is not None and now - last_prune > PRUNE_EVERY_S:
                last_prune = now
                prune_recordings(self.recordings_dir, self.cfg.keep_recordings_mb)
            if self._live_since is not None and now - self._live_since > self.cfg.max_session_h * 3600:
                self._reconnect_reason = f"{self.cfg.max_session_h:g} h live (Twitch ends broadcasts at 48 h)"
                return  # _run restarts ffmpeg at once
            deadline += period
            if deadline < now - 1.0:
                deadline = now  # fell far behind (e.g. ffmpeg slow to start): do not burst to catch up
            self._stop.wait(max(0.0, deadline - now))

    def _watch(self) -> None:
        """Kill ffmpeg when one frame write has hung for stall_timeout_s; the pacer then restarts it."""
        while not self._stop.wait(0.5):
            started, encoder = self._write_started, self._encoder
            if started is not None and encoder is not None and \
                    time.monotonic() - started > self.cfg.stall_timeout_s:
                self._counts["stalls"] += 1
                reason = f"ffmpeg stalled: no frame accepted for {self.cfg.stall_timeout_s:.0f}s"
                log.warning("%s; restarting it", reason)
                encoder.kill(reason)
                self._write_started = None

    # -- health -------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Return plain data for the dashboard and overlay: state, counters, last error, uptime."""
        now = time.monotonic()
        encoder = self._encoder
        return {
            "state": self._state,
            "output": self.output.shown,
            **self._counts,
            "last_error": self._last_error,
            "live_s": round(now - self._live_since, 1) if self._live_since else 0.0,
            "uptime_s": round(now - self._started_at, 1) if self._started_at else 0.0,
            "ffmpeg_pid": encoder.pid if encoder is not None and encoder.is_running() else None,
            "bitrate_kbps": encoder.bitrate_kbps if encoder is not None else None,
            "speed": encoder.progress.get("speed", "").strip() or None if encoder is not None else None,
        }
