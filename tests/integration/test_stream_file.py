"""The broadcaster with real ffmpeg writing FLV segments: Twitch-grade output, restarts, stalls, errors."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time

import numpy as np
import pytest

from stream import Broadcaster, StreamConfig, StreamError, check_ffmpeg, output_for
from tests.conftest import ffprobe, keyframe_times, wait_for

pytestmark = pytest.mark.integration


def feed(broadcaster: Broadcaster, cfg: StreamConfig, seconds: float) -> None:
    """Offer a moving test pattern at about 2x the stream rate for `seconds`."""
    y = np.arange(cfg.height)[:, None]
    x = np.arange(cfg.width)[None, :]
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        frame = np.zeros((cfg.height, cfg.width, 3), np.uint8)
        frame[..., 0] = (x + 8 * i) % 256
        frame[..., 1] = (y + 4 * i) % 256
        broadcaster.offer(frame)
        i += 1
        time.sleep(0.5 / cfg.fps)


def test_file_output_is_twitch_grade(tmp_path) -> None:
    cfg = StreamConfig()
    b = Broadcaster(cfg, output_for(cfg, tmp_path), recordings_dir=tmp_path)
    b.start()
    try:
        feed(b, cfg, 6.5)
    finally:
        b.close()
    (path,) = tmp_path.glob("stream-*.flv")
    info = ffprobe(path)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], video["profile"], video["width"], video["height"], video["r_frame_rate"],
            video["pix_fmt"]) == ("h264", "Main", 1280, 720, "30/1", "yuv420p")
    assert (audio["codec_name"], audio["profile"], audio["sample_rate"], audio["channels"]) == ("aac", "LC", "44100", 2)
    keys = keyframe_times(path)
    assert len(keys) >= 3
    assert all(abs(b - a - 2.0) < 0.05 for a, b in itertools.pairwise(keys)), keys
    health = b.health()
    assert health["state"] == "stopped" and health["frames_written"] >= 150 and health["restarts"] == 0
    assert health["frames_dropped"] > 0  # offered at ~2x the rate: stale frames were dropped, not queued


def test_frames_repeat_when_the_producer_is_slow(tmp_path) -> None:
    cfg = StreamConfig(width=320, height=180, fps=30, preset="ultrafast", bitrate_kbps=300)
    b = Broadcaster(cfg, output_for(cfg, tmp_path), recordings_dir=tmp_path)
    b.start()
    try:
        b.offer(np.full((180, 320, 3), 90, np.uint8))
        wait_for(lambda: b.health()["frames_written"] >= 60, "two seconds of frames")
    finally:
        b.close()
    health = b.health()
    assert health["frames_offered"] == 1 and health["frames_repeated"] >= 55


def test_stalled_ffmpeg_is_killed_and_restarted(tmp_path) -> None:
    cfg = StreamConfig(width=320, height=180, fps=15, preset="ultrafast", bitrate_kbps=300, stall_timeout_s=2)
    b = Broadcaster(cfg, output_for(cfg, tmp_path), recordings_dir=tmp_path)
    b.start()
    stop = threading.Event()
    producer = threading.Thread(target=lambda: [b.offer(np.zeros((180, 320, 3), np.uint8)) or stop.wait(0.05)
                                                for _ in iter(lambda: stop.is_set(), True)], daemon=True)
    producer.start()
    try:
        pid = wait_for(lambda: b.health()["ffmpeg_pid"], "ffmpeg to start")
        wait_for(lambda: b.health()["state"] == "live", "the stream to go live")
        os.kill(pid, signal.SIGSTOP)  # a frozen encoder: writes block once the pipe is full
        health = wait_for(lambda: (h := b.health())["stalls"] == 1 and h["state"] == "live"
                          and h["ffmpeg_pid"] not in (None, pid) and h, "the watchdog to replace the encoder")
        assert health["restarts"] == 1 and "stalled" in health["last_error"]
    finally:
        stop.set()
        b.close()
    assert len(list(tmp_path.glob("stream-*.flv"))) >= 1


def test_a_bug_in_the_stream_loop_restarts_the_encoder_not_the_broadcast(tmp_path, caplog) -> None:
    cfg = StreamConfig(width=320, height=180, fps=15, preset="ultrafast", bitrate_kbps=300)
    b = Broadcaster(cfg, output_for(cfg, tmp_path), recordings_dir=tmp_path)
    real, failures = b._next_frame, []

    def flaky():
        if len(failures) < 1 and b.health()["frames_written"] >= 15:
            failures.append(1)
            raise RuntimeError("boom in the frame source")
        return real()

    b._next_frame = flaky
    b.start()
    try:
        b.offer(np.zeros((180, 320, 3), np.uint8))
        pid = wait_for(lambda: b.health()["ffmpeg_pid"], "ffmpeg to start")
        health = wait_for(lambda: (h := b.health())["restarts"] == 1 and h["ffmpeg_pid"] not in (None, pid)
                          and h["frames_written"] >= 30 and h, "the broadcast to go on with a new encoder")
        assert "internal error: RuntimeError: boom in the frame source" in health["last_error"]
        assert "stream loop error" in caplog.text
    finally:
        b.close()


def test_missing_ffmpeg_is_one_clear_error() -> None:
    with pytest.raises(StreamError) as info:
        check_ffmpeg("/nonexistent/ffmpeg")
    assert str(info.value) == ("ffmpeg not found ('/nonexistent/ffmpeg' is not on PATH); install it with "
                               "`apt-get install ffmpeg` (or `make setup`) or set stream.ffmpeg_path")


def test_refused_rtmp_target_reports_error_without_the_key(tmp_path, caplog) -> None:
    key = "live_0123456789_abcdef"
    cfg = StreamConfig(target="twitch", stream_key=key, twitch_ingest_url="rtmp://127.0.0.1:9/app",
                       width=320, height=180, fps=15, preset="ultrafast", bitrate_kbps=300)
    b = Broadcaster(cfg, output_for(cfg, tmp_path))
    with caplog.at_level("DEBUG"):
        b.start()
        try:
            b.offer(np.zeros((180, 320, 3), np.uint8))
            health = wait_for(lambda: (h := b.health())["restarts"] >= 1 and h["last_error"] and h,
                              "ffmpeg to fail against a closed port")
        finally:
            b.close()
    assert key not in caplog.text and key not in str(health)
    assert "rtmp://127.0.0.1:9/app/***" in caplog.text


def test_a_producer_locked_to_the_pacer_drops_and_repeats_nothing(tmp_path) -> None:
    cfg = StreamConfig(width=320, height=180, fps=30, preset="ultrafast", bitrate_kbps=300, hls=False)
    b = Broadcaster(cfg, output_for(cfg, tmp_path), recordings_dir=tmp_path)
    b.start()
    try:
        b.offer(np.zeros((180, 320, 3), np.uint8))
        wait_for(lambda: b.health()["frames_written"] > 5, "the stream to run")
        before = b.health()
        for i in range(90):
            assert b.wait_tick(5.0)
            b.offer(np.full((180, 320, 3), i, np.uint8))
        after = b.health()
    finally:
        b.close()
    assert after["frames_dropped"] - before["frames_dropped"] == 0
    assert after["frames_repeated"] - before["frames_repeated"] <= 1  # at most the frame in flight at the start


def test_an_encoder_start_clears_the_previous_encoders_hls_segments(tmp_path) -> None:
    # Each ffmpeg numbers its segments from 0 and deletes only its own: the last ones of every earlier ffmpeg
    # (a restart, a scheduled reconnect, a previous session) stayed on disk.
    cfg = StreamConfig(width=320, height=180, fps=30, preset="ultrafast", bitrate_kbps=300, hls=True)
    hls = tmp_path / "hls"
    hls.mkdir()
    old = [hls / "index999.ts", hls / "index998.ts.tmp", hls / "index.m3u8.tmp"]
    for path in old:
        path.write_bytes(b"\0" * 1000)
    b = Broadcaster(cfg, output_for(cfg, tmp_path, hls), recordings_dir=tmp_path, hls_dir=hls)
    b.start()
    try:
        feed(b, cfg, 1.0)
        wait_for(lambda: (hls / "index.m3u8").exists(), "the HLS playlist")
    finally:
        b.close()
    assert not any(path.exists() for path in old)
    assert list(hls.glob("index*.ts"))  # this encoder's own segments


def test_the_operator_restarts_the_stream_now_instead_of_waiting_out_the_backoff(tmp_path) -> None:
    # After a long Twitch outage the backoff waits up to minutes; "reconnect now" must not.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    cfg = StreamConfig(target=f"rtmp://127.0.0.1:{port}/live/k", record=False, hls=False, width=320, height=180,
                       preset="ultrafast", bitrate_kbps=300, restart_backoff_max_s=600)
    b = Broadcaster(cfg, output_for(cfg, tmp_path), recordings_dir=tmp_path)

    class LongOutage:  # as after a long outage: the wait after the second failure is 500 s
        waits = iter([0.2])

        def reset(self) -> None:
            pass

        def next(self) -> float:
            return next(self.waits, 500.0)

    b._backoff = LongOutage()
    b.start()
    try:
        wait_for(lambda: b.health()["restarts"] >= 2, "the second refused start")
        time.sleep(1.0)
        assert b.health()["restarts"] == 2 and b.health()["state"] == "reconnecting"  # waiting out the backoff
        assert b.reconnect_now() == "reconnecting now"
        wait_for(lambda: b.health()["restarts"] >= 3, "a start at once")  # not after 500 s
    finally:
        b.close()


def test_reconnect_now_restarts_a_live_stream_once(tmp_path) -> None:
    cfg = StreamConfig(width=320, height=180, fps=30, preset="ultrafast", bitrate_kbps=300, hls=False)
    b = Broadcaster(cfg, output_for(cfg, tmp_path), recordings_dir=tmp_path)
    b.start()
    done = threading.Event()

    def feeder() -> None:
        while not done.is_set():
            feed(b, cfg, 0.5)

    thread = threading.Thread(target=feeder)
    thread.start()
    try:
        live = wait_for(lambda: (h := b.health())["state"] == "live" and h, "the stream to go live")
        assert b.reconnect_now() == "restarting the live stream (viewers see a short cut)"
        restart = wait_for(lambda: (h := b.health())["scheduled_reconnects"] == 1 and h, "the restart")
        wait_for(lambda: (h := b.health())["state"] == "live" and h["ffmpeg_pid"] not in (None, live["ffmpeg_pid"])
                 and h["frames_written"] > restart["frames_written"], "the new encoder to be live")
        wait_for(lambda: len(list(tmp_path.glob("stream-*.flv"))) == 2, "the new encoder's recording")
    finally:
        done.set()
        thread.join()
        b.close()
    health = b.health()
    assert health["restarts"] == 0 and health["scheduled_reconnects"] == 1  # a planned restart, not a failure
    assert len(list(tmp_path.glob("stream-*.flv"))) == 2
