"""OBS mode's pure parts: the config, what the scenes hold, and the OBS config files for a headless box."""

from __future__ import annotations

import ast
import configparser
import dataclasses
import json
from pathlib import Path
from typing import Annotated, get_args, get_origin, get_type_hints

import annotated_types
import pytest

from app.config import field_docs
from stream.obs import ObsConfig, hud_transform, obs_color, scene_plan, text_settings
from stream.obs_headless import HeadlessObs, obs_config_files

ROOT = Path(__file__).resolve().parents[2]


def test_every_field_has_a_default_a_docstring_and_numbers_have_ranges() -> None:
    fields = {f.name: f for f in dataclasses.fields(ObsConfig)}
    assert set(field_docs(ObsConfig)) == set(fields)
    assert ObsConfig().enabled is False  # OBS mode is opt-in; the ffmpeg path is the default
    for name, tp in get_type_hints(ObsConfig, include_extras=True).items():
        if tp in (int, float) or get_origin(tp) is Annotated:
            assert get_origin(tp) is Annotated, name
            assert any(isinstance(m, annotated_types.Interval) for m in get_args(tp)[1:]), name


def test_secrets_are_marked_and_hidden_from_repr() -> None:
    cfg = ObsConfig(password="ws-PaSsWoRd", stream_key="live_123_SeCrEt", game_url="rtmp://127.0.0.1/live/x")
    fields = {f.name: f for f in dataclasses.fields(ObsConfig)}
    assert fields["password"].metadata["secret_env"] == "OBS_WEBSOCKET_PASSWORD"
    assert fields["stream_key"].metadata["secret_env"] == "TWITCH_STREAM_KEY"
    assert "PaSsWoRd" not in repr(cfg) and "SeCrEt" not in repr(cfg)


@pytest.mark.parametrize("kwargs, message", [
    pytest.param({"brb_scene": "Live"}, "obs scene names = ['Live', 'Starting', 'Live', 'Rollback']: must be "
                 "non-empty and different from each other", id="duplicate-scene"),
    pytest.param({"starting_scene": " "}, "obs scene names = ['Live', ' ', 'BRB', 'Rollback']: must be non-empty "
                 "and different from each other", id="empty-scene"),
    pytest.param({"background_color": "red"}, "obs.background_color = 'red': must be #RRGGBB, e.g. '#1d2230'",
                 id="colour-name"),
    pytest.param({"stream_server": "http://x/app"}, "obs.stream_server = 'http://x/app': must be an rtmp:// or "
                 "rtmps:// URL (or '' to keep OBS's own service settings)", id="server-scheme"),
    pytest.param({"hud_prefix": ""}, "obs.game_source and obs.hud_prefix must not be empty", id="empty-prefix"),
])
def test_invalid_values_name_the_key_and_what_is_valid(kwargs, message) -> None:
    with pytest.raises(ValueError) as err:
        ObsConfig(**kwargs)
    assert str(err.value) == message


def test_obs_colours_are_abgr() -> None:
    assert obs_color("#1d2230") == 0xFF30221D
    assert obs_color("#ff0000", alpha=0x80) == 0x800000FF


def test_scene_plan_builds_four_scenes_bottom_first() -> None:
    cfg = ObsConfig(game_url="rtmp://127.0.0.1:1935/live/dreamstream")
    plan = scene_plan(cfg, 1280, 720, "text_ft2_source_v2")
    assert list(plan) == ["Live", "Starting", "BRB", "Rollback"]
    (game,) = plan["Live"]
    assert (game.name, game.kind, game.at_bottom) == ("DreamStream game", "ffmpeg_source", True)
    assert game.settings["input"] == cfg.game_url and game.settings["is_local_file"] is False
    assert game.settings["clear_on_media_end"] is False and game.settings["restart_on_activate"] is False
    assert (game.transform["boundsType"], game.transform["boundsWidth"], game.transform["boundsHeight"]) == \
        ("OBS_BOUNDS_SCALE_INNER", 1280, 720)
    background, text = plan["BRB"]
    assert (background.name, background.kind, background.at_bottom) == ("BRB background", "color_source_v3", True)
    assert background.settings == {"color": 0xFF30221D, "width": 1280, "height": 720}
    assert (text.name, text.settings["text"], text.settings["font"]["size"]) == ("BRB text", "Be right back", 96)
    assert (text.transform["positionX"], text.transform["positionY"], text.transform["alignment"]) == (640, 360, 0)


