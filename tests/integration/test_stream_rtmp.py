"""The broadcast against a real local RTMP server (Debian's nginx + rtmp module), read back with ffprobe:
Twitch-grade encoding, recovery when ffmpeg or the server dies, extra outputs, music, scheduled reconnects."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

from stream import Broadcaster, LocalRtmpServer, StreamConfig, output_for
from tests.conftest import ffprobe, keyframe_times, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def nginx(tmp_path):
    with LocalRtmpServer(tmp_path / "nginx") as server:
        yield server


class Producer:
    """Offers a moving test pattern at ~2x the stream rate from a thread; records the longest offer."""

    def __init__(self, broadcaster: Broadcaster, cfg: StreamConfig) -> None:
        self.b, self.cfg = broadcaster, cfg
        self.max_offer_s = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        x = np.arange(self.cfg.width)[None, :]
        for i in itertools.count():
            if self.stop.is_set():
                return
            frame = np.zeros((self.cfg.height, self.cfg.width, 3), np.uint8)
            frame[..., 1] = (x + 6 * i) % 256
            t0 = time.perf_counter()
            self.b.offer(frame)
            self.max_offer_s = max(self.max_offer_s, time.perf_counter() - t0)
            time.sleep(0.5 / self.cfg.fps)

    def __enter__(self) -> Producer:
        self.b.start()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.b.close()


def publishing(server: LocalRtmpServer) -> bool:
    return "<publishing/>" in server.stat()


def test_rtmp_stream_is_twitch_grade(nginx, tmp_path) -> None:
    cfg = StreamConfig(target=nginx.url("testkey"))
    b = Broadcaster(cfg, output_for(cfg, tmp_path))
    with Producer(b, cfg) as producer:
        wait_for(lambda: publishing(nginx), "nginx to see a publisher")
        live = ffprobe(nginx.url("testkey"), timeout_s=60)
        assert {s["codec_name"] for s in live["streams"]} == {"h264", "aac"}
        time.sleep(5)
    (rec,) = nginx.recordings("testkey")
    info = ffprobe(rec)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], video["profile"], video["width"], video["height"], video["r_frame_rate"]) == \
        ("h264", "Main", 1280, 720, "30/1")
    assert (audio["codec_name"], audio["profile"]) == ("aac", "LC")
    keys = keyframe_times(rec)
    assert len(keys) >= 3 and all(abs(b2 - b1 - 2.0) < 0.05 for b1, b2 in itertools.pairwise(keys)), keys
    assert producer.max_offer_s < 1.0  # offer() is O(1); a blocked producer would take seconds
    assert b.health()["bitrate_kbps"] is None  # reported while live only; closed now


def test_killed_ffmpeg_resumes_on_the_same_url_within_5_s(nginx, tmp_path) -> None:
    cfg = StreamConfig(target=nginx.url("k"), width=640, height=360, preset="ultrafast", bitrate_kbps=800)
    b = Broadcaster(cfg, output_for(cfg, tmp_path))
    with Producer(b, cfg) as producer:
        wait_for(lambda: b.health()["state"] == "live" and publishing(nginx), "the first publish")
        wait_for(lambda: (b.health()["bitrate_kbps"] or 0) > 0, "ffmpeg to report its bitrate")
        pid = b.health()["ffmpeg_pid"]
        psutil.Process(pid).kill()
        killed_at = time.monotonic()
        wait_for(lambda: b.health()["ffmpeg_pid"] not in (None, pid) and b.health()["state"] == "live"
                 and publishing(nginx), "the stream to resume")
        resumed_s = time.monotonic() - killed_at
        time.sleep(1.0)
    assert resumed_s < 5.0, resumed_s
    assert len(nginx.recordings("k")) == 2 and b.health()["restarts"] == 1
    assert producer.max_offer_s < 1.0


def test_a_killed_local_server_is_restarted_by_its_supervisor_and_the_stream_comes_back(nginx, tmp_path) -> None:
    from app.supervisor import Supervisor

    cfg = StreamConfig(target=nginx.url("k"), width=640, height=360, preset="ultrafast", bitrate_kbps=800,
                       restart_backoff_max_s=2)
    b = Broadcaster(cfg, output_for(cfg, tmp_path))
    supervisor = Supervisor()
    supervisor.add("local RTMP server", nginx.keep_running)  # as the app runs it
    supervisor.start()
    with Producer(b, cfg) as producer:
        wait_for(lambda: publishing(nginx), "the first publish")
        port = nginx.port
        nginx.kill()
        wait_for(lambda: b.health()["restarts"] >= 1, "ffmpeg to notice the server is gone")
        wait_for(lambda: supervisor.status()["local RTMP server"]["restarts"] >= 1 and nginx.is_running(),
                 "the supervisor to start nginx again")
        assert nginx.port == port  # the same URL: ffmpeg reconnects to it
        wait_for(lambda: publishing(nginx), "the stream to come back after the restart")
        wait_for(lambda: nginx.recordings("k") and nginx.recordings("k")[-1].stat().st_size > 20_000,
                 "the new recording to grow")
    supervisor.stop_event.set()
    assert supervisor.join() == []
    # The thread that restarted nginx has ended; nginx must live on until the app stops it (after the
    # encoder), so it cannot be tied to that thread's life (Linux's parent-death signal follows threads).
    time.sleep(1.0)
    assert nginx.is_running()
    assert len(nginx.recordings("k")) >= 2
    assert producer.max_offer_s < 1.0


def test_extra_outputs_record_and_hls_beside_rtmp(nginx, tmp_path) -> None:
    cfg = StreamConfig(target=nginx.url("k"), record=True, hls=True, width=640, height=360, preset="ultrafast",
                       bitrate_kbps=800)
    rec, hls = tmp_path / "rec", tmp_path / "hls"
    rec.mkdir()
    hls.mkdir()
    b = Broadcaster(cfg, output_for(cfg, rec, hls), recordings_dir=rec, hls_dir=hls)
    with Producer(b, cfg):
        wait_for(lambda: (hls / "index.m3u8").exists() and len(list(hls.glob("*.ts"))) >= 2, "HLS segments")
        wait_for(lambda: publishing(nginx), "the RTMP publish")
    (recording,) = rec.glob("stream-*.flv")
    for target in (recording, hls / "index.m3u8", nginx.recordings("k")[0]):
        assert {s["codec_name"] for s in ffprobe(target)["streams"]} == {"h264", "aac"}, target
    # What a strict ingest needs and ffprobe does not check: with several outputs (the tee muxer) the encoders
    # gave no global headers, so the FLV's AVC sequence header was 5 empty bytes and the frames Annex B.
    for flv in (recording, nginx.recordings("k")[0]):
        assert flv_codec_headers(flv) == {"avc_config": True, "aac_config": True, "length_prefixed": True}, flv


def test_an_ingest_outage_keeps_the_recording_and_the_preview_going(nginx, tmp_path) -> None:
    """The ingest sink aborted ffmpeg: while the server was down, every restart died at the connect, and the
    recording and the dashboard's HLS preview stopped for the whole outage."""
    cfg = StreamConfig(target=nginx.url("k"), record=True, hls=True, width=640, height=360, preset="ultrafast",
                       bitrate_kbps=800, restart_backoff_max_s=3)
    rec, hls = tmp_path / "rec", tmp_path / "hls"
    rec.mkdir()
    hls.mkdir()
    b = Broadcaster(cfg, output_for(cfg, rec, hls), recordings_dir=rec, hls_dir=hls)

    def hls_sequence() -> int:
        text = (hls / "index.m3u8").read_text() if (hls / "index.m3u8").exists() else ""
        found = [line.split(":")[1] for line in text.splitlines() if line.startswith("#EXT-X-MEDIA-SEQUENCE:")]
        return int(found[0]) if found else -1

    def recorded() -> int:
        return sum(p.stat().st_size for p in rec.glob("stream-*.flv"))

    with Producer(b, cfg):
        wait_for(lambda: publishing(nginx) and b.health()["state"] == "live", "the first publish")
        nginx.kill()
        wait_for(lambda: b.health()["state"] == "reconnecting", "the broadcaster to see the ingest fail")
        assert b.health()["last_error"].startswith("the ingest failed")
        sequence, size = hls_sequence(), recorded()
        wait_for(lambda: hls_sequence() >= sequence + 3 and recorded() > size + 100_000,
                 "the preview and the recording to go on while the ingest is down")
        # While the server does not even accept a connection, the same ffmpeg runs on: no cut in the preview, no
        # new recording file at every retry.
        assert b.health()["state"] == "reconnecting" and b.health()["restarts"] == 0
        assert len(list(rec.glob("stream-*.flv"))) == 1
        nginx.start()
        wait_for(lambda: publishing(nginx) and b.health()["state"] == "live", "the ingest to come back")
        assert b.health()["restarts"] == 1
    assert len(nginx.recordings("k")) >= 2


