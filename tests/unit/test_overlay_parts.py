"""The overlay's parts: layout geometry, number formats, text fitting and wrapping, chart maths, cache keys."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from overlays import Curve, Dream, Layout, OverlayError, Poll, Rect, Result, format_value
from overlays.charts import clean_series, downsample, nice_ticks
from overlays.compose import chart_boxes, curve_key, dream_key, poll_key
from overlays.draw import compact, fit_text, shrink_to_fit, text, text_width, wrap_text
from overlays.layout import PANELS
from overlays.panels import _dream_window, dream_slots, result_chip, reward_label, user_color

# -- layout ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [pytest.param((1280, 720), id="720p"), pytest.param((1920, 1080), id="1080p"),
                                  pytest.param((1366, 768), id="768p"), pytest.param((320, 180), id="smallest"),
                                  pytest.param((1000, 1000), id="square")])
def test_panels_lie_inside_the_frame_and_never_overlap(size) -> None:
    layout = Layout(width=size[0], height=size[1])
    frame = Rect(0, 0, layout.width, layout.height)
    panels = {name: layout.boxes[name] for name in PANELS}
    assert all(frame.contains(r) and r.w > 0 and r.h > 0 for r in panels.values()), panels
    for (a, ra), (b, rb) in itertools.combinations(panels.items(), 2):
        assert not ra.overlaps(rb), f"{a} {ra} overlaps {b} {rb}"
    header_parts = [layout.title_box, layout.run_box, layout.match_box, layout.notice_box]
    assert all(layout.header.contains(r) for r in header_parts)
    assert not any(a.overlaps(b) for a, b in itertools.combinations(header_parts, 2))
    assert all(layout.curves.contains(r) for r in chart_boxes(layout.curves, layout))


def test_1080p_is_the_720p_design_scaled_by_one_and_a_half() -> None:
    hd, full = Layout().boxes, Layout(width=1920, height=1080).boxes
    assert hd.keys() == full.keys()
    assert all(tuple(full[k]) == tuple(round(v * 1.5) for v in hd[k]) for k in hd)


def test_the_720p_panels_are_where_the_design_puts_them() -> None:
    layout = Layout()
    assert (layout.game, layout.dream, layout.curves, layout.chat) == (
        (16, 56, 448, 448), (476, 56, 520, 330), (476, 398, 520, 306), (1008, 436, 256, 268))
    assert layout.scale == 1.0 and Layout(width=1920, height=1080).scale == 1.5


@pytest.mark.parametrize("size", [pytest.param((319, 720), id="narrow"), pytest.param((1280, 0), id="flat")])
def test_a_too_small_layout_is_rejected(size) -> None:
    with pytest.raises(OverlayError) as err:
        Layout(width=size[0], height=size[1])
    assert str(err.value) == (f"layout {size[0]}x{size[1]}: width and height must be at least 320x180; "
                              "pass the stream's size, e.g. 1280x720")


# -- numbers ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value,shown", [
    pytest.param(None, "–", id="none"), pytest.param(float("nan"), "–", id="nan"),
    pytest.param(float("inf"), "–", id="inf"), pytest.param("", "–", id="empty-text"),
    pytest.param(12345, "12,345", id="int"), pytest.param(np.int64(7), "7", id="numpy-int"),
    pytest.param(0.5, "0.50", id="float"), pytest.param(np.float32(0.25), "0.25", id="numpy-float"),
    pytest.param(12345.6, "12,346", id="big-float"), pytest.param(True, "yes", id="bool"),
    pytest.param("crafter", "crafter", id="text"),
])
def test_values_are_formatted_and_missing_ones_show_a_dash(value, shown) -> None:
    assert format_value(value) == shown


@pytest.mark.parametrize("value,shown,trimmed", [
    pytest.param(0.0, "0", "0", id="zero"), pytest.param(0.5, "0.50", "0.5", id="half"),
    pytest.param(2.5, "2.50", "2.5", id="units"), pytest.param(-0.004, "-0.004", "-0.004", id="thousandths"),
    pytest.param(0.0003, "3e-04", "3e-04", id="tiny"), pytest.param(12.34, "12.3", "12.3", id="tens"),
    pytest.param(123.4, "123", "123", id="hundreds"), pytest.param(1234.0, "1234", "1234", id="elo"),
    pytest.param(12_345, "12k", "12k", id="thousands"), pytest.param(1.25e6, "1.2M", "1.2M", id="millions"),
    pytest.param(2e6, "2M", "2M", id="round-millions"), pytest.param(-1.0, "-1", "-1", id="negative"),
    pytest.param(float("nan"), "–", "–", id="nan"), pytest.param(None, "–", "–", id="none"),
])
def test_compact_numbers(value, shown, trimmed) -> None:
    assert (compact(value), compact(value, trim=True)) == (shown, trimmed)


def test_compact_signs_positive_values_only() -> None:
    assert [compact(v, signed=True) for v in (0.25, -0.25, 0.0)] == ["+0.25", "-0.25", "0"]


# -- text ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content,max_w", [
    pytest.param("short", 500, id="fits"), pytest.param("a much longer run name than fits", 120, id="cut"),
    pytest.param("W" * 50, 30, id="few-letters"), pytest.param("anything", 3, id="nothing-fits"),
])
def test_fit_text_never_exceeds_the_width(content, max_w) -> None:
    fitted = fit_text(content, 18, 600, max_w)
    assert text_width(fitted, 18, 600) <= max_w
    if text_width(content, 18, 600) <= max_w:
        assert fitted == content
    else:
        assert fitted in ("", "…") or (fitted.endswith("…") and content.startswith(fitted[:-1]))


@pytest.mark.parametrize("content,max_w,size", [
    pytest.param("7.6", 100, 22, id="fits-at-full-size"),
    pytest.param("0.50", 50, None, id="shrinks"),
    pytest.param("1234567890", 10, 15, id="stops-at-the-minimum"),
])
def test_shrink_to_fit(content, max_w, size) -> None:
    got = shrink_to_fit(content, 22, 800, max_w, 15)
    if size is None:
        assert 15 < got < 22 and text_width(content, got, 800) <= max_w < text_width(content, got + 1, 800)
    else:
        assert got == size


def test_drawn_text_stays_in_its_box_and_is_ellipsised() -> None:
    img = np.zeros((100, 400, 3), np.uint8)
    box = Rect(100, 30, 120, 40)
    width = text(img, box, "a very long text that would run far beyond the box", 20, (255, 255, 255))
    ys, xs = np.nonzero(img.any(-1))
    assert 0 < width <= box.w
    assert box.contains(Rect(int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1))


@pytest.mark.parametrize("content,max_lines,indent", [
    pytest.param("!vote stockfish-3 please because this is a very long message indeed", 2, 60, id="two-lines"),
    pytest.param("one " * 80, 3, 0, id="three-lines"), pytest.param("x" * 200, 2, 40, id="one-long-word"),
    pytest.param("", 2, 0, id="empty"),
])
def test_wrapped_lines_fit_their_width(content, max_lines, indent) -> None:
    lines = wrap_text(content, 15, 400, 200, max_lines, first_indent=indent)
    assert len(lines) <= max_lines
    assert all(text_width(t, 15, 400) <= 200 - (indent if k == 0 else 0) for k, t in enumerate(lines))
    assert bool(lines) == bool(content)


def test_wrapping_keeps_every_word_when_they_fit() -> None:
    assert wrap_text("one two three", 15, 400, 1000, 2) == ["one two three"]
    width = max(text_width("alpha beta", 15, 400), text_width("gamma delta", 15, 400))
    assert wrap_text("alpha beta gamma delta", 15, 400, width, 3) == ["alpha beta", "gamma delta"]
    assert wrap_text("alpha beta gamma delta", 15, 400, width, 1) == [fit_text("alpha beta gamma delta", 15, 400,
                                                                               width)]


# -- charts ----------------------------------------------------------------------------------------------------------


def test_downsample_by_hand() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([1.0, 3.0, 2.0, 6.0])
    xm, mean, lo, hi = downsample(x, y, 2)  # buckets [0, 1.5) and [1.5, 3]
    assert xm.tolist() == [0.5, 2.5] and mean.tolist() == [2.0, 4.0]
    assert lo.tolist() == [1.0, 2.0] and hi.tolist() == [3.0, 6.0]


def test_downsample_keeps_short_series_and_bounds_long_ones() -> None:
    x, y = np.arange(5.0), np.arange(5.0) ** 2
    assert all(np.array_equal(a, b) for a, b in zip(downsample(x, y, 10), (x, y, y, y), strict=True))
    x, y = np.arange(3000.0), np.sin(np.arange(3000.0))
    xm, mean, lo, hi = downsample(x, y, 100)
    assert len(xm) == 100 and (lo <= mean).all() and (mean <= hi).all()
    assert lo.min() == y.min() and hi.max() == y.max()


@pytest.mark.parametrize("steps,values,x,y", [
    pytest.param([1, 2, 3], [1.0, np.nan, 3.0], [1, 3], [1.0, 3.0], id="nan-dropped"),
    pytest.param([1, np.inf, 3], [1.0, 2.0, 3.0], [1, 3], [1.0, 3.0], id="inf-step-dropped"),
    pytest.param([3, 1, 2], [30.0, 10.0, 20.0], [1, 2, 3], [10.0, 20.0, 30.0], id="sorted"),
    pytest.param([1, 2, 3, 4], [5.0, 6.0], [1, 2], [5.0, 6.0], id="cut-to-shorter"),
    pytest.param([], [], [], [], id="empty"),
])
def test_clean_series(steps, values, x, y) -> None:
    cx, cy = clean_series(steps, values)
    assert cx.tolist() == x and cy.tolist() == y


@pytest.mark.parametrize("lo,hi,ticks", [
    pytest.param(-1.16, 1.16, [-1.0, 0.0, 1.0], id="symmetric"),
    pytest.param(5.1, 6.9, [5.5, 6.0, 6.5], id="halves"),
    pytest.param(2250.0, 2420.0, [2300.0, 2400.0], id="hundreds"),
    pytest.param(0.0, 10.5, [0.0, 10.0], id="from-zero"),
    pytest.param(1.0, 1.0, [1.0], id="constant"),
    pytest.param(float("nan"), 1.0, [], id="nan"),
])
def test_nice_ticks(lo, hi, ticks) -> None:
    assert nice_ticks(lo, hi) == pytest.approx(ticks)


# -- panels' small rules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,context,n,start", [
    pytest.param(7, 5, 7, 0, id="all-fit"), pytest.param(12, 5, 7, 3, id="last-two-context-then-predictions"),
    pytest.param(9, 5, 7, 2, id="end-reached"), pytest.param(20, 0, 7, 0, id="no-context"),
    pytest.param(3, 5, 7, 0, id="fewer-than-context"),
])
def test_dream_window(k, context, n, start) -> None:
    assert _dream_window(k, context, n) == start


@pytest.mark.parametrize("layout,count,side", [pytest.param(Layout(), 7, 64, id="720p"),
                                               pytest.param(Layout(width=1920, height=1080), 7, 96, id="1080p")])
def test_dream_strips_show_seven_frames_inside_the_panel(layout, count, side) -> None:
    slots = dream_slots(layout.dream, layout)
    assert len(slots) == count and all(s.w == s.h == side for s in slots)
    assert slots[0].x >= layout.dream.x and slots[-1].x1 <= layout.dream.x1


@pytest.mark.parametrize("reward,label", [
    pytest.param(0.25, "+0.25", id="positive"), pytest.param(-0.1, "-0.10", id="negative"),
    pytest.param(-0.004, "0.00", id="rounds-to-zero"), pytest.param(123.0, "+123", id="large"),
    pytest.param(float("nan"), "–", id="nan"), pytest.param(None, "–", id="missing"),
])
def test_reward_labels(reward, label) -> None:
    assert reward_label(reward)[0] == label


@pytest.mark.parametrize("result,chip", [
    pytest.param(Result(outcome="win"), "W", id="win"), pytest.param(Result(outcome="LOSS"), "L", id="loss"),
    pytest.param(Result(outcome="draw", score=0.5), "D", id="draw"), pytest.param(Result(outcome="?!"), "?", id="odd"),
    pytest.param(Result(score=12.345), "12.3", id="score"), pytest.param(Result(score=7.6), "7.6", id="trimmed"),
    pytest.param(Result(), "–", id="nothing"),
])
def test_result_chips(result, chip) -> None:
    assert result_chip(result)[0] == chip


def test_user_colours_are_stable_across_processes() -> None:
    # crc32("alice") = 663665735, and 663665735 % 6 = 5: the sixth colour, whatever PYTHONHASHSEED says
    assert user_color("alice") == (250, 220, 90)


# -- cache keys ------------------------------------------------------------------------------------------------------


def test_keys_follow_the_version_or_the_content() -> None:
    a = np.zeros((3, 8, 8, 3), np.uint8)
    assert dream_key(Dream(reality=a, version=3)) == dream_key(Dream(reality=a + 1, version=3)) == ("version", 3)
    assert dream_key(Dream(reality=a)) == dream_key(Dream(reality=a.copy()))
    assert dream_key(Dream(reality=a)) != dream_key(Dream(reality=a + 1))
    assert dream_key(Dream(reality=a, context=4)) != dream_key(Dream(reality=a))
    same = Curve(steps=(1.0, 2.0), values=np.array([3, 4.0]))
    assert curve_key(Curve(steps=[1, 2], values=[3, 4])) == curve_key(same)
    assert curve_key(Curve(label="a", values=[1])) != curve_key(Curve(label="b", values=[1]))


def test_the_poll_key_changes_once_a_second() -> None:
    def key(left):
        return poll_key(Poll(question="q", votes={"a": 1}, seconds_left=left))
    assert key(9.2) == key(9.01) != key(8.9)
    assert key(-3) == key(0) and key(None) == key(float("nan"))
    assert poll_key(None) is None