def test_a_path_is_played_as_a_local_file() -> None:
    cfg = ObsConfig(game_url="/srv/run/hls/index.m3u8")
    game = scene_plan(cfg, 1280, 720, "text_ft2_source_v2")["Live"][0]
    assert game.settings["is_local_file"] is True and game.settings["local_file"] == "/srv/run/hls/index.m3u8"
    assert "input" not in game.settings


@pytest.mark.parametrize("kind, colour_keys", [
    pytest.param("text_ft2_source_v2", {"color1", "color2"}, id="freetype"),
    pytest.param("text_gdiplus_v2", {"color", "outline_color"}, id="gdiplus"),
])
def test_text_settings_suit_each_text_kind(kind, colour_keys) -> None:
    settings = text_settings(kind, "step 1", "DejaVu Sans", 32)
    assert settings["text"] == "step 1" and settings["font"]["face"] == "DejaVu Sans"
    assert colour_keys <= set(settings)


def test_hud_lines_stack_down_from_the_top_left() -> None:
    assert [(t["positionX"], t["positionY"]) for t in map(lambda i: hud_transform(i, 32), range(3))] == \
        [(24, 24), (24, 75), (24, 126)]


def test_headless_obs_files_hold_what_twitch_needs(tmp_path) -> None:
    files = obs_config_files(websocket_port=4466, password="pw", recordings_dir=tmp_path, stream_server="rtmp://h/app",
                             stream_key="k")
    global_ini, basic_ini = configparser.ConfigParser(), configparser.ConfigParser()
    global_ini.optionxform = basic_ini.optionxform = str  # OBS's keys are case-sensitive
    global_ini.read_string(files["global.ini"])
    basic_ini.read_string(files["basic/profiles/DreamStream/basic.ini"])
    assert dict(global_ini["OBSWebSocket"]) == {"FirstLoad": "false", "ServerEnabled": "true", "ServerPort": "4466",
                                                "AlertsEnabled": "false", "AuthRequired": "true",
                                                "ServerPassword": "pw"}
    assert global_ini["BasicWindow"]["PreviewEnabled"] == "false" and global_ini["General"]["FirstRun"] == "true"
    assert basic_ini["Output"]["Mode"] == "Advanced" and basic_ini["AdvOut"]["Encoder"] == "obs_x264"
    assert basic_ini["AdvOut"]["RecFilePath"] == str(tmp_path)
    encoder = json.loads(files["basic/profiles/DreamStream/streamEncoder.json"])
    assert (encoder["keyint_sec"], encoder["rate_control"], encoder["profile"]) == (2, "CBR", "main")
    service = json.loads(files["basic/profiles/DreamStream/service.json"])
    assert service == {"type": "rtmp_custom", "settings": {"server": "rtmp://h/app", "key": "k", "bwtest": False,
                                                           "use_auth": False}}


def test_without_a_server_or_password_obs_keeps_its_service_and_needs_no_auth(tmp_path) -> None:
    files = obs_config_files(websocket_port=4455, password="", recordings_dir=tmp_path)
    assert "basic/profiles/DreamStream/service.json" not in files
    assert "AuthRequired=false" in files["global.ini"]


def test_obsws_python_is_imported_only_where_it_is_used() -> None:
    """obsws-python is optional: importing `stream` must not need it."""
    for name in ("obs.py", "obs_headless.py"):
        tree = ast.parse((ROOT / "stream" / name).read_text())
        top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        modules = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
        modules += [n.module for n in top_level if isinstance(n, ast.ImportFrom)]
        assert not [m for m in modules if m and m.startswith("obsws_python")], name


def test_headless_obs_refuses_secrets_that_would_break_its_ini_files(tmp_path) -> None:
    with pytest.raises(ValueError, match="must be single lines"):
        HeadlessObs(tmp_path, password="pw\n[OBSWebSocket]\nAuthRequired=false")


def test_an_xvfb_that_hangs_before_reporting_its_display_is_a_clear_error(tmp_path) -> None:
    """A bare read of Xvfb's -displayfd pipe blocked for good (the OBS start, and the app's, with it)."""
    import time

    from stream.errors import StreamError

    hung = tmp_path / "Xvfb"
    hung.write_text("#!/bin/sh\nexec sleep 300\n")  # alive, holds the pipe open, never writes
    hung.chmod(0o755)
    obs = HeadlessObs(tmp_path / "obs", password="x" * 16, xvfb=str(hung))
    began = time.monotonic()
    with pytest.raises(StreamError, match=r"Xvfb did not start .*within 1 s"):
        obs.start(timeout_s=1.0)
    assert time.monotonic() - began < 30 and obs._xvfb is None  # the hung one was stopped