def test_an_ingest_that_accepts_and_then_says_nothing_does_not_hold_the_preview(tmp_path) -> None:
    """The tee opens its sinks in turn, the ingest first: a server that took the connection and never answered
    held the HLS preview (and the recording) until the watchdog killed ffmpeg, at every restart."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts; nobody ever reads or answers
    cfg = StreamConfig(target=f"rtmp://127.0.0.1:{silent.getsockname()[1]}/live/k", hls=True, width=640,
                       height=360, preset="ultrafast", bitrate_kbps=800, stall_timeout_s=4)
    hls = tmp_path / "hls"
    hls.mkdir()
    b = Broadcaster(cfg, output_for(cfg, tmp_path, hls), hls_dir=hls)
    try:
        with Producer(b, cfg):
            wait_for(lambda: b.health()["last_error"].startswith("the ingest failed"), "the ingest to time out")
            wait_for(lambda: len(list(hls.glob("*.ts"))) >= 2, "the preview to go on")
            assert b.health()["stalls"] == 0 and b.health()["state"] != "live"  # timed out, not killed
    finally:
        silent.close()


def flv_codec_headers(path) -> dict[str, bool]:
    """Read an FLV's first tags: does its AVC sequence header hold an AVCDecoderConfigurationRecord, its AAC
    sequence header an AudioSpecificConfig, and is the first coded frame in length-prefixed NAL units?"""
    data = path.read_bytes()
    assert data[:3] == b"FLV", path
    at = int.from_bytes(data[5:9], "big") + 4  # the header, then PreviousTagSize0
    found: dict[str, bool] = {}
    while at + 11 <= len(data) and len(found) < 3:
        kind, size = data[at], int.from_bytes(data[at + 1:at + 4], "big")
        body = data[at + 11:at + 11 + size]
        if kind == 9 and body[0] & 0x0F == 7:  # video, AVC
            if body[1] == 0 and "avc_config" not in found:  # AVCDecoderConfigurationRecord: version 1, SPS, PPS
                found["avc_config"] = len(body) > 5 + 10 and body[5] == 1
            elif body[1] == 1 and "length_prefixed" not in found:
                found["length_prefixed"] = body[5:9] != b"\0\0\0\1" and int.from_bytes(body[5:9], "big") <= size
        elif kind == 8 and body[0] >> 4 == 10 and body[1] == 0 and "aac_config" not in found:  # AAC header
            found["aac_config"] = len(body) >= 4
        at += 11 + size + 4
    return found


def test_looped_music_is_audible(nginx, tmp_path) -> None:
    """An MP3 with cover art, as most are: the art is a second video stream, which made the FLV muxer refuse
    the output (the stream never went live)."""
    music = tmp_path / "tone.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-f", "lavfi",
                    "-i", "color=c=red:s=64x64:d=1", "-map", "0", "-map", "1", "-c:v", "mjpeg", "-frames:v", "1",
                    "-disposition:v", "attached_pic", "-id3v2_version", "3", str(music)], check=True, timeout=60)
    assert {s["codec_type"] for s in ffprobe(music)["streams"]} == {"audio", "video"}
    cfg = StreamConfig(target=nginx.url("k"), music_path=str(music), width=640, height=360, preset="ultrafast",
                       bitrate_kbps=800)
    b = Broadcaster(cfg, output_for(cfg, tmp_path))
    with Producer(b, cfg):
        wait_for(lambda: publishing(nginx), "the publish")
        time.sleep(4)  # longer than the 1 s file: it must loop
    (rec,) = nginx.recordings("k")
    out = subprocess.run(["ffmpeg", "-hide_banner", "-ss", "2", "-i", str(rec), "-af", "volumedetect", "-vn", "-f",
                          "null", "-"], capture_output=True, text=True, timeout=60)
    mean_db = float(out.stderr.split("mean_volume:")[1].split("dB")[0])
    assert mean_db > -40, out.stderr[-500:]  # a silent track reads about -91 dB


def test_scheduled_reconnect_before_the_session_limit(nginx, tmp_path) -> None:
    cfg = StreamConfig(target=nginx.url("k"), max_session_h=3 / 3600, width=640, height=360, preset="ultrafast",
                       bitrate_kbps=800)
    b = Broadcaster(cfg, output_for(cfg, tmp_path))
    with Producer(b, cfg):
        wait_for(lambda: b.health()["scheduled_reconnects"] >= 1 and b.health()["state"] == "live"
                 and publishing(nginx), "a scheduled reconnect")
    health = b.health()
    assert health["restarts"] == 0 and health["last_error"] == ""  # planned, not a failure
    assert len(nginx.recordings("k")) >= 2


def test_stream_test_command_checks_a_local_target_and_fails_a_refusing_one() -> None:
    from tests.conftest import DREAMSTREAM

    ok = subprocess.run([DREAMSTREAM, "stream", "test", "--target", "local", "--seconds", "5", "--stream.width",
                         "640", "--stream.height", "360"],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr[-2000:]
    assert "received    h264 Main 640x360 @ 30/1, keyframes every 2.00 s, audio aac LC" in ok.stdout
    assert ok.stdout.strip().endswith("OK: the target took the whole test stream")
    key = "live_000111_SeCrEt"
    bad = subprocess.run([DREAMSTREAM, "stream", "test", "--target", f"rtmp://127.0.0.1:9/app/{key}", "--seconds",
                          "3", "--stream.preset", "ultrafast"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    assert "FAILED: the target dropped or refused the stream" in bad.stdout
    assert key not in bad.stdout + bad.stderr and "rtmp://127.0.0.1:9/app/***" in bad.stdout


def test_long_sessions_are_recorded_in_parts_that_can_be_pruned(tmp_path) -> None:
    with LocalRtmpServer(tmp_path / "nginx", record_interval_s=2) as server:
        cfg = StreamConfig(target=server.url("k"), width=320, height=180, preset="ultrafast", bitrate_kbps=300)
        b = Broadcaster(cfg, output_for(cfg, tmp_path))
        with Producer(b, cfg):
            wait_for(lambda: len(server.recordings("k")) >= 3, "a third recording part")
    assert all(p.stat().st_size > 0 for p in server.recordings("k")[:-1])


KEEP_SERVER = """
import sys, time
from pathlib import Path
from stream import LocalRtmpServer
server = LocalRtmpServer(Path(sys.argv[1])).start()
print(server._proc.pid, flush=True)
time.sleep(600)
"""


def test_server_ends_with_a_killed_app_and_a_stale_one_is_ended_at_start(tmp_path) -> None:
    app = subprocess.Popen([sys.executable, "-c", KEEP_SERVER, str(tmp_path / "srv")], stdout=subprocess.PIPE,
                           text=True)
    pid = int(app.stdout.readline())
    assert psutil.pid_exists(pid)
    app.kill()  # kill -9: no cleanup code runs in the app
    app.wait()
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             "nginx to end with the app that started it")
    # A server left behind (here: started without the parent-death signal) is ended by the next start.
    stale = LocalRtmpServer(tmp_path / "srv2").start()
    old_pid = stale._proc.pid
    stale._proc = None  # forgotten, as after a crash
    with LocalRtmpServer(tmp_path / "srv2") as again:
        assert again._proc.pid != old_pid
        wait_for(lambda: not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE,
                 "the stale nginx to be ended")
