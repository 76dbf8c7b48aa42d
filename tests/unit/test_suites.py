"""Yardstick suites: Atari preprocessing, DMC pixels, PixelCatch rules and pixels, the Gymnasium adapter."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import ale_py
import dm_env
import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import EnvError
from envs.common import resize
from envs.suites import dmc  # sets MUJOCO_GL before anything imports dm_control
from envs.suites.atari import AtariEnv, game_names
from envs.suites.catch import BACKGROUND, BALL, PADDLE, PixelCatch, cell_bounds
from envs.suites.config import AtariConfig, DmcConfig
from envs.suites.gym_adapter import GymPixels

ROOT = Path(__file__).resolve().parents[2]
UP, DOWN = 2, 3  # Pong's minimal action set: noop, fire, right (up), left (down), rightfire, leftfire


# ---------------------------------------------------------------------------------------------------------
# Registration and the constructor contract


@pytest.mark.parametrize(("env_id", "task", "options"), [
    pytest.param("atari", "pong", "atari", id="atari"),
    pytest.param("atari/breakout", "breakout", "atari", id="atari-task"),
    pytest.param("dmc", "cartpole_balance", "dmc", id="dmc"),
    pytest.param("dmc/ball_in_cup_catch", "ball_in_cup_catch", "dmc", id="dmc-task"),
    pytest.param("catch", None, None, id="catch"),
    pytest.param("gym/MountainCar-v0", "MountainCar-v0", None, id="gym-task"),
])
def test_suite_ids_resolve_to_task_and_options(env_id, task, options) -> None:
    found, parsed = envs.parse_id(env_id)
    assert (parsed, found.options) == (task, options)


def test_suites_package_imports_only_the_registry() -> None:
    tree = ast.parse((ROOT / "envs/suites/__init__.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported == {"__future__", "envs.registry"}


@pytest.mark.parametrize(("cls", "config"), [
    pytest.param(AtariEnv, AtariConfig, id="atari"),
    pytest.param(dmc.DmcEnv, DmcConfig, id="dmc"),
    pytest.param(PixelCatch, None, id="catch"),
    pytest.param(GymPixels, None, id="gym"),
])
def test_constructor_options_are_the_config_fields(cls, config) -> None:
    params = set(inspect.signature(cls).parameters) - {"task", "image_size", "render_mode"}
    assert params == ({f.name for f in dataclasses.fields(config)} if config else set())


@pytest.mark.parametrize(("env_id", "action_space"), [
    pytest.param("atari/pong", gym.spaces.Discrete(6), id="atari-pong"),
    pytest.param("atari/breakout", gym.spaces.Discrete(4), id="atari-breakout"),
    pytest.param("dmc/cartpole_balance", gym.spaces.Box(-1, 1, (1,), np.float32), id="dmc-cartpole"),
    pytest.param("dmc/walker_walk", gym.spaces.Box(-1, 1, (6,), np.float32), id="dmc-walker"),
    pytest.param("catch", gym.spaces.Discrete(3), id="catch"),
    pytest.param("gym/CartPole-v1", gym.spaces.Discrete(2), id="gym-cartpole"),
    pytest.param("gym/Pendulum-v1", gym.spaces.Box(-2, 2, (1,), np.float32), id="gym-pendulum"),
])
def test_spaces_and_dtypes_as_the_app_makes_them(env_id, action_space) -> None:
    env = envs.make_from_config(envs.EnvConfig(id=env_id, image_size=32))
    try:
        assert env.action_space == action_space
        assert env.observation_space == gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)})
        obs, _ = env.reset(seed=0)
        env.action_space.seed(0)
        step = env.step(env.action_space.sample())
        for o in (obs, step[0]):
            assert o["image"].dtype == np.uint8 and o["image"].shape == (32, 32, 3)
        assert type(step[1]) is float and type(step[2]) is bool and type(step[3]) is bool
    finally:
        env.close()


@pytest.mark.parametrize(("env_id", "differs"), [
    pytest.param("dmc/cartpole_balance", True, id="dmc-random-start"),
    pytest.param("catch", True, id="catch-ball-column"),
    pytest.param("gym/CartPole-v1", True, id="gym-random-start"),
    pytest.param("atari/pong", False, id="atari-same-title-screen"),  # seeds differ in no-ops and sticky draws
])
def test_same_seed_same_first_image_and_other_seeds_as_expected(env_id, differs) -> None:
    env = envs.make(env_id, image_size=32)
    try:
        first = [env.reset(seed=s)[0]["image"] for s in (1, 1, 2, 3)]
        assert np.array_equal(first[0], first[1])
        assert any(not np.array_equal(first[0], f) for f in first[2:]) == differs
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------------------
# Atari


@pytest.fixture(scope="module")
def pong() -> AtariEnv:
    env = AtariEnv("pong", image_size=64, sticky=False, noops=0)
    yield env
    env.close()


@pytest.mark.parametrize(("name", "message"), [
    pytest.param("pongg", "unknown Atari game 'pongg' (did you mean 'pong'?)", id="typo"),
    pytest.param("spaceinvaders", "unknown Atari game 'spaceinvaders' (did you mean 'space_invaders' or 'space_war'?)",
                 id="no-underscore"),
    pytest.param("zzzz", None, id="nothing-close"),
])
def test_unknown_atari_game_suggests_names(name, message) -> None:
    message = message or f"unknown Atari game 'zzzz' (valid games: {', '.join(game_names())})"
    with pytest.raises(EnvError) as caught:
        AtariEnv(name)
    assert str(caught.value) == message


def test_atari_action_names_are_ale_meanings(pong) -> None:
    assert pong.action_names == ("noop", "fire", "right", "left", "rightfire", "leftfire")
    assert AtariEnv("pong", full_action_space=True).action_names[:4] == ("noop", "fire", "up", "right")


@pytest.mark.parametrize("repeat", [pytest.param(1, id="repeat-1"), pytest.param(4, id="repeat-4"),
                                    pytest.param(7, id="repeat-7")])
def test_atari_step_plays_repeat_frames(repeat) -> None:
    env = AtariEnv("pong", repeat=repeat, noops=0)
    env.reset(seed=0)
    assert env.ale.getEpisodeFrameNumber() == 0
    for _ in range(3):
        env.step(UP)
    assert env.ale.getEpisodeFrameNumber() == 3 * repeat


def test_atari_image_is_the_max_of_the_last_two_frames(pong) -> None:
    pong.reset(seed=0)
    for _ in range(2):
        pong.step(DOWN)
    before = pong.ale.cloneState()
    obs, *_ = pong.step(DOWN)
    pong.ale.restoreState(before)
    screens = []
    for _ in range(4):
        pong.ale.act(pong.ale.getMinimalActionSet()[DOWN])
        screens.append(pong.ale.getScreenRGB())
    pooled = np.maximum(screens[2], screens[3])
    assert not np.array_equal(pooled, screens[3]), "the paddle moves, so pooling must show in the image"
    assert np.array_equal(pong.render(), pooled)
    assert np.array_equal(obs["image"], resize(pooled, 64))


def test_atari_gray_replicates_the_luminance() -> None:
    env = AtariEnv("pong", gray=True, noops=0)
    image = env.reset(seed=0)[0]["image"]
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
    expected = resize(env.ale.getScreenGrayscale(), 64)
    assert np.array_equal(image[..., 0], expected)


@pytest.mark.parametrize(("sticky", "is_seed_dependent"), [
    pytest.param(False, False, id="off-actions-are-exact"),
    pytest.param(True, True, id="on-repeats-vary-with-seed"),
])
def test_atari_sticky_actions(sticky, is_seed_dependent) -> None:
    env = AtariEnv("pong", sticky=sticky, noops=0)
    actions = [UP] * 5 + [DOWN] * 5 + [UP] * 10 + [DOWN] * 10

    def play(seed: int) -> np.ndarray:
        env.reset(seed=seed)
        return np.stack([env.step(a)[0]["image"] for a in actions])

    assert np.array_equal(play(1), play(1))
    assert (not np.array_equal(play(1), play(2))) == is_seed_dependent


class RecordingEmulator:
    """An ALE stand-in that records the action of every emulated frame and never ends the game."""

    def __init__(self) -> None:
        self.frames: list[int] = []

    def act(self, action: ale_py.Action) -> int:
        self.frames.append(action.value)
        return 0

    def reset_game(self) -> None:
        self.frames.clear()

    def game_over(self, with_truncation: bool = True) -> bool:
        return False

    def game_truncated(self) -> bool:
        return False

    def getScreenRGB(self, out: np.ndarray) -> None:
        out[:] = 0


@pytest.mark.parametrize(("sticky", "first_kept", "second_kept"), [
    pytest.param(False, 0.0, 0.0, id="off"),
    pytest.param(True, 0.25, 0.25**2, id="on-each-frame-a-quarter"),
])
def test_atari_sticky_frames_keep_the_previous_action(sticky, first_kept, second_kept) -> None:
    env = AtariEnv("pong", sticky=sticky, noops=0)
    env.ale = RecordingEmulator()
    env.reset(seed=0)
    chosen = [UP, DOWN] * 1500  # every step changes the action, so a kept frame shows
    for action in chosen:
        env.step(action)
    frames = np.array(env.ale.frames).reshape(len(chosen), 4)
    ale_ids = np.array([ale_py.Action[env.action_names[a].upper()].value for a in chosen])
    # Each step changes the action: its k-th frame still plays the old one only if all k frames kept it.
    assert np.mean(frames[:, 0] != ale_ids) == pytest.approx(first_kept, abs=0.03)
    assert np.mean(frames[:, 1] != ale_ids) == pytest.approx(second_kept, abs=0.02)
    assert frames[0, 0] in (ale_ids[0], ale_py.Action.NOOP.value), "after a reset the held action is noop"
    # A frame only keeps what the previous frame played: never an action older than that.
    previous = np.concatenate([[0], frames.ravel()[:-1]]).reshape(frames.shape)
    assert np.all((frames == ale_ids[:, None]) | (frames == previous))


@pytest.mark.parametrize(("noops", "expected"), [
    pytest.param(0, {0}, id="none"),
    pytest.param(3, {0, 1, 2, 3}, id="up-to-3"),
])
def test_atari_noop_starts_are_bounded_and_seeded(noops, expected) -> None:
    env = AtariEnv("pong", noops=noops)
    env.reset(seed=0)
    frames = [env.ale.getEpisodeFrameNumber()]
    for _ in range(24):
        env.reset()
        frames.append(env.ale.getEpisodeFrameNumber())
    assert set(frames) == expected


def test_atari_truncates_at_max_frames() -> None:
    env = AtariEnv("pong", noops=0, max_frames=40)
    env.reset(seed=0)
    ends = [env.step(UP)[2:4] for _ in range(10)]
    assert ends == [(False, False)] * 9 + [(False, True)]


def test_atari_losing_a_life_does_not_end_the_episode() -> None:
    env = AtariEnv("breakout", noops=0)
    env.reset(seed=0)
    env.action_space.seed(0)
    lives, steps, terminated, truncated = [env.ale.lives()], 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        lives.append(env.ale.lives())
        steps += 1
    assert terminated and not truncated
    assert lives[0] == 5 and lives[-1] == 0 and lives[-2] == 1
    assert 4 * (steps - 1) < env.episode_info()["frames"] <= 4 * steps


# ---------------------------------------------------------------------------------------------------------
# DMC


@pytest.fixture(scope="module")
def cartpole() -> dmc.DmcEnv:
    env = dmc.DmcEnv("cartpole_balance", image_size=32)
    yield env
    env.close()


@pytest.mark.parametrize(("name", "parts"), [
    pytest.param("cartpole_swingup", ("cartpole", "swingup"), id="simple"),
    pytest.param("ball_in_cup_catch", ("ball_in_cup", "catch"), id="underscored-domain"),
    pytest.param("cartpole_balance_sparse", ("cartpole", "balance_sparse"), id="underscored-task"),
    pytest.param("humanoid_CMU_run", ("humanoid_CMU", "run"), id="mixed-case"),
])
def test_dmc_task_names_split_into_domain_and_task(name, parts) -> None:
    assert dmc.split_task(name) == parts


@pytest.mark.parametrize(("name", "message"), [
    pytest.param("cartpole_swingupp", "unknown DMC task 'cartpole_swingupp' (did you mean 'cartpole_swingup' or "
                 "'cartpole_swingup_sparse' or 'acrobot_swingup'?)", id="typo"),
    pytest.param("walker", "unknown DMC task 'walker' (did you mean 'walker_run' or 'walker_walk' or "
                 "'walker_stand'?)", id="domain-only"),
    pytest.param("zz", None, id="nothing-close"),
])
def test_unknown_dmc_task_suggests_names(name, message) -> None:
    message = message or f"unknown DMC task 'zz' (valid tasks: {', '.join(dmc.task_names())})"
    with pytest.raises(EnvError) as caught:
        envs.make(f"dmc/{name}")
    assert str(caught.value) == message


def test_dmc_seed_gives_the_start_of_a_fresh_suite_load(cartpole) -> None:
    from dm_control import suite

    cartpole.reset(seed=7)
    fresh = suite.load("cartpole", "balance", task_kwargs={"random": 7})
    fresh.reset()
    assert np.array_equal(cartpole.suite_env.physics.get_state(), fresh.physics.get_state())
    cartpole.reset(seed=8)
    assert not np.array_equal(cartpole.suite_env.physics.get_state(), fresh.physics.get_state())


def test_dmc_reward_is_summed_over_repeats_and_episode_truncates_at_the_time_limit(cartpole) -> None:
    cartpole.reset(seed=0)
    cartpole.action_space.seed(0)
    rewards, ends = [], []
    for _ in range(500):  # 1000 physics steps of 10 ms at repeat 2
        _, reward, terminated, truncated, _ = cartpole.step(cartpole.action_space.sample())
        rewards.append(reward)
        ends.append((terminated, truncated))
    assert 1.5 < rewards[0] <= 2.0, "balanced at the start: about 1 per physics step, summed"
    assert all(0.0 <= r <= 2.0 for r in rewards)
    assert ends == [(False, False)] * 499 + [(False, True)]


def test_repeat_step_stops_at_the_time_limit() -> None:
    from dm_control import suite

    env = suite.load("cartpole", "balance", task_kwargs={"random": 0, "time_limit": 0.1})  # 10 physics steps
    env.reset()
    steps = []
    while not steps or not steps[-1][1].last():
        steps.append(dmc.repeat_step(env, np.zeros(1), 3))
    assert len(steps) == 4 and steps[-1][1].discount == 1.0
    assert 0.9 < steps[-1][0] <= 1.0, "the last agent step holds 1 physics step"


class EndsAtSecondStep:
    """A dm_env stand-in whose episode ends with discount 0 at its second step."""

    def __init__(self) -> None:
        self.calls = 0

    def step(self, action: np.ndarray) -> dm_env.TimeStep:
        self.calls += 1
        return dm_env.termination(0.5, None) if self.calls == 2 else dm_env.transition(0.25, None)


def test_repeat_step_stops_at_a_termination() -> None:
    env = EndsAtSecondStep()
    reward, time_step = dmc.repeat_step(env, np.zeros(1), 4)
    assert (reward, env.calls, dmc.end_flags(time_step)) == (0.75, 2, (True, False))


@pytest.mark.parametrize(("time_step", "flags"), [
    pytest.param(dm_env.transition(1.0, None), (False, False), id="mid"),
    pytest.param(dm_env.truncation(1.0, None), (False, True), id="time-limit"),
    pytest.param(dm_env.termination(1.0, None), (True, False), id="task-ended"),
])
def test_dmc_end_flags(time_step, flags) -> None:
    assert dmc.end_flags(time_step) == flags


def test_dmc_actions_map_onto_the_actuator_range() -> None:
    low, high = np.array([-1.0, -0.8, -1.0]), np.array([1.1, 0.8, 1.0])  # quadruped's hip, knee, ankle
    scaled = dmc.scale_action(np.array([0.0, 1.0, 2.0], np.float32), low, high)
    np.testing.assert_allclose(scaled, [0.05, 0.8, 1.0])


# ---------------------------------------------------------------------------------------------------------
# PixelCatch

# Cell bounds at 64 px, typed in: rows i*64//10, columns i*64//5.
ROW_BOUNDS_64 = [(0, 6), (6, 12), (12, 19), (19, 25), (25, 32), (32, 38), (38, 44), (44, 51), (51, 57), (57, 64)]
COLUMN_BOUNDS_64 = [(0, 12), (12, 25), (25, 38), (38, 51), (51, 64)]


def test_catch_cells_split_the_square() -> None:
    assert cell_bounds(10, 64) == ROW_BOUNDS_64
    assert cell_bounds(5, 64) == COLUMN_BOUNDS_64


def ball_and_paddle_columns(image: np.ndarray) -> tuple[int, int]:
    """Return the board columns of the ball and of the paddle (-1 if hidden), read from a 64x64 image."""
    is_ball = np.all(image == BALL, axis=2)
    ball_x = np.flatnonzero(is_ball.any(axis=0))
    paddle_x = np.flatnonzero(np.all(image[-1] == PADDLE, axis=1))
    column_of = lambda x: next(i for i, (left, right) in enumerate(COLUMN_BOUNDS_64) if left <= x < right)
    return column_of(ball_x[0]) if ball_x.size else -1, column_of(paddle_x[0]) if paddle_x.size else -1


def expected_board(ball: tuple[int, int], paddle_column: int) -> np.ndarray:
    image = np.empty((64, 64, 3), np.uint8)
    image[:] = BACKGROUND
    (top, bottom), (left, right) = ROW_BOUNDS_64[9], COLUMN_BOUNDS_64[paddle_column]
    image[top:bottom, left:right] = PADDLE
    (top, bottom), (left, right) = ROW_BOUNDS_64[ball[0]], COLUMN_BOUNDS_64[ball[1]]
    image[top:bottom, left:right] = BALL
    return image


def test_catch_scripted_episode_pixels_and_reward() -> None:
    env = PixelCatch(image_size=64)
    obs, _ = env.reset(seed=0)
    ball_column, _ = ball_and_paddle_columns(obs["image"])
    assert np.array_equal(obs["image"], expected_board((0, ball_column), 2))
    assert tuple(obs["image"][0, COLUMN_BOUNDS_64[ball_column][0]]) == (255, 96, 32)
    assert tuple(obs["image"][63, 25]) == (64, 208, 255) and tuple(obs["image"][30, 0]) == (16, 16, 32)
    # Move the paddle to the wall away from the ball, then wait: a miss, told only at the 9th step.
    away = 0 if ball_column >= 2 else 2
    far_wall = 0 if ball_column >= 2 else 4
    steps = [env.step(away) for _ in range(9)]
    assert [s[1] for s in steps] == [0.0] * 8 + [-1.0]
    assert [s[2] for s in steps] == [False] * 8 + [True] and not any(s[3] for s in steps)
    assert np.array_equal(steps[3][0]["image"], expected_board((4, ball_column), far_wall))
    assert env.episode_info() == {"caught": False}


def test_catch_ball_is_drawn_over_the_paddle_when_caught() -> None:
    env = PixelCatch(image_size=64)
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        if ball_and_paddle_columns(obs["image"])[0] == 2:
            break
    steps = [env.step(1) for _ in range(9)]  # stay: the paddle starts in column 2
    assert steps[-1][1:3] == (1.0, True)
    assert np.array_equal(steps[-1][0]["image"], expected_board((9, 2), 2))
    assert env.episode_info() == {"caught": True}


def test_catch_random_policy_mean_return() -> None:
    env = PixelCatch(image_size=16)
    rng = np.random.default_rng(0)
    returns = []
    for seed in range(2000):
        env.reset(seed=seed)
        terminated, reward = False, 0.0
        while not terminated:
            _, reward, terminated, _, _ = env.step(int(rng.integers(3)))
        returns.append(reward)
    assert -0.75 < np.mean(returns) < -0.45


def test_catch_perfect_policy_from_pixels_always_catches() -> None:
    env = envs.make_from_config(envs.EnvConfig(id="catch", image_size=64))
    for seed in range(200):
        obs, _ = env.reset(seed=seed)
        terminated, info = False, {}
        while not terminated:
            ball, paddle = ball_and_paddle_columns(obs["image"])
            obs, _, terminated, _, info = env.step(1 + int(np.sign(ball - paddle)))
        assert info["episode"] == {"caught": True, "length": 9, "return": 1.0}, seed


# ---------------------------------------------------------------------------------------------------------
# Gymnasium adapter


def test_gym_adapter_passes_reward_and_termination_through() -> None:
    env = GymPixels("CartPole-v1", image_size=64)
    raw = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=5)
    raw.reset(seed=5)
    assert np.array_equal(obs["image"], resize(env.render(), 64)) and env.render().shape == (400, 600, 3)
    for _ in range(500):
        step = env.step(0)  # always push left: the pole falls within a few dozen steps
        raw_step = raw.step(0)
        assert step[1:4] == (1.0, *raw_step[2:4])
        if step[2]:
            break
    assert step[2] and not step[3]
    env.close()


def test_gym_adapter_truncates_at_the_registered_time_limit() -> None:
    env = GymPixels("MountainCar-v0", image_size=16)
    env.reset(seed=0)
    ends = [env.step(1)[2:4] for _ in range(200)]  # no push never reaches the flag
    assert ends == [(False, False)] * 199 + [(False, True)]
    env.close()


@pytest.mark.parametrize(("task", "message"), [
    pytest.param("CartPol-v1", "unknown Gymnasium env 'CartPol-v1' (did you mean 'CartPole-v1' or 'CartPole-v0' or "
                 "'phys2d/CartPole-v1'?)", id="typo"),
    pytest.param("cartpole", "unknown Gymnasium env 'cartpole' (did you mean 'CartPole-v1' or 'CartPole-v0'?)",
                 id="no-version"),
    pytest.param("qqqqqqqq", "unknown Gymnasium env 'qqqqqqqq' (`python -c 'import gymnasium; "
                 "gymnasium.pprint_registry()'` lists the ids)", id="nothing-close"),
])
def test_unknown_gym_id_suggests_ids(task, message) -> None:
    with pytest.raises(EnvError) as caught:
        envs.make(f"gym/{task}")
    assert str(caught.value) == message


class NoFrames(gym.Env):
    """A Gymnasium env without an rgb_array render mode."""

    metadata = {"render_modes": []}
    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode


@pytest.mark.filterwarnings("ignore:.*not in the possible render_modes")
def test_gym_env_without_frames_is_refused() -> None:
    if "DreamStreamTest/NoFrames-v0" not in gym.registry:
        gym.register("DreamStreamTest/NoFrames-v0", entry_point=NoFrames)
    with pytest.raises(EnvError) as caught:
        envs.make("gym/DreamStreamTest/NoFrames-v0")
    assert str(caught.value) == ("Gymnasium env 'DreamStreamTest/NoFrames-v0' cannot render rgb_array frames, "
                                 "so it cannot be played from pixels")
