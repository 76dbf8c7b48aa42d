"""The composed broadcast frame: shape and dtype, panels where the layout says, text kept in its box, missing
data, untouched inputs, fallback frames and caching."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

from overlays import (
    ChatLine,
    Curve,
    Dream,
    Layout,
    OverlayError,
    OverlayState,
    Poll,
    Rect,
    Result,
    clear_caches,
    compose,
    fallback_frame,
)
from overlays.layout import PANELS

HD, FULL_HD = Layout(), Layout(width=1920, height=1080)
MAGENTA = (255, 0, 255)


@pytest.fixture(autouse=True)
def fresh_caches():
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def game() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def solid(color, n: int = 1, size: int = 64) -> np.ndarray:
    return np.broadcast_to(np.array(color, np.uint8), (n, size, size, 3)).copy()


def full_state() -> OverlayState:
    """Every panel filled, as the benchmark and the app fill them."""
    rng = np.random.default_rng(1)
    steps = np.linspace(0, 1e6, 2000)
    return OverlayState(
        run_name="crafter-01", game="crafter", opponent="stockfish-1", notice="stream reconnecting",
        hud={"env steps": 123_456, "updates": 789, "env fps": 29.97, "loss": float("nan")},
        action="move_left", arrow=(0.1, 0.9, 0.5, 0.5),
        dream=Dream(reality=rng.integers(0, 256, (12, 64, 64, 3), np.uint8),
                    prediction=rng.integers(0, 256, (7, 64, 64, 3), np.uint8),
                    imagined=rng.integers(0, 256, (15, 64, 64, 3), np.uint8), imagined_reward=rng.normal(0, 1, 15)),
        curves=tuple(Curve(label=f"curve {i}", steps=steps, values=rng.normal(0, 1, 2000)) for i in range(4)),
        results=tuple(Result(outcome=o) for o in ("win", "loss", "draw") * 4),
        poll=Poll(question="next game?", votes={"chess": 3, "crafter": 5}, seconds_left=12.5),
        chat=tuple(ChatLine(user=f"user{i}", text=f"!vote {i}") for i in range(7)),
    )


def changed_region(a: np.ndarray, b: np.ndarray) -> Rect | None:
    """Return the bounding box of the pixels that differ between two frames, or None."""
    ys, xs = np.nonzero((a != b).any(-1))
    if not len(ys):
        return None
    return Rect(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


# -- shape, fresh arrays, untouched inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [pytest.param((1280, 720), id="720p"), pytest.param((1920, 1080), id="1080p"),
                                  pytest.param((640, 360), id="360p")])
def test_output_is_a_fresh_uint8_frame_of_the_layout_size(game, size) -> None:
    layout = Layout(width=size[0], height=size[1])
    out = compose(game, full_state(), layout)
    assert out.shape == (size[1], size[0], 3) and out.dtype == np.uint8
    assert out.flags.writeable and out.flags.c_contiguous
    again = compose(game, full_state(), layout)
    assert np.array_equal(out, again) and again is not out
    out[:] = 0  # mutating the output must not poison any cache
    assert np.array_equal(compose(game, full_state(), layout), again)


def test_inputs_are_not_modified(game) -> None:
    state = full_state()
    snapshot = copy.deepcopy(state)
    game_before = game.copy()
    compose(game, state, HD)
    assert np.array_equal(game, game_before)
    for name in ("reality", "prediction", "imagined", "imagined_reward"):
        assert np.array_equal(getattr(state.dream, name), getattr(snapshot.dream, name)), name
    for curve, before in zip(state.curves, snapshot.curves, strict=True):
        assert np.array_equal(curve.steps, before.steps) and np.array_equal(curve.values, before.values)
    assert list(state.hud) == list(snapshot.hud) and state.hud["env steps"] == 123_456
    assert state.poll == snapshot.poll and state.chat == snapshot.chat and state.results == snapshot.results


def test_a_mapping_is_read_as_the_hud_with_its_notice(game) -> None:
    legacy = compose(game, {"env steps": 5, "notice": "compiling the world model..."}, HD)
    assert np.array_equal(legacy, compose(game, OverlayState(hud={"env steps": 5},
                                                             notice="compiling the world model..."), HD))


# -- every panel where the layout says -------------------------------------------------------------------------------

PANEL_CASES = [
    pytest.param({"hud": {"env steps": 123}}, "hud", id="hud"),
    pytest.param({"action": "move_left"}, "action", id="action"),
    pytest.param({"arrow": (0.2, 0.8, 0.7, 0.3)}, "game", id="arrow"),
    pytest.param({"run_name": "crafter-01"}, "run", id="run-name"),
    pytest.param({"game": "chess", "opponent": "stockfish-3"}, "match", id="game-and-opponent"),
    pytest.param({"notice": "rolled back to checkpoint 42"}, "notice", id="notice"),
    pytest.param({"dream": Dream(reality=solid(MAGENTA, 8))}, "dream", id="dream"),
    pytest.param({"curves": (Curve(label="score", steps=[0, 1, 2], values=[1, 3, 2]),)}, "curves", id="curves"),
    pytest.param({"results": (Result(outcome="win"), Result(score=3.5))}, "results", id="results"),
    pytest.param({"poll": Poll(question="next?", votes={"a": 1}, seconds_left=9)}, "poll", id="poll"),
    pytest.param({"chat": (ChatLine(user="ann", text="!vote a"),)}, "chat", id="chat"),
]


@pytest.mark.parametrize("layout", [pytest.param(HD, id="720p"), pytest.param(FULL_HD, id="1080p")])
@pytest.mark.parametrize("fields,box", PANEL_CASES)
def test_each_panel_draws_inside_its_box_only(game, layout, fields, box) -> None:
    empty = compose(game, OverlayState(), layout)
    filled = compose(game, OverlayState(**fields), layout)
    region = changed_region(empty, filled)
    assert region is not None, f"setting {sorted(fields)} changed nothing"
    assert layout.boxes[box].contains(region), (region, layout.boxes[box])


@pytest.mark.parametrize("layout", [pytest.param(HD, id="720p"), pytest.param(FULL_HD, id="1080p")])
def test_the_game_frame_fills_the_game_box_and_nothing_else(layout) -> None:
    out = compose(solid(MAGENTA)[0], OverlayState(), layout)
    ys, xs = np.nonzero((out == MAGENTA).all(-1))
    found = Rect(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    assert layout.game.contains(found)
    assert len(ys) == found.w * found.h and found.w == found.h >= 0.9 * layout.game.w  # one solid square


def test_dream_frames_show_only_in_the_dream_panel() -> None:
    state = OverlayState(dream=Dream(reality=solid(MAGENTA, 6), imagined=solid(MAGENTA, 6)))
    out = compose(solid((0, 0, 0))[0], state, HD)
    ys, xs = np.nonzero((out == MAGENTA).all(-1))
    assert len(ys) > 0
    assert HD.dream.contains(Rect(int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1))


@pytest.mark.parametrize("size,factor", [pytest.param((64, 64), 7, id="crafter-64"),
                                         pytest.param((210, 160), 2, id="atari-210x160"),
                                         pytest.param((9, 16), 28, id="tiny-9x16")])
def test_game_view_is_scaled_by_an_integer_factor_and_centred(size, factor) -> None:
    h, w = size
    game = np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = compose(game, OverlayState(), HD)
    box = HD.game
    x, y = box.x + (box.w - w * factor) // 2, box.y + (box.h - h * factor) // 2
    view = out[y: y + h * factor, x: x + w * factor]
    assert np.array_equal(view[::factor, ::factor], game)
    assert np.array_equal(view, np.repeat(np.repeat(game, factor, 0), factor, 1))


def test_a_large_render_is_shrunk_into_the_game_box() -> None:
    board = np.zeros((512, 512, 3), np.uint8)
    board[:, :256] = MAGENTA
    out = compose(board, OverlayState(), HD)
    ys, xs = np.nonzero((out == MAGENTA).all(-1))
    assert (ys.min(), ys.max() + 1) == (HD.game.y, HD.game.y1)
    assert (xs.min(), xs.max() + 1) == (HD.game.x, HD.game.x + HD.game.w // 2)


# -- text stays in its box -------------------------------------------------------------------------------------------

LONG = "an extremely long name that could never fit in any box of this frame " * 4

TEXT_CASES = [
    pytest.param({"run_name": LONG}, "run", id="run-name"),
    pytest.param({"game": LONG}, "match", id="game"),
    pytest.param({"game": "chess", "opponent": LONG}, "match", id="opponent"),
    pytest.param({"notice": LONG}, "notice", id="notice"),
    pytest.param({"action": LONG}, "action", id="action"),
    pytest.param({"hud": {LONG: LONG, "x" * 300: 10**30}}, "hud", id="hud"),
    pytest.param({"chat": (ChatLine(user=LONG, text=LONG), ChatLine(user="b", text="y" * 400))}, "chat", id="chat"),
    pytest.param({"poll": Poll(question=LONG, votes={LONG: 10**12, "b": 1}, seconds_left=1e9)}, "poll", id="poll"),
    pytest.param({"curves": (Curve(label=LONG, steps=[0, 1e15], values=[-1e30, 1e30]),)}, "curves", id="curve"),
    pytest.param({"results": tuple(Result(score=1e30 * i) for i in range(12))}, "results", id="results"),
    pytest.param({"curves": (Curve(label="x", steps=[0, 1, 2], values=[1e308, -1e308, 0]),)}, "curves",
                 id="curve-near-float-max"),
    pytest.param({"run_name": "run-\udcff"}, "header", id="lone-surrogate"),  # a run dir name that is not UTF-8
]


@pytest.mark.parametrize("fields,box", TEXT_CASES)
def test_long_texts_stay_inside_their_box(game, fields, box) -> None:
    region = changed_region(compose(game, OverlayState(), HD), compose(game, OverlayState(**fields), HD))
    assert region is not None and HD.boxes[box].contains(region), (region, HD.boxes[box])


def test_a_long_header_text_is_cut_before_the_next_box(game) -> None:
    # The run box ends where the match box's margin starts: a long run name leaves the gap between them empty.
    gap = np.s_[HD.header.y: HD.header.y1, HD.run_box.x1: HD.match_box.x]
    out, empty = compose(game, OverlayState(run_name=LONG), HD), compose(game, OverlayState(), HD)
    assert out[gap].size and np.array_equal(out[gap], empty[gap])
    assert not np.array_equal(out[HD.run_box.y: HD.run_box.y1, HD.run_box.x1 - 20: HD.run_box.x1],
                              empty[HD.run_box.y: HD.run_box.y1, HD.run_box.x1 - 20: HD.run_box.x1])  # "…" at the end


# -- missing data ----------------------------------------------------------------------------------------------------

NAN = float("nan")
SAME_CASES = [
    pytest.param({"hud": {"loss": NAN}}, {"hud": {"loss": None}}, id="hud-nan-is-dash"),
    pytest.param({"hud": {"loss": float("inf")}}, {"hud": {"loss": "–"}}, id="hud-inf-is-dash"),
    pytest.param({"hud": {"loss": ""}}, {"hud": {"loss": None}}, id="hud-empty-text-is-dash"),
    pytest.param({"curves": (Curve(label="a", steps=[1, 2], values=[NAN, NAN]),)},
                 {"curves": (Curve(label="a"),)}, id="all-nan-curve-is-empty"),
    pytest.param({"curves": (Curve(label="a", steps=[1, 2, 3], values=[NAN, 4.0, NAN]),)},
                 {"curves": (Curve(label="a", steps=[2], values=[4.0]),)}, id="nan-points-are-skipped"),
    pytest.param({"curves": (Curve(label="a", steps=[1, 2, 3], values=[4.0]),)},
                 {"curves": (Curve(label="a", steps=[1], values=[4.0]),)}, id="lengths-are-cut"),
    pytest.param({"results": (Result(score=NAN),)}, {"results": (Result(),)}, id="nan-score-is-dash"),
    pytest.param({"dream": Dream(reality=[], prediction=[], imagined=[], imagined_reward=[])}, {},
                 id="empty-dream-is-no-data"),
    pytest.param({"poll": Poll(question="q", seconds_left=NAN)}, {"poll": Poll(question="q")}, id="nan-countdown"),
]


@pytest.mark.parametrize("a,b", SAME_CASES)
def test_missing_values_render_like_their_placeholder(game, a, b) -> None:
    assert np.array_equal(compose(game, OverlayState(**a), HD), compose(game, OverlayState(**b), HD))


@pytest.mark.parametrize("curve", [
    pytest.param(Curve(label="a", steps=[5], values=[3.0]), id="single-point"),
    pytest.param(Curve(label="a", steps=[1, 2, 3], values=[2.0, 2.0, 2.0]), id="constant"),
    pytest.param(Curve(label="a", steps=[3, 1, 2], values=[1.0, 3.0, 2.0]), id="unsorted"),
    pytest.param(Curve(label="a", steps=[7, 7, 7], values=[1.0, 2.0, 3.0]), id="one-step"),
])
def test_degenerate_curves_draw_a_point_or_line_not_no_data(game, curve) -> None:
    empty = compose(game, OverlayState(curves=(Curve(label="a"),)), HD)
    drawn = compose(game, OverlayState(curves=(curve,)), HD)
    region = changed_region(empty, drawn)
    assert region is not None and HD.curves.contains(region)


def test_a_default_state_renders_every_panel_empty(game) -> None:
    out = compose(game, OverlayState(), HD)
    for name in PANELS:
        box = HD.boxes[name]
        assert out[box.y: box.y1, box.x: box.x1].std() > 0, f"panel {name} is blank"


# -- dream strips ----------------------------------------------------------------------------------------------------


def test_context_frames_are_dimmed_and_predictions_shown_beside_them() -> None:
    real, predicted = (200, 100, 50), (10, 250, 10)
    state = OverlayState(dream=Dream(reality=solid(real, 7), prediction=solid(predicted, 2), context=5))
    out = compose(solid((0, 0, 0))[0], state, HD)
    panel = out[HD.dream.y: HD.dream.y1, HD.dream.x: HD.dream.x1]
    inner = (64 - 2 * 2) ** 2  # a 64-pixel thumbnail inside its 2-pixel border at 720p
    assert (panel == predicted).all(-1).sum() == 2 * inner
    dimmed = tuple(c * 2 // 5 for c in real)
    assert (panel == dimmed).all(-1).sum() > 5 * inner * 0.7  # minus the "context" tags
    assert (panel == real).all(-1).sum() == 7 * inner


def test_bad_dream_frames_are_rejected_with_their_name() -> None:
    state = OverlayState(dream=Dream(imagined=[np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.uint8)]))
    with pytest.raises(OverlayError) as err:
        compose(np.zeros((64, 64, 3), np.uint8), state, HD)
    assert str(err.value) == "dream.imagined[1] must be uint8[H, W, 3], got uint8[64, 64]"


# -- fallback --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [pytest.param(HD, id="720p"), pytest.param(FULL_HD, id="1080p"),
                                    pytest.param(Layout(width=320, height=180), id="smallest")])
@pytest.mark.parametrize("message", ["Starting...", "Be right back", ""])
def test_fallback_frames_are_never_black(layout, message) -> None:
    out = fallback_frame(layout, message)
    assert out.shape == (layout.height, layout.width, 3) and out.dtype == np.uint8
    assert out.min(axis=(0, 1)).max() > 0, "some pixels are pure black"
    assert (out.max(-1) > 200).sum() > 0.002 * out.shape[0] * out.shape[1], "no bright text"


def test_no_game_frame_gives_the_fallback_with_the_notice() -> None:
    assert np.array_equal(compose(None, OverlayState(), HD), fallback_frame(HD, "Starting..."))
    assert np.array_equal(compose(None, OverlayState(notice="Be right back"), HD), fallback_frame(HD, "Be right back"))
    a, b = fallback_frame(HD, "Starting..."), fallback_frame(HD, "Be right back")
    assert not np.array_equal(a, b)
    a[:] = 0
    assert fallback_frame(HD, "Starting...").any()


@pytest.mark.parametrize("frame,message", [
    pytest.param(np.zeros((64, 64, 3), np.float32), "game frame must be uint8[H, W, 3], got float32[64, 64, 3]",
                 id="float"),
    pytest.param(np.zeros((64, 64), np.uint8), "game frame must be uint8[H, W, 3], got uint8[64, 64]", id="gray"),
    pytest.param(np.zeros((0, 64, 3), np.uint8), "game frame must be uint8[H, W, 3], got uint8[0, 64, 3]",
                 id="empty"),
    pytest.param([[0]], "game frame must be a numpy uint8[H, W, 3] array, got list", id="list"),
])
def test_a_bad_game_frame_is_rejected_with_its_shape(frame, message) -> None:
    with pytest.raises(OverlayError) as err:
        compose(frame, OverlayState(), HD)
    assert str(err.value) == message


# -- caching ---------------------------------------------------------------------------------------------------------


def test_cached_frames_equal_fresh_renders(game) -> None:
    a = full_state()
    b = replace(a, curves=a.curves[:2], dream=Dream(reality=a.dream.reality[:6]), notice="", chat=a.chat[:1],
                poll=replace(a.poll, seconds_left=3), results=a.results[:4])
    first_a = compose(game, a, HD)
    first_b = compose(game, b, HD)
    assert not np.array_equal(first_a, first_b)
    assert np.array_equal(compose(game, a, HD), first_a)  # every panel back from its cache
    clear_caches()
    assert np.array_equal(compose(game, b, HD), first_b)
    assert np.array_equal(compose(game, a, HD), first_a)


def test_without_a_version_changed_content_is_redrawn(game) -> None:
    values = np.linspace(0, 1, 100)
    frames = solid((10, 20, 30), 6)
    state = OverlayState(curves=(Curve(label="a", steps=np.arange(100), values=values),),
                         dream=Dream(reality=frames))
    before = compose(game, state, HD)
    values[50:] = 5.0  # the app's ring buffer, changed in place
    frames[:] = 200
    after = compose(game, state, HD)
    clear_caches()
    assert not np.array_equal(before, after) and np.array_equal(after, compose(game, state, HD))


def test_with_a_version_the_panel_is_redrawn_only_when_it_changes(game) -> None:
    values = np.linspace(0, 1, 100)
    state = OverlayState(curves=(Curve(label="a", steps=np.arange(100), values=values, version=1),))
    before = compose(game, state, HD)
    values[50:] = 5.0
    assert np.array_equal(compose(game, state, HD), before)  # same version: the app promised the same data
    bumped = compose(game, replace(state, curves=(replace(state.curves[0], version=2),)), HD)
    clear_caches()
    assert not np.array_equal(bumped, before) and np.array_equal(bumped, compose(game, replace(
        state, curves=(replace(state.curves[0], version=2),)), HD))


def test_text_opencv_cannot_take_is_drawn_as_a_replacement_not_a_crash(game) -> None:
    """OpenCV segfaults (kills the process) on a lone surrogate, which a non-UTF-8 run dir name or a config
    value read from such bytes brings in."""
    frame = compose(game, OverlayState(run_name="r\udcff", notice="bad \ud800 bytes", opponent="o\udcff",
                                       hud={"k\udcff": "v\udcff"}, action="a\udcff"), HD)
    assert frame.shape == (HD.height, HD.width, 3)
