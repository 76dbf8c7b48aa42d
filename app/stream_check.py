"""`dreamstream stream test`: stream a test card to a target so a streamer can check the setup before
going live. With `--target local` the stream goes to a local nginx-rtmp server and is read back and
checked (codec, size, frame rate, keyframe interval, audio); for a remote target, what was sent is
reported and any refusal or drop fails the check.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from app.config import Config
from overlays import Layout, fallback_frame
from stream import Broadcaster, LocalRtmpServer, check_ffmpeg, output_for

__all__ = ["make_test_card", "run_stream_test"]

log = logging.getLogger(__name__)


def make_test_card(layout: Layout, t: float, base: np.ndarray | None = None) -> np.ndarray:
    """Return a test card: colour bars, a sweeping marker and a running clock (motion shows dropped frames)."""
    img = (base if base is not None else fallback_frame(layout, "DreamStream test card")).copy()
    h, w = layout.height, layout.width
    bars = [(235, 235, 235), (235, 235, 16), (16, 235, 235), (16, 235, 16), (235, 16, 235), (235, 16, 16),
            (16, 16, 235)]
    bar_w = w // len(bars)
    for i, colour in enumerate(bars):
        img[int(h * 0.72): int(h * 0.8), i * bar_w:(i + 1) * bar_w] = colour
    x = int((math.sin(t * 2.0) * 0.45 + 0.5) * (w - 60))
    cv2.rectangle(img, (x, int(h * 0.62)), (x + 60, int(h * 0.7)), (255, 170, 60), -1)
    clock = time.strftime("%H:%M:%S", time.localtime()) + f".{int((t % 1) * 10)}"
    cv2.putText(img, clock, (int(w * 0.4), int(h * 0.9)), cv2.FONT_HERSHEY_SIMPLEX, h / 480, (235, 235, 235), 2,
                cv2.LINE_AA)
    return img


def _probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", str(path)],
                         capture_output=True, text=True, timeout=60, check=True)
    keys = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-skip_frame", "nokey", "-show_entries",
                           "frame=pts_time", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                          timeout=60, check=True).stdout.split()
    times = [float(k.strip(",")) for k in keys if k.strip(",")]
    return {"streams": json.loads(out.stdout)["streams"],
            "keyframe_interval_s": float(np.mean(np.diff(times))) if len(times) > 1 else None}


def run_stream_test(cfg: Config, target: str, seconds: float) -> int:
    """Stream the test card for `seconds`; return 0 if the target took the whole stream, else 1."""
    s = replace(cfg.stream, target="file" if target == "local" else target, record=False, hls=False,
                restart_backoff_max_s=2.0)
    check_ffmpeg(s.ffmpeg_path)
    layout = Layout(width=s.width, height=s.height, title="DreamStream stream test")
    base = fallback_frame(layout, "DreamStream test card")
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalRtmpServer(Path(tmp) / "nginx").start() if target == "local" else None
        try:
            out = output_for(s, Path(tmp), url=server.url("test") if server else None)
            b = Broadcaster(s, out)
            b.start()
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                b.offer(make_test_card(layout, time.monotonic() - t0, base))
                time.sleep(1 / s.fps)
            health = b.health()
            b.close()
            received = _probe(server.recordings("test")[-1]) if server and server.recordings("test") else None
        finally:
            if server is not None:
                server.stop()
    return _report(s, out.shown, seconds, health, received)


def _report(s, shown: str, seconds: float, health: dict, received: dict | None) -> int:
    problems = []
    if health["frames_written"] == 0:
        problems.append("no frame was accepted")
    if health["restarts"]:
        problems.append(f"the target dropped or refused the stream {health['restarts']} time(s): "
                        f"{health['last_error'] or 'ffmpeg exited'}")
    expected = round(seconds * s.fps)
    lines = [f"target      {shown}",
             f"sent        {s.width}x{s.height} @ {s.fps} fps, x264 {s.preset} main CBR {s.bitrate_kbps} kbps, "
             f"keyframe every {s.keyframe_interval_s:g} s, AAC {s.audio_bitrate_kbps} kbps",
             f"frames      {health['frames_written']} written of ~{expected} "
             f"({health['frames_repeated']} repeated, {health['frames_dropped']} dropped)",
             f"bitrate     {health.get('bitrate_kbps') or '-'} kbps reported by ffmpeg"]
    if received is not None:
        video = next((x for x in received["streams"] if x["codec_type"] == "video"), {})
        audio = next((x for x in received["streams"] if x["codec_type"] == "audio"), {})
        lines.append(f"received    {video.get('codec_name')} {video.get('profile')} {video.get('width')}x"
                     f"{video.get('height')} @ {video.get('r_frame_rate')}, keyframes every "
                     f"{received['keyframe_interval_s'] or 0:.2f} s, audio {audio.get('codec_name')} "
                     f"{audio.get('profile')}")
        if (video.get("width"), video.get("height")) != (s.width, s.height):
            problems.append("the received size differs from the one sent")
        if received["keyframe_interval_s"] and abs(received["keyframe_interval_s"] - s.keyframe_interval_s) > 0.1:
            problems.append("the received keyframe interval differs from the one sent")
        if audio.get("codec_name") != "aac":
            problems.append("no AAC audio was received")
    for line in lines:
        print(line)
    if problems:
        print("FAILED: " + "; ".join(problems))
        return 1
    print("OK: the target took the whole test stream")
    return 0
