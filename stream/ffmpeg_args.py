"""ffmpeg command lines for the broadcast, built with ffmpeg-python, and the startup check of the binary."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

import ffmpeg

from stream.config import StreamConfig
from stream.errors import StreamError

__all__ = ["RECORDING_NAME", "Output", "Sink", "check_ffmpeg", "ffmpeg_argv", "output_for", "redact"]

log = logging.getLogger(__name__)

MASK = "***"


@dataclass(frozen=True)
class Sink:
    """One place the encoded stream goes: a URL or file pattern and its muxer options."""

    url: str = field(repr=False)
    muxer: str
    options: tuple[tuple[str, str], ...] = ()
    required: bool = True
    """A required sink failing ends ffmpeg (and the supervisor reconnects); others are dropped on failure."""


@dataclass(frozen=True)
class Output:
    """Where one ffmpeg process writes: one or more sinks (several are fed by the tee muxer, one encode)."""

    sinks: tuple[Sink, ...]
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Substrings of the URLs (stream keys) that must never be shown."""

    @property
    def url(self) -> str:
        return self.sinks[0].url

    @property
    def is_file(self) -> bool:
        return self.sinks[0].muxer == "segment"

    @property
    def ingest_watched(self) -> bool:
        """The ingest (the first sink) is optional in the tee so that the recording and the preview go on
        while it is down; the broadcaster watches for its failure and reconnects it."""
        return len(self.sinks) > 1 and not self.sinks[0].required

    @property
    def shown(self) -> str:
        """The primary URL with its secrets masked, safe for logs and the dashboard."""
        extra = f" (+{len(self.sinks) - 1} more)" if len(self.sinks) > 1 else ""
        return redact(self.url, self.secrets) + extra


