"""Measure what ffmpeg holds when its RTMP ingest stalls mid-stream: 720p frames are written to ffmpeg (the
argv the app uses, one RTMP output) for a few seconds, then the local nginx-rtmp is frozen (SIGSTOP) and frames
go on being written until one write blocks for 3 s. Prints one JSON line per raw-frame queue size: the frames
ffmpeg accepted after the freeze, the seconds until a write blocked (what the stall watchdog can see), and
ffmpeg's peak RSS. Not a test.

    .venv/bin/python benchmarks/stream_stall.py [--queues 16 512] [--width 1280 --height 720]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

import stream.ffmpeg_args
from stream import LocalRtmpServer, StreamConfig, output_for


def measure(queue: int, width: int, height: int, fps: int) -> dict:
    stream.ffmpeg_args.PIPE_QUEUE_FRAMES = queue
    cfg = StreamConfig(width=width, height=height, fps=fps, preset="ultrafast", bitrate_kbps=2500, hls=False)
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8).tobytes()
    with tempfile.TemporaryDirectory() as tmp, LocalRtmpServer(Path(tmp) / "nginx") as server:
        argv = stream.ffmpeg_args.ffmpeg_argv(cfg, output_for(cfg, Path(tmp), url=server.url("stall")))
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        written = {"n": 0, "at": time.monotonic()}

        def feed() -> None:
            try:
                while True:
                    proc.stdin.write(frame)
                    written["n"] += 1
                    written["at"] = time.monotonic()
                    time.sleep(1 / fps)
            except (BrokenPipeError, OSError, ValueError):
                return

        threading.Thread(target=feed, daemon=True).start()
        time.sleep(4)  # live
        nginx = psutil.Process(server._proc.pid)
        targets = [nginx, *nginx.children(recursive=True)]
        for p in targets:
            p.send_signal(signal.SIGSTOP)
        frozen_at, before = time.monotonic(), written["n"]
        ffmpeg, peak = psutil.Process(proc.pid), 0.0
        while time.monotonic() - written["at"] < 3.0 and time.monotonic() - frozen_at < 120:
            peak = max(peak, ffmpeg.memory_info().rss / 2**20)
            time.sleep(0.1)
        accepted, blocked_after = written["n"] - before, written["at"] - frozen_at
        for p in targets:
            p.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
    return {"queue_frames": queue, "size": f"{width}x{height}", "frames_accepted_after_stall": accepted,
            "seconds_until_a_write_blocked": round(blocked_after, 1), "ffmpeg_peak_rss_mb": round(peak, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queues", type=int, nargs="+", default=[16, 512])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()
    for queue in args.queues:
        print(json.dumps(measure(queue, args.width, args.height, args.fps)), flush=True)


if __name__ == "__main__":
    main()
