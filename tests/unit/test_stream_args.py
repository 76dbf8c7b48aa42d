"""ffmpeg command lines and secret redaction (no process is started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream import StreamConfig, ffmpeg_argv, output_for, redact


def argv_options(argv: list[str]) -> dict[str, str]:
    return {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("-")}


def test_twitch_grade_encoder_settings() -> None:
    cfg = StreamConfig(target="rtmp://127.0.0.1/live/test", fps=30, bitrate_kbps=4500)
    argv = ffmpeg_argv(cfg, output_for(cfg, Path("/tmp")))
    opts = argv_options(argv)
    assert argv[0] == "ffmpeg" and "rtmp://127.0.0.1/live/test" in argv
    assert opts["-vcodec"] == "libx264" and opts["-profile:v"] == "main" and opts["-pix_fmt"] == "yuv420p"
    assert opts["-b:v"] == opts["-minrate"] == opts["-maxrate"] == "4500k" and opts["-bufsize"] == "9000k"
    assert opts["-x264-params"] == "nal-hrd=cbr:force-cfr=1"
    assert opts["-g"] == opts["-keyint_min"] == "60" and opts["-sc_threshold"] == "0"
    assert opts["-acodec"] == "aac" and opts["-f"] == "flv"
    assert "-shortest" in argv and "anullsrc=channel_layout=stereo:sample_rate=44100" in argv
    assert opts["-s"] == "1280x720" and opts["-pix_fmt"] != "rgb24" and "rgb24" in argv


def test_file_target_writes_rotating_flv_segments(tmp_path) -> None:
    cfg = StreamConfig(segment_minutes=5)
    out = output_for(cfg, tmp_path)
    assert out.is_file and out.url == str(tmp_path / "stream-%Y%m%d-%H%M%S.flv")
    opts = argv_options(ffmpeg_argv(cfg, out))
    assert opts["-f"] == "segment" and opts["-segment_format"] == "flv" and opts["-segment_time"] == "300"


def test_keyframe_interval_follows_fps() -> None:
    cfg = StreamConfig(target="rtmp://h/app/x", fps=60, keyframe_interval_s=2)
    assert argv_options(ffmpeg_argv(cfg, output_for(cfg, Path("/tmp"))))["-g"] == "120"


def test_twitch_output_url_and_its_shown_form() -> None:
    cfg = StreamConfig(target="twitch", stream_key="live_123_abc")
    out = output_for(cfg, Path("/tmp"))
    assert out.url == "rtmp://ingest.global-contribute.live-video.net/app/live_123_abc"
    assert out.shown == "rtmp://ingest.global-contribute.live-video.net/app/***"
    assert "live_123_abc" not in repr(out) and "live_123_abc" not in repr(cfg)
    test = output_for(StreamConfig(target="twitch", stream_key="live_1", twitch_bandwidth_test=True), Path("/tmp"))
    assert test.url.endswith("/app/live_1?bandwidthtest=true") and test.shown.endswith("/app/***")


@pytest.mark.parametrize(("text", "shown"), [
    pytest.param("rtmp://sfo.contribute.live-video.net/app/live_9_x: Connection refused",
                 "rtmp://sfo.contribute.live-video.net/app/***: Connection refused", id="ffmpeg-error"),
    pytest.param("key live_9_x leaked", "key *** leaked", id="bare-key"),
    pytest.param("rtmps://host/app/whatever?bandwidthtest=true", "rtmps://host/app/***", id="undeclared-key"),
    pytest.param("rtmp://a.rtmp.youtube.com/live2/abcd-efgh: I/O error",
                 "rtmp://a.rtmp.youtube.com/live2/***: I/O error", id="other-ingest"),
    pytest.param("[f=flv:onfail=abort]rtmp://h/live/k|[f=hls]x", "[f=flv:onfail=abort]rtmp://h/live/***|[f=hls]x",
                 id="tee-slave"),
    pytest.param("rtmp://127.0.0.1:1935/live/k3y", "rtmp://127.0.0.1:1935/live/***", id="loopback-too"),
    pytest.param("nothing secret", "nothing secret", id="clean"),
])
def test_redact(text, shown) -> None:
    assert redact(text, ("live_9_x",)) == shown


def test_custom_ingest_gets_the_stream_key_appended_and_hidden() -> None:
    out = output_for(StreamConfig(target="rtmp://a.rtmp.youtube.com/live2", stream_key="yt-key-1"), Path("/tmp"))
    assert out.url == "rtmp://a.rtmp.youtube.com/live2/yt-key-1" and out.shown == "rtmp://a.rtmp.youtube.com/live2/***"
    argv = ffmpeg_argv(StreamConfig(target="rtmp://h/app/", stream_key="k9"), output_for(
        StreamConfig(target="rtmp://h/app/", stream_key="k9"), Path("/tmp")))
    assert "rtmp://h/app/k9" in " ".join(argv)
    kept = output_for(StreamConfig(target="rtmp://h/app/k9", stream_key="k9"), Path("/tmp"))
    assert kept.url == "rtmp://h/app/k9" and "k9" not in kept.shown


def test_tee_sinks_and_which_one_ends_ffmpeg(tmp_path) -> None:
    cfg = StreamConfig(target="rtmp://h/live/k", record=True, hls=True)
    out = output_for(cfg, tmp_path / "rec", tmp_path / "hls")
    argv = ffmpeg_argv(cfg, out)
    tee = argv[argv.index("tee") + 1:][[a.startswith("[f=") for a in argv[argv.index("tee") + 1:]].index(True)]
    primary, record, hls = tee.split("|")
    # The ingest too is optional in the tee: its outage must not stop the recording and the preview (the
    # broadcaster watches for its failure and reconnects it).
    # rw_timeout (half of stall_timeout_s, 10 s): a server that accepts and then says nothing fails the sink.
    assert primary == "[f=flv:flvflags=no_duration_filesize:rw_timeout=5000000:onfail=ignore]rtmp://h/live/k"
    assert out.ingest_watched
    assert record.startswith("[f=segment:") and ":onfail=ignore]" in record
    assert hls.startswith("[f=hls:") and hls.endswith(f":onfail=ignore]{tmp_path / 'hls' / 'index.m3u8'}")
    # Recording to files, the recording is what counts: its failure ends ffmpeg, which is restarted.
    files = output_for(StreamConfig(target="file", hls=True), tmp_path / "rec", tmp_path / "hls")
    assert [sink.required for sink in files.sinks] == [True, False] and not files.ingest_watched
    alone = output_for(StreamConfig(target="rtmp://h/live/k", hls=False), tmp_path / "rec")
    assert alone.sinks[0].required and not alone.ingest_watched  # one sink: its failure is ffmpeg's


def test_a_twitch_stream_ended_soon_after_its_start_points_at_the_key(tmp_path) -> None:
    from stream.broadcaster import STABLE_AFTER_S, Broadcaster

    cfg = StreamConfig(target="twitch", stream_key="live_1")
    twitch = Broadcaster(cfg, output_for(cfg, tmp_path))
    assert "check TWITCH_STREAM_KEY" in twitch._hinted("ffmpeg exited with code 1", 2.0)
    assert twitch._hinted("ffmpeg exited with code 1", STABLE_AFTER_S + 1) == "ffmpeg exited with code 1"
    # The key is sent only once a connection is made: a network failure gets no hint about it.
    assert twitch._hinted("the ingest failed: Connection refused", 2.0) == "the ingest failed: Connection refused"
    assert "TWITCH_STREAM_KEY" not in twitch._hinted("Connection timed out", 2.0)
    local = StreamConfig(target="file")
    assert Broadcaster(local, output_for(local, tmp_path))._hinted("x", 2.0) == "x"