def redact(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    """Return `text` with every secret replaced by ***, and the last path element of every remote rtmp(s) URL.

    A stream key is the last path element of an ingest URL (Twitch's /app/KEY, YouTube's /live2/KEY, ...):
    it is masked with any query after it, even where it was not declared secret, and also on loopback (a
    local restreamer or a tunnel to an ingest carries the real key).
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return _INGEST_URL.sub(rf"\g<1>{MASK}", text)


# scheme://host/ + at least one path element (the app) + the key, with any query after it
_INGEST_URL = re.compile(r"(rtmps?://[^\s/'\"]+/(?:[^\s/'\"]+/)+)[^\s/'\":|\]?]+(?:\?[^\s'\"|\]]*)?")


PIPE_QUEUE_FRAMES = 16
"""Raw frames ffmpeg's input thread may hold (about half a second); more is memory and delay, not smoothness."""


RECORDING_NAME = "stream-%Y%m%d-%H%M%S.flv"
"""Recording segments' names (strftime: the local time each segment starts)."""


def _segments(cfg: StreamConfig, recordings_dir: Path, required: bool) -> Sink:
    return Sink(str(recordings_dir / RECORDING_NAME), "segment",
                (("segment_format", "flv"), ("segment_time", str(round(cfg.segment_minutes * 60))),
                 ("strftime", "1"), ("reset_timestamps", "1"),
                 ("segment_format_options", "flvflags=no_duration_filesize")), required)


def output_for(cfg: StreamConfig, recordings_dir: Path, hls_dir: Path | None = None, *,
               url: str | None = None) -> Output:
    """Return the outputs of the configured target (`url` overrides it, e.g. a local server's)."""
    flv = (("flvflags", "no_duration_filesize"),)
    secrets: tuple[str, ...] = ()
    if url is not None:
        sinks = [Sink(url, "flv", flv)]
    elif cfg.target == "file":
        sinks = [_segments(cfg, recordings_dir, required=True)]
    elif cfg.target == "twitch":
        query = "?bandwidthtest=true" if cfg.twitch_bandwidth_test else ""
        sinks = [Sink(f"{cfg.twitch_ingest_url.rstrip('/')}/{cfg.stream_key}{query}", "flv", flv)]
        secrets = (cfg.stream_key,)
    elif cfg.target == "local":
        raise ValueError("stream.target 'local' needs the local server's URL (pass url=)")
    else:
        url = cfg.target
        if cfg.stream_key and cfg.stream_key not in url:
            # A custom ingest (YouTube, Kick, a restreamer) takes the key as the last path element, like Twitch.
            base, _, query = url.partition("?")
            url = f"{base.rstrip('/')}/{cfg.stream_key}" + (f"?{query}" if query else "")
        sinks = [Sink(url, "flv", flv)]
        secrets = (cfg.stream_key,) if cfg.stream_key else ()
    if cfg.record and sinks[0].muxer != "segment":
        sinks.append(_segments(cfg, recordings_dir, required=False))
    if cfg.hls and hls_dir is not None:
        sinks.append(Sink(str(hls_dir / "index.m3u8"), "hls",
                          (("hls_time", str(round(cfg.keyframe_interval_s))), ("hls_list_size", "6"),
                           ("hls_flags", "delete_segments+omit_endlist+temp_file")), required=False))
    if len(sinks) > 1 and sinks[0].muxer == "flv":
        # An ingest outage must not take the recording and the dashboard preview down with it (see ingest_watched).
        # rw_timeout: a server that accepts the connection and then says nothing (or a network that stalls without
        # a reset) fails the sink instead of holding the tee, and the other sinks with it, until the watchdog.
        timeout_us = round(max(1.0, cfg.stall_timeout_s / 2) * 1e6)
        sinks[0] = replace(sinks[0], required=False, options=(*sinks[0].options, ("rw_timeout", str(timeout_us))))
    return Output(tuple(sinks), secrets)


def _tee(sinks: tuple[Sink, ...]) -> str:
    parts = []
    for sink in sinks:
        # Explicit both ways: ffmpeg 5.1's tee keeps going without a slave whose onfail is left unset.
        opts = [f"f={sink.muxer}", *(f"{k}={v}" for k, v in sink.options),
                "onfail=abort" if sink.required else "onfail=ignore"]
        parts.append(f"[{':'.join(opts)}]{sink.url}")
    return "|".join(parts)


def ffmpeg_argv(cfg: StreamConfig, output: Output, *, ffmpeg_path: str | None = None) -> list[str]:
    """Return the argv: raw RGB frames on stdin + AAC audio -> x264 strict CBR, 2 s GOP -> the sinks.

    Progress (bitrate, frames, speed) is written as key=value lines to stdout every second.
    """
    fps = cfg.fps
    gop = max(1, round(cfg.keyframe_interval_s * fps))
    kbps = cfg.bitrate_kbps
    # A short queue of raw frames: 512 held 1.5 GB at 720p inside ffmpeg, hid a stalled ingest for ~18 s (the
    # writes went on succeeding) and kept ~18 s of delay once the encoder fell behind.
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{cfg.width}x{cfg.height}",
                         framerate=fps, thread_queue_size=PIPE_QUEUE_FRAMES)
    if cfg.music_path:
        # Its audio only: an MP3's cover art is a second video stream, which FLV refuses (ffmpeg exited, forever).
        audio = ffmpeg.input(cfg.music_path, stream_loop=-1, thread_queue_size=512).audio
    else:
        audio = ffmpeg.input("anullsrc=channel_layout=stereo:sample_rate=44100", f="lavfi", thread_queue_size=512)
    options: dict[str, object] = {
        "vcodec": "libx264", "preset": cfg.preset, "pix_fmt": "yuv420p", "profile:v": "main",
        "b:v": f"{kbps}k", "minrate": f"{kbps}k", "maxrate": f"{kbps}k", "bufsize": f"{2 * kbps}k",
        "x264-params": "nal-hrd=cbr:force-cfr=1", "g": gop, "keyint_min": gop, "sc_threshold": 0, "r": fps,
        "acodec": "aac", "b:a": f"{cfg.audio_bitrate_kbps}k", "ar": 44100, "ac": 2,
        # -shortest ends ffmpeg when stdin closes; the infinite audio input would keep it alive otherwise.
        "shortest": None,
    }
    if len(output.sinks) == 1:
        sink = output.sinks[0]
        options.update(f=sink.muxer, **dict(sink.options))
        target = sink.url
    else:
        # The tee muxer does not ask the encoders for global headers as FLV needs: without this, the FLV's AVC
        # sequence header was empty and the video came in Annex B start codes (ffprobe coped; ingests may not).
        options.update(f="tee", flags="+global_header")
        target = _tee(output.sinks)
    out = ffmpeg.output(video, audio, target, **options).global_args(
        "-hide_banner", "-loglevel", "warning", "-nostats", "-nostdin", "-progress", "pipe:1", "-stats_period", "1")
    return out.compile(cmd=ffmpeg_path or cfg.ffmpeg_path)


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
