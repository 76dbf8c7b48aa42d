"""Typed settings of the broadcast output (ffmpeg encoder and its target)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Interval

__all__ = ["StreamConfig"]

Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"]


@dataclass(frozen=True, kw_only=True)
class StreamConfig:
    enabled: bool = True
    """Encode and send the broadcast frame at all (off: no ffmpeg is started)."""
    target: str = "file"
    """Where the broadcast goes: 'file' (FLV segments in the run dir), 'local' (a local nginx-rtmp server the
    app starts, which records too), 'twitch', or an rtmp(s):// URL."""
    record: bool = False
    """Also record FLV segments in the run dir when the target is not 'file' (one encode, two outputs)."""
    hls: bool = True
    """Also write a live HLS playlist (2 s segments, last few kept) in the run dir for the dashboard preview."""
    music_path: str = ""
    """Audio file looped under the stream ('' gives a silent AAC track, which ingests still require)."""
    max_session_h: Annotated[float, Interval(gt=0, le=48)] = 47.0
    """Reconnect after this many hours live: Twitch ends a broadcast at 48 h."""
    twitch_ingest_url: str = "rtmp://ingest.global-contribute.live-video.net/app"
    """Twitch ingest base URL; the stream key is appended as the last path element."""
    twitch_bandwidth_test: bool = field(default=False, metadata={"session_only": True})
    """With target 'twitch': add ?bandwidthtest=true so Twitch accepts the stream without showing it. For this
    session only: not saved in the run dir, so the next start goes live."""
    stream_key: str = field(default="", repr=False, metadata={"secret_env": "TWITCH_STREAM_KEY"})
    """Twitch stream key. Secret: read from the environment, never logged or written to the run dir."""
    width: Annotated[int, Interval(ge=320, le=3840)] = 1280
    """Output width in pixels (even)."""
    height: Annotated[int, Interval(ge=180, le=2160)] = 720
    """Output height in pixels (even)."""
    fps: Annotated[int, Interval(ge=1, le=120)] = 30
    """Output frame rate; frames from the app are repeated or dropped to hold it exactly."""
    preset: Preset = "veryfast"
    """x264 preset: 'veryfast' costs about half a core at 720p30; 'ultrafast' gives Constrained Baseline."""
    bitrate_kbps: Annotated[int, Interval(ge=100, le=20_000)] = 4500
    """Strict-CBR video bitrate (Twitch asks 3000-6000 kbps)."""
    keyframe_interval_s: Annotated[float, Interval(gt=0, le=10)] = 2.0
    """Seconds between keyframes (Twitch requires 2)."""
    audio_bitrate_kbps: Annotated[int, Interval(ge=32, le=320)] = 128
    """AAC-LC bitrate of the (silent) audio track that every ingest expects."""
    segment_minutes: Annotated[float, Interval(gt=0, le=1440)] = 10.0
    """Length of each recording segment (FLV segments, and the local server's recording parts)."""
    keep_recordings_mb: Annotated[int, Interval(ge=0)] = 2000
    """Delete the oldest recordings beyond this total size, per folder (recordings/, and rtmp/rec/ of the local
    server, which starts a new file every segment_minutes); 0 keeps all. Checked every minute."""
    ffmpeg_path: str = "ffmpeg"
    """ffmpeg binary, found on PATH unless absolute."""
    stall_timeout_s: Annotated[float, Interval(gt=0, le=600)] = 10.0
    """Restart ffmpeg when it accepts no frame for this long."""
    restart_backoff_max_s: Annotated[float, Interval(gt=0, le=3600)] = 30.0
    """Upper bound of the exponential backoff between ffmpeg restarts."""

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2:
            raise ValueError(f"stream.width x stream.height = {self.width}x{self.height}: must both be even "
                             "(yuv420p needs even sizes)")
        if self.target not in ("file", "local", "twitch") and not self.target.startswith(("rtmp://", "rtmps://")):
            raise ValueError(f"stream.target = {self.target!r}: must be 'file', 'local', 'twitch' or an rtmp(s):// "
                             "URL")
        if self.target == "twitch" and not self.stream_key:
            raise ValueError("stream.target = 'twitch' needs the stream key: set TWITCH_STREAM_KEY in the "
                             "environment or an env file")
