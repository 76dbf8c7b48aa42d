"""Measure what `dreamstream run` costs while it runs: CPU cores of the app and of ffmpeg, peak RSS,
env and stream rates. Prints one JSON line. Not a test.

    .venv/bin/python benchmarks/app_cost.py --seconds 60 [-- extra dreamstream options]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

DREAMSTREAM = str(Path(sys.executable).parent / "dreamstream")


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window after warm-up")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds to skip (start-up, numba compile)")
    parser.add_argument("extra", nargs="*", help="options passed to `dreamstream run`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(tmp) / "run"
        proc = subprocess.Popen([DREAMSTREAM, "run", "--logdir", str(logdir), "--dashboard.port", "0", *args.extra],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        app = psutil.Process(proc.pid)
        try:
            time.sleep(args.warmup)
            url = (logdir / "dashboard.url").read_text().strip()

            def status() -> dict:
                with urllib.request.urlopen(url + "api/status", timeout=10) as resp:
                    return json.loads(resp.read())

            def sample() -> tuple[float, float, dict]:
                ffmpeg = [c for c in app.children(recursive=True) if c.name() == "ffmpeg"]
                return cpu_seconds(app), sum(cpu_seconds(c) for c in ffmpeg), status()

            app0, ff0, s0 = sample()
            t0 = time.monotonic()
            peak_rss = 0
            while time.monotonic() - t0 < args.seconds:
                time.sleep(1.0)
                rss = app.memory_info().rss + sum(c.memory_info().rss for c in app.children(recursive=True))
                peak_rss = max(peak_rss, rss)
            app1, ff1, s1 = sample()
            dt = time.monotonic() - t0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        h0, h1 = s0["stream"], s1["stream"]
        print(json.dumps({
            "seconds": round(dt, 1),
            "options": args.extra,
            "app_cores": round((app1 - app0) / dt, 3),
            "ffmpeg_cores": round((ff1 - ff0) / dt, 3),
            "peak_rss_mb": round(peak_rss / 1e6, 1),
            "env_steps_per_s": round((s1["counters"]["env_steps"] - s0["counters"]["env_steps"]) / dt, 2),
            "stream_frames_per_s": round((h1["frames_written"] - h0["frames_written"]) / dt, 2),
            "frames_repeated": h1["frames_repeated"] - h0["frames_repeated"],
            "frames_dropped": h1["frames_dropped"] - h0["frames_dropped"],
            "stream_restarts": h1["restarts"] - h0["restarts"],
        }))


if __name__ == "__main__":
    main()
