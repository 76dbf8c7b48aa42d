"""ScreenEnv and the Clash Royale live path on a real Xvfb: grabs, clicks and keys arrive, detectors fire,
processes end with their owner, and a vanished display is a clear error."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import EnvError
from envs.screen.clash import ClashRoyaleEnv
from envs.screen.display import VirtualDisplay
from envs.screen.env import ScreenEnv
from tests.integration.screen_frames import FrameWindow, clash_frame

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed")]

RED, GREEN, YELLOW = (220, 30, 30), (30, 220, 30), (240, 220, 20)
WINDOW = (40, 30, 160, 120)
"""Where the test window sits on the display: x, y, width, height."""


def is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_until(condition, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def solid(rgb, size=WINDOW[2:]) -> np.ndarray:
    return np.full((size[1], size[0], 3), rgb, np.uint8)


@pytest.fixture(scope="module")
def display():
    virtual = VirtualDisplay((1024, 768))
    yield virtual.name
    virtual.close()


@pytest.fixture
def window(display):
    win = FrameWindow(display, solid(RED), *WINDOW[:2])
    yield win
    win.close()


def test_virtual_display_starts_and_stops_cleanly() -> None:
    virtual = VirtualDisplay((320, 240))
    number = virtual.name.lstrip(":")
    assert virtual.name.startswith(":") and number.isdigit()
    assert Path(f"/tmp/.X11-unix/X{number}").exists() and not is_gone(virtual.pid)
    virtual.close()
    assert is_gone(virtual.pid), "Xvfb is still running after close()"
    assert not Path(f"/tmp/.X{number}-lock").exists() and not Path(f"/tmp/.X11-unix/X{number}").exists()
    virtual.close()  # a second close is harmless


def screen_env(display: str, **options) -> ScreenEnv:
    return ScreenEnv(32, display=display, region=WINDOW, decision_hz=120, **options)


def test_grabs_show_the_window_and_clicks_and_keys_arrive(display, window) -> None:
    env = screen_env(display, actions=("noop", "click:10,20", "key:a", "key:ctrl+n", "move:150,110"))
    try:
        obs, _ = env.reset()
        assert env.render().shape == (120, 160, 3)
        assert np.abs(obs["image"].astype(int) - RED).max() <= 1
        for action in (1, 2, 3, 4):
            env.step(action)
        keycode = env.screen.keycode
        events = window.events(expected=4)
        assert events == [("click", 10, 20), ("key", keycode("a"), 0), ("key", keycode("ctrl"), 0),
                          ("key", keycode("n"), 4)]  # 4 = ControlMask: n arrived with ctrl held
        assert env.action_names == ("noop", "click:10,20", "key:a", "key:ctrl+n", "move:150,110")
    finally:
        env.close()


def test_detectors_end_the_episode_and_pay_rewards(display, window) -> None:
    env = screen_env(display, end_when=("pixel:5,5,#1edc1e,20,1",), reward_when=("pixel:100,100,#f0dc14,20,0.5",))
    try:
        env.reset()
        assert env.step(0)[1:4] == (0.0, False, False)
        window.show(solid(YELLOW))
        assert env.step(0)[1:4] == (0.5, False, False)
        assert env.step(0)[1:4] == (0.0, False, False), "a reward detector pays once per rising edge"
        window.show(solid(GREEN))
        _, reward, terminated, truncated, info = env.step(0)
        assert (reward, terminated, truncated) == (1.0, True, False)
        assert info["episode"] == {"ended_by": "pixel:5,5,#1edc1e,20,1"}
        # The game-over screen is still up after the reset (the program has not taken its reset actions yet):
        # the new episode must not end, nor pay again, until the end screen shows anew.
        env.reset()
        assert env.step(0)[1:4] == (0.0, False, False)
        window.show(solid(YELLOW))
        env.step(0)
        window.show(solid(GREEN))
        assert env.step(0)[1:4] == (1.0, True, False)
    finally:
        env.close()


def test_screen_env_passes_the_gymnasium_checker(display, window) -> None:
    env = envs.make("screen", image_size=32, display=display, region=WINDOW, decision_hz=120,
                    actions=("noop", "click:80,60"))
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_default_screen_env_owns_a_private_display() -> None:
    env = envs.make("screen", image_size=16, decision_hz=120)
    try:
        check_env(env, skip_render_check=True)
        pid = env.screen.virtual.pid
        assert env.region == (0, 0, 1024, 768)
    finally:
        env.close()
    assert is_gone(pid)


@pytest.mark.parametrize(("action", "doing"), [
    pytest.param(0, "a screen grab", id="grab"),
    pytest.param(1, "a click", id="click"),
])
def test_killing_the_display_gives_a_clear_error(action, doing) -> None:
    env = ScreenEnv(16, screen_size=(320, 240), decision_hz=120, actions=("noop", "click:5,5"))
    try:
        env.reset()
        virtual = env.screen.virtual
        os.kill(virtual.pid, signal.SIGTERM)
        wait_until(lambda: virtual.process.exit_code() is not None, "Xvfb to exit")
        with pytest.raises(EnvError) as caught:
            env.step(action)
        assert str(caught.value) == (f"display {env.screen.name} is gone (the X connection broke during {doing}); "
                                     "is the X server (Xvfb, or the display of the emulator window) still running?")
    finally:
        env.close()


def test_program_runs_on_the_display_and_ends_with_the_env(display) -> None:
    env = ScreenEnv(16, display=display, decision_hz=120, command=("xev", "-root"))
    pid = env.program.pid
    try:
        env.reset()
        assert env.program.exit_code() is None
    finally:
        env.close()
    assert is_gone(pid)


def test_a_program_that_exits_is_a_clear_error(display) -> None:
    env = ScreenEnv(16, display=display, decision_hz=120, command=("true",))
    try:
        wait_until(lambda: env.program.exit_code() is not None, "true to exit")
        with pytest.raises(EnvError) as caught:
            env.reset()
        assert str(caught.value) == (f"the program 'true' on display {display} exited with code 0 (its output: "
                                     "none); check screen.command")
    finally:
        env.close()


@pytest.mark.parametrize(("options", "message"), [
    pytest.param({"region": (1000, 0, 100, 100)}, "screen.region = [1000, 0, 100, 100] reaches beyond the 1024x768 "
                 "screen of display {display}; make it fit inside", id="region-off-screen"),
    pytest.param({"region": WINDOW, "actions": ("noop", "click:160,5")}, "screen.actions[1] = 'click:160,5': (160, "
                 "5) lies outside the 160x120 region; coordinates are relative to screen.region", id="click-outside"),
    pytest.param({"actions": ("key:ctrl+nokey",)}, "key 'nokey' is not on the keyboard of display {display}; use "
                 "an X keysym name (a, space, Return, F1, ...) or one of alt, backspace, ctrl, down, enter, esc, "
                 "left, right, shift, tab, up", id="unknown-key"),
    pytest.param({"command": ("no-such-game",)}, "no-such-game: program 'no-such-game' not found on PATH; install "
                 "it or give its full path", id="missing-program"),
])
def test_bad_options_name_what_to_fix(display, options, message) -> None:
    with pytest.raises(EnvError) as caught:
        ScreenEnv(16, display=display, **options)
    assert str(caught.value) == message.format(display=display)


def test_unreachable_display_is_a_clear_error() -> None:
    with pytest.raises(EnvError, match=r"^display :987 cannot be opened \(.*\); start its X server, or use '' to "
                                       r"let the env start a private Xvfb$"):
        ScreenEnv(16, display=":987")


def test_clash_plays_a_live_window_through_the_screen_device(display) -> None:
    win = FrameWindow(display, clash_frame(elixir=4), 10, 20)
    env = ClashRoyaleEnv(32, display=display, region=(10, 20, 368, 652), decision_hz=30, tap_gap_s=0.0)
    try:
        obs, _ = env.reset()
        assert int(obs["log_elixir"]) == 4 and obs["action_mask"].all()
        env.step(1)
        assert win.events(expected=2) == [("click", 114, 579), ("click", 78, 325)]
        win.show(clash_frame(result="win"))
        _, reward, terminated, _, info = env.step(0)
        assert (reward, terminated, info["episode"]["result"]) == (1.0, True, "win")
    finally:
        env.close()
        win.close()
