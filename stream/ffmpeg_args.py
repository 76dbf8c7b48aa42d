"""ffmpeg command lines for the broadcast, built with ffmpeg-python, and the startup check of the binary."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import ffmpeg

from stream.config import StreamConfig
from stream.errors import StreamError

__all__ = ["Output", "check_ffmpeg", "ffmpeg_argv", "output_for", "redact"]

log = logging.getLogger(__name__)

MASK = "***"


@dataclass(frozen=True)
class Output:
    """Where one ffmpeg process writes: a URL, or a strftime file pattern for recording segments."""

    url: str = field(repr=False)
    is_file: bool
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Substrings of `url` (stream keys) that must never be shown."""

    @property
    def shown(self) -> str:
        """The URL with its secrets masked, safe for logs and the dashboard."""
        return redact(self.url, self.secrets)


def redact(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    """Return `text` with every secret replaced by ***; also masks rtmp URL paths after /app/."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    # A stream key is the last path element of an ingest URL; mask it even if it was not declared secret.
    return re.sub(r"(rtmps?://[^\s/]+/app/)[^\s'\":]+", rf"\g<1>{MASK}", text)


def output_for(cfg: StreamConfig, recordings_dir: Path) -> Output:
    """Return the output of the configured target."""
    if cfg.target == "file":
        return Output(url=str(recordings_dir / "stream-%Y%m%d-%H%M%S.flv"), is_file=True)
    if cfg.target == "twitch":
        query = "?bandwidthtest=true" if cfg.twitch_bandwidth_test else ""
        return Output(url=f"{cfg.twitch_ingest_url.rstrip('/')}/{cfg.stream_key}{query}", is_file=False,
                      secrets=(cfg.stream_key,))
    secrets = (cfg.stream_key,) if cfg.stream_key and cfg.stream_key in cfg.target else ()
    return Output(url=cfg.target, is_file=False, secrets=secrets)


def ffmpeg_argv(cfg: StreamConfig, output: Output, *, ffmpeg_path: str | None = None) -> list[str]:
    """Return the argv: raw RGB frames on stdin + silent AAC -> x264 strict CBR, 2 s GOP -> FLV."""
    fps = cfg.fps
    gop = max(1, round(cfg.keyframe_interval_s * fps))
    kbps = cfg.bitrate_kbps
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{cfg.width}x{cfg.height}",
                         framerate=fps, thread_queue_size=512)
    audio = ffmpeg.input("anullsrc=channel_layout=stereo:sample_rate=44100", f="lavfi", thread_queue_size=512)
    options = {
        "vcodec": "libx264", "preset": cfg.preset, "pix_fmt": "yuv420p", "profile:v": "main",
        "b:v": f"{kbps}k", "minrate": f"{kbps}k", "maxrate": f"{kbps}k", "bufsize": f"{2 * kbps}k",
        "x264-params": "nal-hrd=cbr:force-cfr=1", "g": gop, "keyint_min": gop, "sc_threshold": 0, "r": fps,
        "acodec": "aac", "b:a": f"{cfg.audio_bitrate_kbps}k", "ar": 44100, "ac": 2,
        # -shortest ends ffmpeg when stdin closes; the infinite anullsrc would keep it alive otherwise.
        "shortest": None,
    }
    if output.is_file:
        options.update(f="segment", segment_format="flv", segment_time=round(cfg.segment_minutes * 60),
                       strftime=1, reset_timestamps=1, segment_format_options="flvflags=no_duration_filesize")
    else:
        options.update(f="flv", flvflags="no_duration_filesize")
    out = ffmpeg.output(video, audio, output.url, **options).global_args(
        "-hide_banner", "-loglevel", "warning", "-nostats", "-nostdin")
    argv = out.compile(cmd=ffmpeg_path or cfg.ffmpeg_path)
    return argv


def check_ffmpeg(path: str, timeout_s: float = 10.0) -> str:
    """Return ffmpeg's version line, or raise StreamError saying how to get a working ffmpeg."""
    exe = shutil.which(path)
    if exe is None:
        raise StreamError(f"ffmpeg not found ({path!r} is not on PATH); install it with `apt-get install "
                          "ffmpeg` (or `make setup`) or set stream.ffmpeg_path")
    try:
        out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True,
                             timeout=timeout_s, check=True).stdout
        version = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=timeout_s,
                                 check=True).stdout.splitlines()[0]
    except (subprocess.SubprocessError, OSError) as exc:
        raise StreamError(f"{exe} does not run ({exc}); reinstall ffmpeg or set stream.ffmpeg_path") from None
    for encoder in ("libx264", "aac"):
        if f" {encoder} " not in out:
            raise StreamError(f"{exe} lacks the {encoder} encoder; install Debian's ffmpeg package")
    log.debug("ffmpeg: %s", version)
    return version
