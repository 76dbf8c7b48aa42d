"""OBS mode against a real OBS Studio 29 under Xvfb (isolated config dir, websocket with a password) and a
local nginx-rtmp server: scenes, HUD, screenshots, the game source playing our stream, stream and
recording, and what happens when OBS hangs or dies."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import time

import cv2
import numpy as np
import pytest

from stream import LocalRtmpServer, StreamError
from stream.obs import SCENE_KEYS, ObsConfig, ObsController
from stream.obs_headless import HeadlessObs
from tests.conftest import ffprobe, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "ws-PaSsWoRd-123"
STREAM_KEY = "live_424242_SeCrEtKeY"
TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    with LocalRtmpServer(tmp_path_factory.mktemp("nginx")) as server:
        yield server


@pytest.fixture(scope="module")
def obs(tmp_path_factory, nginx):
    # Starts in another scene collection, so ensure_scenes has to create DreamStream's.
    headless = HeadlessObs(tmp_path_factory.mktemp("obs"), password=PASSWORD, scene_collection="Untitled",
                           stream_server=f"rtmp://127.0.0.1:{nginx.port}/live", stream_key="unused")
    with headless:
        yield headless


@pytest.fixture(scope="module")
def cfg(obs, nginx) -> ObsConfig:
    return ObsConfig(enabled=True, port=obs.port, password=PASSWORD, game_url=nginx.url("dreamstream"),
                     request_timeout_s=TIMEOUT_S, reconnect_interval_s=0.2, reconnect_backoff_max_s=1.0,
                     stream_server=f"rtmp://127.0.0.1:{nginx.port}/live", stream_key=STREAM_KEY)


@pytest.fixture(scope="module")
def ctl(cfg):
    controller = ObsController(cfg).connect()
    yield controller
    controller.close()


def ask(obs: HeadlessObs, request_type: str, data: dict | None = None) -> dict:
    """Ask OBS through a separate client, so checks do not go through the code under test."""
    import obsws_python

    with obsws_python.ReqClient(host="127.0.0.1", port=obs.port, password=PASSWORD, timeout=10) as client:
        return client.send(request_type, data, raw=True) or {}


def collection_state(obs: HeadlessObs) -> dict:
    scenes = sorted(s["sceneName"] for s in ask(obs, "GetSceneList")["scenes"])
    inputs = {i["inputName"]: ask(obs, "GetInputSettings", {"inputName": i["inputName"]})["inputSettings"]
              for i in ask(obs, "GetInputList")["inputs"]}
    items = {s: [(i["sourceName"], i["sceneItemTransform"]["positionX"], i["sceneItemTransform"]["positionY"])
                 for i in ask(obs, "GetSceneItemList", {"sceneName": s})["sceneItems"]] for s in scenes}
    return {"collection": ask(obs, "GetSceneCollectionList")["currentSceneCollectionName"], "scenes": scenes,
            "inputs": inputs, "items": items}


def read_png(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable image"
    return image


def test_wrong_password_is_a_clear_error_without_the_secret(cfg, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-PaSsWoRd"
    bad = ObsController(ObsConfig(port=cfg.port, password=wrong, game_url=cfg.game_url, request_timeout_s=TIMEOUT_S))
    with pytest.raises(StreamError) as err:
        bad.connect()
    assert str(err.value) == (f"OBS at 127.0.0.1:{cfg.port} refused the login (failed to identify client with the "
                              "server, please check connection settings): set OBS_WEBSOCKET_PASSWORD to the password "
                              "in OBS's Tools > WebSocket Server Settings")
    assert wrong not in str(err.value) + caplog.text + repr(bad) + repr(bad.cfg)
    bad.close()


def test_ensure_scenes_creates_the_collection_once(obs, ctl, cfg) -> None:
    created = ctl.ensure_scenes()
    assert created[:2] == ["scene collection 'DreamStream'", "scene 'Live'"]
    assert {"scene 'Starting'", "scene 'BRB'", "scene 'Rollback'", "Rollback/Rollback text"} <= set(created)
    before = collection_state(obs)
    assert ctl.ensure_scenes() == []
    second = ObsController(cfg).connect()  # a fresh controller (e.g. after an app restart) changes nothing either
    try:
        assert second.ensure_scenes() == []
    finally:
        second.close()
    assert collection_state(obs) == before
    # Only the game source follows a changed config (e.g. the app's local server moved to another port).
    other = cfg.game_url.replace("/dreamstream", "/elsewhere")
    moved = ObsController(dataclasses.replace(cfg, game_url=other)).connect()
    try:
        assert moved.ensure_scenes() == [f"DreamStream game playing {other}"]
    finally:
        moved.close()
    assert ctl.ensure_scenes() == [f"DreamStream game playing {cfg.game_url}"]
    assert collection_state(obs) == before
    assert before["collection"] == "DreamStream"
    assert {"Live", "Starting", "BRB", "Rollback"} <= set(before["scenes"])
    assert before["items"]["Live"][0][0] == "DreamStream game"
    assert before["inputs"]["DreamStream game"]["input"] == cfg.game_url
    assert [name for name, *_ in before["items"]["BRB"]] == ["BRB background", "BRB text"]
    assert before["inputs"]["BRB text"]["text"] == "Be right back"


def test_show_switches_the_program_scene(obs, ctl, cfg) -> None:
    for key in (*SCENE_KEYS, "live"):
        ctl.show(key)
        assert ask(obs, "GetCurrentProgramScene")["currentProgramSceneName"] == cfg.scenes[key]
    with pytest.raises(ValueError, match="unknown scene 'intermission': must be one of live, starting, brb, rollback"):
        ctl.show("intermission")


def test_the_apps_rollback_card_shows_for_its_time_then_live_again(obs, cfg) -> None:
    """ObsMode (the app's OBS component) against the real OBS: a rollback asks for the Rollback card for a while,
    then the Live scene comes back by itself."""
    from app.obs_mode import ObsMode

    mode = ObsMode(cfg, cfg.game_url)
    mode.controller.connect()
    try:
        mode.controller.ensure_scenes()
        mode.show("live")
        mode.card("rollback", 1.5)  # what Runner.rollback asks for (from the scheduler's thread)
        mode.step_scene(lambda: True)
        assert ask(obs, "GetCurrentProgramScene")["currentProgramSceneName"] == "Rollback"
        mode.step_scene(lambda: True)  # still its time: it stays
        assert ask(obs, "GetCurrentProgramScene")["currentProgramSceneName"] == "Rollback"
        time.sleep(1.6)
        mode.step_scene(lambda: True)
        assert ask(obs, "GetCurrentProgramScene")["currentProgramSceneName"] == "Live" and mode.scene == "live"
    finally:
        mode.controller.close()


def test_set_hud_creates_and_updates_text_sources(obs, ctl) -> None:
    ctl.set_hud({"step": "step 1,000", "return": "return 2.5"})
    ctl.set_hud({"step": "step 2,000"})
    assert ask(obs, "GetInputSettings", {"inputName": "HUD step"})["inputSettings"]["text"] == "step 2,000"
    assert ask(obs, "GetInputSettings", {"inputName": "HUD return"})["inputSettings"]["text"] == "return 2.5"
    live = [i["sourceName"] for i in ask(obs, "GetSceneItemList", {"sceneName": "Live"})["sceneItems"]]
    assert live == ["DreamStream game", "HUD step", "HUD return"]  # bottom to top: the HUD is over the game


def test_brb_card_screenshot_shows_its_text(ctl, tmp_path) -> None:
    image = read_png(ctl.screenshot("brb", tmp_path / "brb.png", 640, 360))
    assert image.shape == (360, 640, 3)
    background = image[5, 5].astype(int)
    assert np.abs(background - [0x30, 0x22, 0x1D]).max() <= 3, background  # #1d2230 in BGR
    text = (image.min(axis=2) > 200).sum()  # white glyph pixels
    assert 500 < text < 0.2 * 640 * 360, text


def test_live_scene_plays_our_local_stream(obs, ctl, nginx, tmp_path) -> None:
    push = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
         "-f", "lavfi", "-i", "anullsrc=channel_layout=stereo:sample_rate=44100", "-t", "30", "-c:v", "libx264",
         "-preset", "ultrafast", "-g", "15", "-c:a", "aac", "-f", "flv", nginx.url("dreamstream")],
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ctl.show("live")

        def picture() -> list[np.ndarray]:
            image = read_png(ctl.screenshot("DreamStream game", tmp_path / "game.png", 640, 360))
            return [image] if image.std() > 20 else []

        (image,) = wait_for(picture, "OBS's game source to show the pushed test pattern", timeout_s=30, every_s=0.5)
        scene = read_png(ctl.screenshot("live", tmp_path / "live.png", 640, 360))
    finally:
        push.kill()
        push.wait()
    assert image.mean() > 40 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50
    assert scene.std() > 20  # the program scene shows it too, under the HUD


def test_stream_and_record_a_few_seconds(obs, ctl, nginx, caplog) -> None:
    # obsws-python logs request payloads at DEBUG: the key must be masked there.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="obsws_python")
    ctl.start_stream()
    ctl.start_record()
    wait_for(lambda: "<publishing/>" in nginx.stat() and ctl.stats()["stream_bytes"] > 0, "OBS to publish")
    ctl.start_stream()  # both are idempotent
    ctl.start_record()
    time.sleep(3)
    stats = ctl.stats()
    path = ctl.stop_record()
    ctl.stop_stream()
    assert ctl.stop_record() is None
    assert stats["connected"] and stats["stream_active"] and stats["record_active"]
    assert stats["active_fps"] > 0 and stats["render_total_frames"] > 0 and stats["cpu_percent"] is not None
    assert path is not None and path.parent == obs.recordings_dir and path.suffix == ".flv"
    info = ffprobe(path)
    assert sorted(s["codec_name"] for s in info["streams"]) == ["aac", "h264"]
    assert float(info["format"]["duration"]) > 2.5
    assert nginx.recordings(STREAM_KEY)  # OBS streamed to the configured server with the key
    assert "SetStreamServiceSettings" in caplog.text  # the payload was logged ...
    assert STREAM_KEY not in caplog.text and PASSWORD not in caplog.text  # ... with the secrets masked


def test_hung_obs_times_out_then_recovers(obs, ctl) -> None:
    os.kill(obs.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(StreamError, match=rf"did not answer SetCurrentProgramScene within {TIMEOUT_S:g}s"):
            ctl.show("brb")
        # The contract is "never hangs": bounded by the request timeout, not a speed figure.
        assert time.monotonic() - started < TIMEOUT_S + 1.0
        assert not ctl.stats()["connected"]
    finally:
        os.kill(obs.pid, signal.SIGCONT)
    wait_for(lambda: ctl.stats()["connected"], "the controller to reconnect", timeout_s=60)
    assert ask(obs, "GetCurrentProgramScene")["currentProgramSceneName"] == "BRB"  # re-applied on reconnect


def test_killed_obs_fails_clearly_and_is_restored_after_a_restart(obs, ctl) -> None:
    ctl.show("rollback")
    ctl.set_hud({"step": "step 3,000"})
    obs.kill()
    started = time.monotonic()
    with pytest.raises(StreamError, match=r"OBS at 127\.0\.0\.1:\d+ is not reachable \(connection refused\)"):
        ctl.set_hud({"step": "step 4,000"})
    with pytest.raises(StreamError, match=r"is not reachable \(connection refused\)"):
        ctl.show("live")
    assert time.monotonic() - started < TIMEOUT_S  # both failed at once (the port is closed)
    stats = ctl.stats()
    assert stats["connected"] is False and "not reachable" in stats["error"] and stats["active_fps"] is None
    obs.start()
    wait_for(lambda: ctl.stats()["connected"], "the controller to reconnect to the restarted OBS", timeout_s=60)
    # What the app asked for while OBS was down is what the restarted OBS shows.
    assert ask(obs, "GetCurrentProgramScene")["currentProgramSceneName"] == "Live"
    assert ask(obs, "GetInputSettings", {"inputName": "HUD step"})["inputSettings"]["text"] == "step 4,000"
    assert ask(obs, "GetSceneCollectionList")["currentSceneCollectionName"] == "DreamStream"
    ctl.show("starting")
    assert ask(obs, "GetCurrentProgramScene")["currentProgramSceneName"] == "Starting"
