"""Overlay composition: exact shape and dtype, inputs untouched, missing values, long text, fallback."""

from __future__ import annotations

import numpy as np
import pytest

from overlays import Layout, compose, fallback_frame, format_value


@pytest.fixture
def game() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (640, 360)], ids=["720p", "1080p", "360p"])
def test_output_shape_dtype_and_new_array(game, size) -> None:
    layout = Layout(width=size[0], height=size[1])
    before = game.copy()
    metrics = {"env steps": 10}
    out = compose(game, metrics, layout)
    assert out.shape == (size[1], size[0], 3) and out.dtype == np.uint8
    assert np.array_equal(game, before) and metrics == {"env steps": 10}
    assert out.flags.writeable
    out[:] = 0  # mutating the output must not poison the cached background
    assert compose(game, metrics, layout).any()


def test_game_view_is_placed_in_its_box_with_nearest_neighbour_scaling(game) -> None:
    layout = Layout()
    out = compose(game, {}, layout)
    gx, gy, gw, _ = layout.game_box
    factor = gw // 64  # 10 at 720p
    ox = (gw - 64 * factor) // 2
    view = out[gy + ox: gy + ox + 64 * factor, gx + ox: gx + ox + 64 * factor]
    assert np.array_equal(view[::factor, ::factor], game)


@pytest.mark.parametrize("value,text", [
    (None, "-"), (float("nan"), "-"), (float("inf"), "-"), ("", "-"), (12345, "12,345"), (0.5, "0.50"),
    (12345.6, "12,346"), (True, "yes"), ("crafter", "crafter"),
])
def test_values_are_formatted_and_missing_ones_show_a_dash(value, text) -> None:
    assert format_value(value) == text


def test_nan_and_long_texts_do_not_break_the_panel(game) -> None:
    layout = Layout()
    metrics = {"loss": float("nan"), "run": "x" * 500, "notice": "n" * 500, **{f"k{i}": i for i in range(60)}}
    out = compose(game, metrics, layout)
    assert out.shape == (720, 1280, 3)
    px, py, pw, ph = layout.panel_box
    # Nothing is drawn right of the panel: long values were ellipsised, not overflowing.
    right = out[py: py + ph, px + pw + 2:]
    assert (right == right[0, 0]).all()


def test_no_frame_gives_the_fallback() -> None:
    layout = Layout()
    out = compose(None, {}, layout)
    assert np.array_equal(out, fallback_frame(layout, "Starting..."))
    assert out.std() > 0  # a message, never a black frame


def test_bad_game_frame_is_rejected_with_its_shape() -> None:
    with pytest.raises(ValueError, match=r"game frame must be uint8\[H, W, 3\], got float32\[64, 64, 3\]"):
        compose(np.zeros((64, 64, 3), np.float32), {}, Layout())


def test_fallback_frames_differ_by_message_and_are_fresh_arrays() -> None:
    layout = Layout()
    a, b = fallback_frame(layout, "Starting..."), fallback_frame(layout, "Be right back")
    assert not np.array_equal(a, b)
    a[:] = 0
    assert fallback_frame(layout, "Starting...").any()
