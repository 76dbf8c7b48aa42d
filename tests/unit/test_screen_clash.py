"""Clash Royale adapter against a ReplayDevice of synthetic frames: taps, pacing, detectors, mask, rewards."""

from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import EnvError
from envs.screen.calibrate import describe_frame, main, parse_settings
from envs.screen.clash import ClashLayout, ClashRoyaleEnv, read_battle
from envs.screen.config import ClashConfig
from envs.screen.replay import ReplayDevice, Tap
from tests.integration.screen_frames import clash_frame, menu_frame

BATTLE = clash_frame()
CARD_X, CARD_Y = (114, 183, 252, 321), 579
"""Hand card centres at 368x652 with the default config (ClashRoyaleBuildABot measured 114.5 + 69 k, 579.5)."""
CELL_X, CELL_Y = (78, 183, 287), (325, 396, 466)
"""Placement cell centres of the default 3x3 grid at 368x652, hand-computed from clash.own_half."""


def make_env(frames, **options) -> ClashRoyaleEnv:
    return ClashRoyaleEnv(32, device=ReplayDevice(frames), **options)


def write_frames(directory, frames) -> None:
    directory.mkdir(exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(directory / f"frame-{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def every_card_action():
    for card in range(4):
        for row in range(3):
            for col in range(3):
                action = 1 + card * 9 + row * 3 + col
                yield pytest.param(action, [(CARD_X[card], CARD_Y), (CELL_X[col], CELL_Y[row])],
                                   id=f"card{card + 1}-col{col}-row{row}")


@pytest.mark.parametrize(("action", "taps"), [pytest.param(0, [], id="wait"), *every_card_action()])
def test_action_taps_the_card_then_the_cell_centre(action, taps) -> None:
    env = make_env([BATTLE], decision_hz=2.0, tap_gap_s=0.05)
    env.reset()
    env.step(action)
    assert [(t.x, t.y) for t in env.device.taps] == taps
    if taps:
        assert [t.t_s for t in env.device.taps] == pytest.approx([0.0, 0.05])


@pytest.mark.parametrize(("size", "card", "cell"), [
    pytest.param((368, 652), (114, 579), (78, 325), id="buildabot-size"),
    pytest.param((736, 1304), (228, 1159), (156, 650), id="twice"),
    pytest.param((720, 1280), (223, 1137), (153, 638), id="phone-720p"),
])
def test_geometry_scales_with_the_window(size, card, cell) -> None:
    layout = ClashLayout(*size, ClashConfig())
    assert layout.taps(1) == [card, cell]


def test_grid_from_config_sets_the_action_count_and_names() -> None:
    env = make_env([BATTLE], grid=(4, 2))
    assert env.action_space == gym.spaces.Discrete(1 + 4 * 8)
    assert env.action_names[:3] == ("wait", "card1@0,0", "card1@1,0") and env.action_names[-1] == "card4@3,1"
    assert env.layout.decode(1 + 3 * 8 + 1 * 4 + 2) == (3, 2, 1)


def test_steps_are_paced_on_the_device_clock() -> None:
    env = make_env([BATTLE], decision_hz=4.0, tap_gap_s=0.1)
    env.reset()
    for action in (1, 0, 10):
        env.step(action)
    assert env.device.taps == [Tap(0.0, 114, 579), Tap(0.1, 78, 325), Tap(0.5, 183, 579), Tap(0.6, 78, 325)]
    assert env.device.now() == pytest.approx(0.75)


def test_reset_waits_for_a_battle_and_taps_the_reset_taps() -> None:
    env = make_env([menu_frame(), menu_frame(seed=1), BATTLE], decision_hz=2.0, reset_taps=((0.5, 0.74), (0.1, 0.2)))
    obs, _ = env.reset()
    assert env.device.taps == [Tap(0.0, 184, 482), Tap(1.0, 36, 130)]
    assert env.device.frames_served == 3 and env.device.now() == pytest.approx(2.0 + 2 * 0.5)
    assert obs["action_mask"].all()


def test_reset_gives_up_when_no_battle_shows() -> None:
    env = make_env([menu_frame()], reset_timeout_s=5.0)
    with pytest.raises(EnvError) as caught:
        env.reset()
    assert str(caught.value) == (
        "no battle on screen after 5 s of waiting; start a friendly battle or a training camp match (Supercell "
        "forbids bots in ladder play), or check clash.region and recalibrate the elixir bar colours")


@pytest.mark.parametrize(("result", "reward"), [
    pytest.param("win", 1.0, id="win"),
    pytest.param("loss", -1.0, id="loss"),
    pytest.param("draw", 0.0, id="draw"),
])
def test_result_banner_ends_the_episode_with_its_reward(result, reward) -> None:
    env = make_env([BATTLE, clash_frame(elixir=6), clash_frame(result=result)], opponent="friendly: test")
    env.reset()
    first = env.step(0)
    assert first[1:4] == (0.0, False, False) and first[4] == {}
    obs, got, terminated, truncated, info = env.step(0)
    assert (got, terminated, truncated) == (reward, True, False)
    assert info["episode"] == {"result": result, "opponent": "friendly: test", "enemy_towers_destroyed": 0,
                               "own_towers_lost": 0, "illegal_actions": 0, "duration_s": 1.0}
    assert obs["action_mask"].tolist() == [True] + [False] * 36


def test_tower_shaping_pays_each_tower_once() -> None:
    frames = [BATTLE, clash_frame(enemy_towers=(False, True, True)), BATTLE,  # a unit hides the rubble
              clash_frame(enemy_towers=(False, True, True)), clash_frame(own_towers=(True, True, False),
                                                                          enemy_towers=(False, True, True)),
              clash_frame(result="loss")]
    env = make_env(frames, tower_reward=0.1)
    env.reset()
    rewards = [env.step(0)[1] for _ in range(5)]
    assert rewards == pytest.approx([0.1, 0.0, 0.0, -0.1, -1.0])
    info = env.episode_info()
    assert (info["enemy_towers_destroyed"], info["own_towers_lost"]) == (1, 1)


def test_towers_pay_nothing_by_default() -> None:
    env = make_env([BATTLE, clash_frame(enemy_towers=(False, False, True))])
    env.reset()
    _, reward, *_ = env.step(0)
    assert reward == 0.0 and env.episode_info()["enemy_towers_destroyed"] == 2


def test_battle_without_result_is_truncated() -> None:
    env = make_env([BATTLE], decision_hz=2.0, max_battle_s=1.0)
    env.reset()
    assert env.step(0)[2:4] == (False, False)
    _, _, terminated, truncated, info = env.step(0)
    assert (terminated, truncated, info["episode"]["result"]) == (False, True, None)


def cards(mask: np.ndarray) -> list[bool]:
    """Return, per hand card, whether its placement actions are allowed (all cells agree)."""
    blocks = mask[1:].reshape(4, 9)
    assert (blocks == blocks[:, :1]).all()
    return blocks[:, 0].tolist()


@pytest.mark.parametrize(("frame", "options", "expected"), [
    pytest.param(clash_frame(elixir=5), {}, [True] * 4, id="all-ready"),
    pytest.param(clash_frame(elixir=0, cards_ready=(False,) * 4), {}, [False] * 4, id="no-elixir"),
    pytest.param(clash_frame(elixir=4, cards_ready=(True, False, True, False)), {}, [True, False, True, False],
                 id="greyed-cards"),
    pytest.param(clash_frame(elixir=2), {"min_card_cost": 3}, [False] * 4, id="below-cheapest-card"),
    pytest.param(clash_frame(elixir=3), {"min_card_cost": 3}, [True] * 4, id="at-cheapest-card"),
])
def test_action_mask_follows_elixir_and_greyed_cards(frame, options, expected) -> None:
    obs, _ = make_env([frame], **options).reset()
    assert obs["action_mask"][0] and cards(obs["action_mask"]) == expected


def test_masked_card_taps_nothing_and_is_counted() -> None:
    env = make_env([clash_frame(elixir=1, cards_ready=(False, True, True, True))])
    env.reset()
    env.step(1)
    assert env.device.taps == [] and env.episode_info()["illegal_actions"] == 1


@pytest.mark.parametrize(("elixir",), [pytest.param(n, id=f"elixir-{n}") for n in range(11)])
def test_elixir_is_the_number_of_filled_segments(elixir) -> None:
    for size in ((368, 652), (720, 1280)):
        state = read_battle(clash_frame(size, elixir=elixir, seed=elixir), ClashLayout(*size, ClashConfig()))
        assert state.elixir == elixir and state.in_battle


@pytest.mark.parametrize(("frame", "in_battle", "result"), [
    pytest.param(BATTLE, True, None, id="battle"),
    pytest.param(menu_frame(), False, None, id="menu"),
    pytest.param(clash_frame(result="win"), False, "win", id="victory"),
    pytest.param(clash_frame(result="loss"), False, "loss", id="defeat"),
    pytest.param(clash_frame(result="draw"), False, "draw", id="draw"),
])
def test_battle_and_result_detection(frame, in_battle, result) -> None:
    state = read_battle(frame, ClashLayout(368, 652, ClashConfig()))
    assert (state.in_battle, state.result) == (in_battle, result)


def test_towers_standing_and_destroyed() -> None:
    frame = clash_frame(enemy_towers=(True, False, True), own_towers=(False, True, True))
    state = read_battle(frame, ClashLayout(368, 652, ClashConfig()))
    assert (state.enemy_towers, state.own_towers) == ((True, False, True), (False, True, True))


def test_observation_is_the_resized_window() -> None:
    obs, _ = make_env([BATTLE]).reset()
    assert obs["image"].shape == (32, 32, 3) and obs["image"].dtype == np.uint8
    assert int(obs["log_elixir"]) == 5 and obs["log_elixir"].dtype == np.int32


def test_passes_the_gymnasium_checker_on_a_replay_dir(tmp_path) -> None:
    write_frames(tmp_path / "rec", [BATTLE, clash_frame(elixir=3, seed=1), clash_frame(elixir=8, seed=2)])
    env = envs.make("clash-royale", image_size=32, replay_dir=str(tmp_path / "rec"))
    try:
        check_env(env, skip_render_check=True)
        assert env.render().shape == (652, 368, 3)
    finally:
        env.close()


@pytest.mark.parametrize(("options", "message"), [
    pytest.param({"grid": (0, 3)}, "clash.grid = [0, 3]: must be [columns, rows] with 1 to 18 columns and 1 to 15 "
                 "rows (the game's own tile grid)", id="grid"),
    pytest.param({"display": ""}, "clash.display = '': give the X display showing the emulator window (e.g. ':0'), "
                 "or set clash.replay_dir to replay recorded frames", id="no-display"),
    pytest.param({"hand": (0.5, 0.8, 0.4, 0.9)}, "clash.hand = [0.5, 0.8, 0.4, 0.9]: must be [left, top, right, "
                 "bottom] fractions of the window with 0 <= left < right <= 1 and 0 <= top < bottom <= 1",
                 id="box-order"),
    pytest.param({"own_towers": ((0.1, 0.6, 0.3, 0.7), (0.4, 0.7, 0.6, 1.2), (0.7, 0.6, 0.9, 0.7))},
                 "clash.own_towers[1] = [0.4, 0.7, 0.6, 1.2]: must be [left, top, right, bottom] fractions of the "
                 "window with 0 <= left < right <= 1 and 0 <= top < bottom <= 1", id="tower-box"),
    pytest.param({"elixir_rgb": (300, 0, 0)}, "clash.elixir_rgb = [300, 0, 0]: must be [r, g, b] with each value "
                 "between 0 and 255", id="colour"),
    pytest.param({"reset_taps": ((0.5, 1.5),)}, "clash.reset_taps[0] = [0.5, 1.5]: must be [x, y] fractions of the "
                 "window in [0, 1]", id="reset-tap"),
    pytest.param({"region": (0, 0, 0, 652)}, "clash.region = [0, 0, 0, 652]: must be [x, y, width, height] with x, "
                 "y >= 0 and width, height > 0", id="region"),
])
def test_config_errors_name_key_value_and_rule(options, message) -> None:
    with pytest.raises(EnvError) as caught:
        ClashRoyaleEnv(device=ReplayDevice([BATTLE]), **{"replay_dir": "", **options})
    assert str(caught.value) == message


def test_unknown_option_is_an_env_error() -> None:
    with pytest.raises(EnvError, match="env 'clash-royale': .*unexpected keyword argument 'colour'"):
        envs.make("clash-royale", replay_dir="x", colour="blue")


def test_replay_device_loops_rewinds_and_checks_its_frames() -> None:
    device = ReplayDevice([BATTLE, menu_frame()])
    layout = ClashLayout(368, 652, ClashConfig())
    assert [read_battle(device.grab(), layout).in_battle for _ in range(3)] == [True, False, True]
    device.rewind()
    assert read_battle(device.grab(), layout).in_battle and device.frames_served == 4
    mixed = ReplayDevice([BATTLE, clash_frame((720, 1280))])
    mixed.grab()
    with pytest.raises(EnvError) as caught:
        mixed.grab()
    assert str(caught.value) == ("replay frame #1 is 720x1280 but the first frame is 368x652; record every frame "
                                 "from the same window size")


@pytest.mark.parametrize(("frames", "message"), [
    pytest.param("empty", "replay directory '{dir}' holds no .png frames; record some with `python -m "
                 "envs.screen.calibrate record` or fix clash.replay_dir", id="empty-dir"),
    pytest.param([], "ReplayDevice got an empty list of frames; give at least one uint8[H, W, 3] array",
                 id="no-frames"),
    pytest.param([np.zeros((4, 4), np.uint8)], "replay frame #0 is uint8[4, 4]; frames must be uint8[height, width, "
                 "3] RGB", id="grey-frame"),
])
def test_replay_device_errors(frames, message, tmp_path) -> None:
    if frames == "empty":
        frames = tmp_path
    with pytest.raises(EnvError) as caught:
        ReplayDevice(frames)
    assert str(caught.value) == message.format(dir=tmp_path)


def test_calibration_report_measures_every_box() -> None:
    frame = clash_frame(elixir=6, cards_ready=(True, False, True, True), enemy_towers=(True, False, True))
    lines = describe_frame(frame, ClashConfig())
    assert lines[0] == ("reading: in_battle=True elixir=6 result=None cards_ready=[True, False, True, True] "
                        "enemy_towers=[True, False, True] own_towers=[True, True, True]")
    assert len(lines) == 1 + 10 + 4 + 6 + 1
    filled = [int(line.split("[")[1].split(",")[0]) for line in lines[1:11]]
    assert all(abs(r - 216) <= 3 for r in filled[:6]) and all(abs(r - 48) <= 3 for r in filled[6:])
    assert lines[12].startswith("card 2: rgb") and int(lines[12].rsplit(" ", 1)[1]) < 30


def test_calibration_settings_override_the_config() -> None:
    cfg = parse_settings(["elixir_rgb=[1, 2, 3]", "enemy_towers=[[0, 0, 0.1, 0.1], [0.2, 0, 0.3, 0.1], "
                                                   "[0.4, 0, 0.5, 0.1]]"])
    assert cfg.elixir_rgb == (1, 2, 3) and cfg.enemy_towers[2] == (0.4, 0, 0.5, 0.1)
    with pytest.raises(EnvError) as caught:
        parse_settings(["elixir_rgb=red"])
    assert str(caught.value) == "--set 'elixir_rgb=red': expected key=JSON, e.g. 'elixir_rgb=[216, 64, 224]'"


def test_calibration_measure_command_prints_a_report_per_frame(tmp_path, capsys) -> None:
    write_frames(tmp_path, [clash_frame(elixir=2), clash_frame(result="win")])
    assert main(["measure", str(tmp_path), "--set", "min_card_cost=2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "== frame 0" and out[1].startswith("reading: in_battle=True elixir=2 result=None")
    assert out[23] == "== frame 1" and "result=win" in out[24]


def test_a_battle_going_on_after_a_truncation_does_not_pay_its_fallen_towers_again() -> None:
    fallen = clash_frame(enemy_towers=(False, True, True))
    env = make_env([BATTLE, fallen, fallen, fallen, clash_frame(enemy_towers=(False, False, True))],
                   decision_hz=2.0, max_battle_s=1.0, tower_reward=0.1)
    env.reset()
    assert env.step(0)[1] == pytest.approx(0.1)
    assert env.step(0)[3] is True                        # truncated: the battle is still on
    env.reset()                                          # the same battle, one tower down already
    assert env.step(0)[1] == pytest.approx(0.1)          # only the king tower that falls now pays
    assert env.episode_info()["enemy_towers_destroyed"] == 2


def test_a_replay_device_keeps_the_newest_taps_and_counts_all() -> None:
    from envs.screen.replay import TAPS_KEPT

    device = ReplayDevice([BATTLE])
    for i in range(3 * TAPS_KEPT + 5):
        device.tap(i, 0)
    assert device.tap_count == 3 * TAPS_KEPT + 5
    assert TAPS_KEPT <= len(device.taps) < 2 * TAPS_KEPT and device.taps[-1].x == 3 * TAPS_KEPT + 4
    assert [t.x for t in device.taps] == list(range(3 * TAPS_KEPT + 5 - len(device.taps), 3 * TAPS_KEPT + 5))
