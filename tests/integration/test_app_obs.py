"""The app in OBS mode against a real headless OBS: scenes created, "Live" shown once the agent plays,
HUD texts fed, stats on the dashboard, and "BRB" left on screen when the app stops."""

from __future__ import annotations

import pytest

from stream.obs_headless import HeadlessObs
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

PASSWORD = "app-ws-PaSsWoRd"


def ask(obs_port: int, call: str, *args):
    import obsws_python as obsws

    client = obsws.ReqClient(host="127.0.0.1", port=obs_port, password=PASSWORD, timeout=5)
    try:
        return getattr(client, call)(*args)
    finally:
        client.disconnect()


def program_scene(obs_port: int) -> str:
    return ask(obs_port, "get_current_program_scene").current_program_scene_name


def tail(obs: HeadlessObs) -> str:
    return "OBS died; the end of its output:\n" + obs.log_path.read_text(errors="replace")[-2000:]


def test_app_drives_obs_scenes_and_hud(app_factory, tmp_path) -> None:
    with HeadlessObs(tmp_path / "obs", password=PASSWORD, scene_collection="Untitled") as obs:
        app = app_factory(["run", "--configs", "tiny", "catch", "--dashboard.port", "0", "--stream.target", "local",
                           "--obs.enabled", "true", "--obs.port", str(obs.port)], tmp_path / "run",
                          env={"OBS_WEBSOCKET_PASSWORD": PASSWORD})
        # Only the app talks to OBS until it has set OBS up: OBS 29.0's websocket runs requests on worker
        # threads, and a GetCurrentProgramScene racing the app's switch to its new scene collection crashes
        # OBS ("basic_string: construction from null"), an OBS bug that the app's own single thread avoids.
        stats = wait_for(lambda: (s := app.status()["obs"]) and s.get("connected") and s, "OBS stats")
        assert obs.is_running(), tail(obs)
        wait_for(lambda: program_scene(obs.port) == "Live", "OBS to show the Live scene once the agent plays")
        text = wait_for(lambda: ask(obs.port, "get_input_settings", "HUD env steps").input_settings.get("text"),
                        "the HUD text source")
        assert text.startswith("env steps: ")
        assert PASSWORD not in str(stats)
        assert app.stop() == 0
        assert program_scene(obs.port) == "BRB"
        assert PASSWORD not in app.output
