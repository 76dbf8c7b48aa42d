"""The app's overlay feed: chess arrows, learning-curve buffers, results, and dreams from a real agent."""

from __future__ import annotations

import numpy as np
import pytest

from app.broadcast_state import CURVES, FrameFeed, move_arrow
from overlays import OverlayConfig, OverlayState


@pytest.mark.parametrize(("uci", "white", "arrow"), [
    pytest.param("e2e4", True, (4.5 / 8, 6.5 / 8, 4.5 / 8, 4.5 / 8), id="white-bottom"),
    pytest.param("e2e4", False, (3.5 / 8, 1.5 / 8, 3.5 / 8, 3.5 / 8), id="black-bottom"),
    pytest.param("a8h1", True, (0.5 / 8, 0.5 / 8, 7.5 / 8, 7.5 / 8), id="corners"),
    pytest.param(None, True, None, id="no-move"),
])
def test_move_arrow_in_board_fractions(uci, white, arrow) -> None:
    got = move_arrow(uci, white)
    assert got == (pytest.approx(arrow) if arrow else None)


def test_curves_cover_the_whole_run_bounded_versioned_and_never_changed_in_place() -> None:
    feed = FrameFeed(OverlayConfig(curve_points=10), run_name="r", game="catch")
    first = feed.state({}).curves[0]
    for step in range(1, 26):
        feed.on_metrics_row(step, {"episode/score": float(step), "episode/length": 9.0}, offset=100 * step)
    curve = feed.state({}).curves[0]
    assert [c.label for c in feed.state({}).curves] == list(CURVES)
    # The whole run in at most 10 points, each the mean of its bin (value = step here), the newest included.
    assert len(curve.steps) <= 10 and curve.steps[0] < 3 and curve.steps[-1] > 23 and curve.version == 25
    np.testing.assert_allclose(curve.values, curve.steps)
    kept = feed.curves.curves["episode score"]  # and every value is in it once: the points are equal-weight bins
    assert sum(v for _, v in kept.points) * kept.per_point + sum(v for _, v in kept.pending) == sum(range(1, 26))
    assert len(first.steps) == 0 and first.version == 0  # an earlier snapshot is untouched
    feed.on_metrics_row(100, {"loss/image": 10.0, "loss/reward": 1.0, "loss/cont": 0.5, "loss/dyn": 2.0,
                              "loss/rep": 2.0, "fps/updates": None}, offset=2600)
    assert list(feed.state({}).curves[1].values) == [pytest.approx(13.7)]
    assert feed.curves.offset == 2600  # how far into metrics.jsonl the curves have read


def test_results_keep_the_last_ten_with_outcomes() -> None:
    feed = FrameFeed(OverlayConfig(), run_name="r", game="chess")
    for i in range(12):
        feed.on_episode(i, {"return": 1.0 if i % 2 else -1.0, "length": 40, "result": "win" if i % 2 else "loss"})
    state = feed.state({"env steps": 5}, action="e2e4", notice="hi")
    assert isinstance(state, OverlayState) and len(state.results) == 10
    assert [r.outcome for r in state.results[-2:]] == ["loss", "win"]
    assert state.hud == {"env steps": 5} and state.notice == "hi" and state.action == "e2e4"


def test_dreams_come_from_the_agent_and_never_span_episodes() -> None:
    import gymnasium as gym

    from app.config import load_blocks
    from trainer.agent import DreamerAgent
    from trainer.config import TrainerConfig

    obs_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)})
    agent = DreamerAgent(TrainerConfig(**load_blocks()["tiny"]["trainer"]), obs_space, gym.spaces.Discrete(3))
    feed = FrameFeed(OverlayConfig(dream_frames=8, imagine_horizon=4), run_name="r", game="g")
    rng = np.random.default_rng(0)
    state = None
    for i in range(8):
        image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        _, state = agent.policy({"image": image}, state, i == 0)
        feed.on_step(image, np.int32(i % 3), state, {}, env=None)
    assert feed.refresh_dream(agent)
    dream = feed.state({}).dream
    assert dream.reality.shape == (8, 16, 16, 3) and dream.prediction.shape == (3, 16, 16, 3)
    assert dream.imagined.shape == (4, 16, 16, 3) and len(dream.imagined_reward) == 4 and dream.version == 1
    feed.on_episode(8, {"return": 0.0, "length": 8})
    assert feed.refresh_dream(agent)  # the new episode is too short: the end of the last one is used
    assert np.array_equal(feed.state({}).dream.reality, dream.reality) and feed.state({}).dream.version == 2
    for _ in range(3):
        feed.on_step(np.zeros((16, 16, 3), np.uint8), np.int32(0), state, {}, env=None)
    feed.on_episode(11, {"return": 0.0, "length": 3})  # 3 frames: too short to replace the kept episode
    assert feed.refresh_dream(agent) and np.array_equal(feed.state({}).dream.reality, dream.reality)


def test_the_compositor_shows_be_right_back_when_a_frame_cannot_be_drawn_and_when_stopping() -> None:
    """The pacer repeats the last frame it was offered: a compose bug (the compositor restarted and failed again)
    or a long shutdown (the last checkpoint) left viewers on a frozen frame, HUD and uptime included."""
    import threading
    from types import SimpleNamespace

    from app.runner import Runner
    from overlays import Layout, OverlayState, fallback_frame

    offers: list[np.ndarray] = []
    stop = threading.Event()

    class Pacer:
        def offer(self, frame: np.ndarray) -> None:
            offers.append(frame)

        def wait_tick(self, timeout_s: float) -> bool:
            if len(offers) >= 4:
                stop.set()  # the app stops while the fifth frame is composed
            return True

    drawn = iter([OverlayState(), RuntimeError("a drawing bug"), OverlayState(), OverlayState()])

    def overlay_state() -> OverlayState:
        state = next(drawn)
        if isinstance(state, Exception):
            raise state
        return state

    runner = SimpleNamespace(broadcaster=Pacer(), cfg=SimpleNamespace(stream=SimpleNamespace(width=320, height=180,
                                                                                               fps=15)),
                             _lock=threading.Lock(), live=SimpleNamespace(frame=None), _overlay_state=overlay_state,
                             _composed=None)
    Runner._compose_loop(runner, stop)
    layout = Layout(width=320, height=180)
    starting, brb = fallback_frame(layout, "Starting..."), fallback_frame(layout, "Be right back")
    shown = ["starting" if np.array_equal(f, starting) else "brb" if np.array_equal(f, brb) else "?" for f in offers]
    assert shown == ["starting", "starting", "brb", "starting", "starting", "brb"]
