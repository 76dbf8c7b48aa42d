"""Measure what broadcasting costs: compose the full overlay and stream it at 720p30 to a local nginx-rtmp
for N seconds. Prints one JSON line: cores used by this process (compose + pacer) and by ffmpeg (encode),
frames written/repeated/dropped, and the longest `offer()` call. Not a test.

    .venv/bin/python benchmarks/stream_cost.py --seconds 60 [--preset veryfast] [--width 1280 --height 720]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from overlays import ChatLine, Curve, Dream, Layout, OverlayState, Poll, Result, compose
from stream import Broadcaster, LocalRtmpServer, StreamConfig, output_for


def sample_state(rng: np.random.Generator, step: int) -> OverlayState:
    frames = rng.integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    curves = tuple(Curve(label=label, steps=np.arange(2000.0), values=np.cumsum(rng.normal(size=2000)), version=1)
                   for label in ("episode score", "world-model loss", "eval score", "Elo"))
    return OverlayState(
        run_name="benchmark", game="crafter", opponent="", notice="", action="move_left",
        hud={"env steps": step, "updates": step // 32, "env fps": 29.9, "updates / s": 0.33, "train ratio": 32.0,
             "checkpoint": "#42 · 3m", "uptime": "01:02:03", "episodes": step // 150},
        dream=Dream(reality=frames, prediction=frames[5:], imagined=frames, imagined_reward=np.zeros(12), version=1),
        curves=curves, results=tuple(Result(score=float(i)) for i in range(10)),
        poll=Poll(question="next game?", votes={"chess": 3, "crafter": 5}, seconds_left=20.0),
        chat=tuple(ChatLine(user=f"viewer{i}", text="!vote chess") for i in range(5)))


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cfg = StreamConfig(width=args.width, height=args.height, fps=args.fps, preset=args.preset, hls=False)
    layout = Layout(width=cfg.width, height=cfg.height)
    me = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp, LocalRtmpServer(Path(tmp) / "nginx") as server:
        b = Broadcaster(cfg, output_for(cfg, Path(tmp), url=server.url("bench")))
        b.start()
        state = sample_state(rng, 0)
        game = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        time.sleep(3)  # ffmpeg start-up
        ffmpeg = [c for c in me.children(recursive=True) if c.name() == "ffmpeg"]
        me0, ff0, h0 = cpu_s(me), sum(cpu_s(c) for c in ffmpeg), b.health()
        t0 = time.monotonic()
        max_offer, frames, step = 0.0, 0, 0
        while time.monotonic() - t0 < args.seconds:
            b.wait_tick(2.0 / cfg.fps)  # compose right after each frame sent, as the app's compositor does
            step += 1
            state = sample_state(rng, step) if step % 150 == 0 else state  # panels change every 5 s
            game = np.roll(game, 1, axis=1)
            composed = compose(game, state, layout)
            start = time.perf_counter()
            b.offer(composed)
            max_offer = max(max_offer, time.perf_counter() - start)
            frames += 1
        dt = time.monotonic() - t0
        me1, ff1, h1 = cpu_s(me), sum(cpu_s(c) for c in ffmpeg), b.health()
        b.close()
    print(json.dumps({
        "seconds": round(dt, 1), "size": f"{cfg.width}x{cfg.height}", "fps": cfg.fps, "preset": cfg.preset,
        "compose_and_pacer_cores": round((me1 - me0) / dt, 3), "ffmpeg_cores": round((ff1 - ff0) / dt, 3),
        "total_cores": round((me1 - me0 + ff1 - ff0) / dt, 3),
        "frames_composed": frames, "frames_written": h1["frames_written"] - h0["frames_written"],
        "frames_repeated": h1["frames_repeated"] - h0["frames_repeated"],
        "frames_dropped": h1["frames_dropped"] - h0["frames_dropped"], "restarts": h1["restarts"],
        "max_offer_ms": round(max_offer * 1000, 3), "bitrate_kbps": h0.get("bitrate_kbps"),
        "load_avg_1m": round(psutil.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
