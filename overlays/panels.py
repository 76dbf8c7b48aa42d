"""The panels of the broadcast frame, each drawn into a box of a canvas from plain data.

Every `draw_*` function takes the canvas, the panel's box on it and the layout (for sizes in output pixels),
draws only inside the box and returns nothing. Caching and placement are `overlays.compose`'s job; the learning
curves live in `overlays.charts`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from overlays.draw import (
    ACCENT,
    BACKGROUND,
    BORDER,
    CARD,
    DRAW,
    DREAM,
    FAINT,
    GAME_BG,
    LOSS,
    MUTED,
    REAL,
    TEXT,
    WIN,
    check_frame,
    compact,
    draw_card,
    fit_text,
    format_value,
    scale_crisp,
    shrink_to_fit,
    text,
    text_width,
    wrap_text,
)
from overlays.layout import Layout, Rect
from overlays.state import ChatLine, Dream, Poll, Result

__all__ = [
    "draw_action", "draw_chat", "draw_dream", "draw_game", "draw_header", "draw_hud", "draw_poll", "draw_results",
    "draw_static", "dream_slots", "panel_title", "placeholder", "result_chip", "reward_label", "user_color",
]

HEADER_BG = (19, 22, 30)
CHIP_BG = (40, 45, 58)
DARK_TEXT = (12, 13, 18)
USER_COLORS = ((64, 196, 240), (176, 140, 255), (255, 178, 64), (56, 214, 150), (246, 132, 190), (250, 220, 90))
HUD_ROWS, HUD_COLS = 4, 2
MAX_RESULTS, MAX_CHAT, MAX_OPTIONS = 10, 5, 4


def placeholder(img: np.ndarray, box: Rect, layout: Layout, message: str = "no data yet") -> None:
    """Draw `message` centred in `box` on a patch of card colour, so that it reads clearly over rules or frames."""
    px = layout.px
    w = min(box.w, text_width(message, px(14), 600) + 2 * px(12))
    h = min(box.h, px(26))
    label = Rect(box.x + (box.w - w) // 2, box.y + (box.h - h) // 2, w, h)
    img[label.y: label.y1, label.x: label.x1] = CARD
    text(img, label, message, px(14), MUTED, weight=600, align="center")


def panel_title(img: np.ndarray, box: Rect, layout: Layout, title: str, color=MUTED) -> None:
    """Draw a panel's small upper-case title at its top left."""
    px = layout.px
    text(img, Rect(box.x + px(12), box.y, box.w - 2 * px(12), px(30)), title, px(13), color, weight=700,
         baseline=px(22))


# -- static ----------------------------------------------------------------------------------------------------------


def draw_static(layout: Layout) -> np.ndarray:
    """Return the parts that never change for a layout: background, header bar, cards, fixed titles."""
    px, b = layout.px, layout.boxes
    img = np.empty((layout.height, layout.width, 3), np.uint8)
    img[:] = BACKGROUND
    header = b["header"]
    img[header.y: header.y1, header.x: header.x1] = HEADER_BG
    img[header.y1 - px(1): header.y1, header.x: header.x1] = BORDER
    text(img, b["title"], layout.title, px(21), ACCENT, weight=800)
    for name in ("action", "hud", "dream", "curves", "results", "poll", "chat"):
        draw_card(img, b[name], CARD, BORDER, px(8))
    draw_card(img, b["game"], GAME_BG, BORDER, px(8))
    panel_title(img, b["dream"], layout, "DREAM VS REALITY")
    panel_title(img, b["curves"], layout, "LEARNING CURVES")
    panel_title(img, b["poll"], layout, "VIEWER POLL")
    panel_title(img, b["chat"], layout, "CHAT COMMANDS")
    action = b["action"]
    text(img, Rect(action.x + px(12), action.y, px(70), action.h), "ACTION", px(12), MUTED, weight=700)
    hud = b["hud"]
    row_h = (hud.h - 2 * px(6)) / HUD_ROWS
    for r in range(1, HUD_ROWS):  # row rules between the HUD lines
        y = hud.y + px(6) + round(r * row_h)
        img[y: y + 1, hud.x + px(12): hud.x1 - px(12)] = BORDER
    mid = hud.x + hud.w // 2
    img[hud.y + px(10): hud.y1 - px(10), mid: mid + 1] = BORDER
    img.setflags(write=False)
    return img


# -- header, game, action, HUD ---------------------------------------------------------------------------------------


def _inline(img: np.ndarray, box: Rect, pieces: Sequence[tuple[str, int, tuple[int, int, int], int]],
            gap: int) -> None:
    """Draw (text, size, colour, weight) pieces left to right in `box`; the last ones are cut to what is left."""
    x = box.x
    for content, size, color, weight in pieces:
        if not content or x >= box.x1:
            continue
        x += text(img, Rect(x, box.y, box.x1 - x, box.h), content, size, color, weight=weight) + gap


def draw_header(img: np.ndarray, box: Rect, layout: Layout, run_name: str, game: str, opponent: str,
                notice: str) -> None:
    """Draw the run name, the game and opponent, and the notice pill into the header at `box`."""
    px, header = layout.px, layout.header
    b = {name: Rect(r.x - header.x + box.x, r.y - header.y + box.y, r.w, r.h)
         for name, r in layout.boxes.items() if name in ("run", "match", "notice")}
    _inline(img, b["run"], [("RUN", px(12), MUTED, 700), (run_name or "–", px(17), TEXT, 600)], px(8))
    pieces = [("GAME", px(12), MUTED, 700), (game or "–", px(17), TEXT, 600)]
    if opponent:
        pieces += [("vs", px(14), MUTED, 400), (opponent, px(17), TEXT, 600)]
    _inline(img, b["match"], pieces, px(8))
    if notice:
        room, size, pad = b["notice"], px(15), px(14)
        shown = fit_text(notice, size, 700, room.w - 2 * pad)
        pill_w = min(room.w, text_width(shown, size, 700) + 2 * pad)
        pill = Rect(room.x1 - pill_w, room.y, pill_w, room.h)
        draw_card(img, pill, ACCENT, None, room.h // 2)
        text(img, pill.inset(pad, 0), shown, size, DARK_TEXT, weight=700, align="center")


def draw_game(img: np.ndarray, box: Rect, layout: Layout, frame: np.ndarray,
              arrow: tuple[float, float, float, float] | None) -> None:
    """Draw the game frame crisply scaled and centred in `box`, with the optional move arrow."""
    scaled = scale_crisp(frame, box.w, box.h)
    h, w = scaled.shape[:2]
    x, y = box.x + (box.w - w) // 2, box.y + (box.h - h) // 2
    img[y: y + h, x: x + w] = scaled
    if arrow is None or len(arrow) != 4 or not all(math.isfinite(v) for v in arrow):
        return
    px = layout.px
    x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in arrow)
    p0 = (round(x + x0 * w), round(y + y0 * h))
    p1 = (round(x + x1 * w), round(y + y1 * h))
    length = math.hypot(p1[0] - p0[0], p1[1] - p0[1])
    if length < 1:
        return
    tip = min(0.5, px(26) / length)
    roi = img[box.y: box.y1, box.x: box.x1]  # the arrow may not leave the game view
    o = (box.x, box.y)
    q0, q1 = (p0[0] - o[0], p0[1] - o[1]), (p1[0] - o[0], p1[1] - o[1])
    cv2.arrowedLine(roi, q0, q1, DARK_TEXT, px(12), cv2.LINE_AA, tipLength=tip)
    cv2.arrowedLine(roi, q0, q1, ACCENT, px(7), cv2.LINE_AA, tipLength=tip)


def draw_action(img: np.ndarray, box: Rect, layout: Layout, action: str) -> None:
    """Draw the current action's text right of the static 'ACTION' label."""
    px = layout.px
    text(img, Rect(box.x + px(84), box.y, box.w - px(96), box.h), action or "–", px(17), ACCENT, weight=700)


def draw_hud(img: np.ndarray, box: Rect, layout: Layout, hud: Mapping[str, object]) -> None:
    """Draw up to 8 label/value pairs in two columns of four rows (column by column, in the mapping's order)."""
    px = layout.px
    if not hud:
        placeholder(img, box, layout)
        return
    inner = Rect(box.x + px(12), box.y + px(6), box.w - 2 * px(12), box.h - 2 * px(6))
    col_w = (inner.w - px(24)) // HUD_COLS
    row_h = inner.h / HUD_ROWS
    label_size, value_size = px(14), px(18)
    for i, (label, value) in enumerate(list(hud.items())[: HUD_ROWS * HUD_COLS]):
        col, row = divmod(i, HUD_ROWS)
        y0, y1 = inner.y + round(row * row_h), inner.y + round((row + 1) * row_h)
        cell = Rect(inner.x + col * (col_w + px(24)), y0, col_w, y1 - y0)
        label_w = text(img, Rect(cell.x, cell.y, round(cell.w * 0.6), cell.h), str(label), label_size, MUTED)
        value_x = cell.x + label_w + px(10)
        text(img, Rect(value_x, cell.y, cell.x1 - value_x, cell.h), format_value(value), value_size, TEXT,
             weight=700, align="right")


# -- dream vs reality ------------------------------------------------------------------------------------------------


def _frames(frames: object, name: str) -> list[np.ndarray]:
    if frames is None:
        return []
    return [check_frame(f, f"{name}[{i}]") for i, f in enumerate(frames)]


def _slot(img: np.ndarray, slot: Rect, frame: np.ndarray | None, border: tuple[int, int, int], layout: Layout,
          *, dim: bool = False, tag: str = "") -> None:
    img[slot.y: slot.y1, slot.x: slot.x1] = GAME_BG
    if frame is not None:
        scaled = scale_crisp(frame, slot.w, slot.h)
        if dim:
            scaled = (scaled.astype(np.uint16) * 2 // 5).astype(np.uint8)
        h, w = scaled.shape[:2]
        x, y = slot.x + (slot.w - w) // 2, slot.y + (slot.h - h) // 2
        img[y: y + h, x: x + w] = scaled
    t = layout.px(2)
    cv2.rectangle(img, (slot.x, slot.y), (slot.x1 - 1, slot.y1 - 1), border, t)
    if tag:
        text(img, slot, tag, layout.px(12), TEXT, weight=600, align="center")


def _dream_window(k: int, context: int, n: int) -> int:
    """Return the first real frame shown when only `n` of `k` fit: the last two context frames, then predictions."""
    return min(max(0, context - 2), max(0, k - n))


def dream_slots(box: Rect, layout: Layout) -> list[Rect]:
    """Return the thumbnail columns of the dream panel at `box` (y = 0): as many 64-pixel (design) frames as fit."""
    px = layout.px
    pad, thumb, gap = px(12), px(64), px(8)
    inner_w = box.w - 2 * pad
    n = max(1, (inner_w + gap) // (thumb + gap))
    x0 = box.x + pad + (inner_w - (n * thumb + (n - 1) * gap)) // 2
    return [Rect(x0 + i * (thumb + gap), 0, thumb, thumb) for i in range(n)]


def reward_label(reward: float | None) -> tuple[str, tuple[int, int, int]]:
    """Return the text and colour of a predicted reward: +0.25 green, -0.10 red, 0.00 or '–' muted."""
    if reward is None or not math.isfinite(reward):
        return "–", MUTED
    if abs(reward) < 0.005:
        return "0.00", MUTED
    return (f"{reward:+.2f}" if abs(reward) < 10 else compact(reward, signed=True)), (WIN if reward > 0 else LOSS)


def _caption(img: np.ndarray, box: Rect, layout: Layout, baseline: int, label: str, color, detail: str) -> None:
    px = layout.px
    row = Rect(box.x + px(12), box.y + baseline - px(16), box.w - 2 * px(12), px(22))
    _inline(img, row, [(label, px(13), color, 700), (detail, px(13), MUTED, 400)], px(8))


def _strip(img: np.ndarray, box: Rect, layout: Layout, y: int, frames: Sequence[np.ndarray | None], border,
           marks: Sequence[bool] = ()) -> None:
    """Draw one film strip at `y` below the panel's top; `marks[i]` shows frame i as a dimmed context frame."""
    slots = dream_slots(box, layout)
    for i, s in enumerate(slots):
        f = frames[i] if i < len(frames) else None
        is_context = f is not None and i < len(marks) and marks[i]
        _slot(img, Rect(s.x, box.y + y, s.w, s.h), f, FAINT if f is None or is_context else border, layout,
              dim=is_context, tag="context" if is_context else "")
    if not any(f is not None for f in frames):
        placeholder(img, Rect(box.x, box.y + y, box.w, slots[0].h), layout)


def draw_dream(img: np.ndarray, box: Rect, layout: Layout, dream: Dream) -> None:
    """Draw three aligned film strips: reality, the open-loop prediction (context marked), the imagined future."""
    px = layout.px
    reality = _frames(dream.reality, "dream.reality")
    prediction = _frames(dream.prediction, "dream.prediction")
    imagined = _frames(dream.imagined, "dream.imagined")
    rewards = [] if dream.imagined_reward is None else np.asarray(dream.imagined_reward, np.float64).ravel().tolist()
    context = max(0, int(dream.context))
    slots = dream_slots(box, layout)

    # Reality and prediction share columns: each column is one moment in time.
    start = _dream_window(len(reality), context, len(slots))
    shown = list(range(start, min(len(reality), start + len(slots))))
    _caption(img, box, layout, px(46), "REALITY", REAL, "what really happened")
    _strip(img, box, layout, px(52), [reality[r] for r in shown], REAL)

    # The prediction strip repeats the context frames dimmed, so viewers see where the model's own frames start.
    predicted = [reality[r] if r < context else prediction[r - context] if r - context < len(prediction) else None
                 for r in shown]
    detail = f"from {context} real frames, then on its own" if context else "on its own"
    _caption(img, box, layout, px(136), "THE MODEL'S PREDICTION", DREAM, detail)
    _strip(img, box, layout, px(142), predicted if prediction else [], DREAM, [r < context for r in shown])

    # The imagined future starts now, so its columns are not aligned with the strips above.
    _caption(img, box, layout, px(226), "IMAGINED FUTURE", DREAM,
             f"next {len(imagined)} steps with its own policy" if imagined else "its next steps")
    _strip(img, box, layout, px(232), imagined[: len(slots)], DREAM)
    for i, s in enumerate(slots[: len(imagined)]):
        label, color = reward_label(rewards[i] if i < len(rewards) else None)
        text(img, Rect(s.x - px(4), box.y + px(298), s.w + px(8), px(22)), label, px(13), color, weight=600,
             align="center")


# -- results, poll, chat ---------------------------------------------------------------------------------------------

_OUTCOMES = {"win": ("W", WIN), "w": ("W", WIN), "loss": ("L", LOSS), "l": ("L", LOSS), "lose": ("L", LOSS),
             "draw": ("D", DRAW), "d": ("D", DRAW)}


def result_chip(result: Result) -> tuple[str, tuple[int, int, int] | None]:
    """Return a result's chip text and colour (None for a plain score chip)."""
    if result.outcome:
        return _OUTCOMES.get(str(result.outcome).strip().lower(), ("?", DRAW))
    return compact(None if result.score is None else float(result.score), trim=True), None


def draw_results(img: np.ndarray, box: Rect, layout: Layout, results: Sequence[Result]) -> None:
    """Draw the last ten results as chips: W/L/D in colour for matches, scores for single-player games."""
    px = layout.px
    last = list(results)[-MAX_RESULTS:]
    chips = [result_chip(r) for r in last]
    is_match = any(color is not None for _, color in chips)
    title = f"LAST {len(last)} MATCHES" if is_match else f"LAST {len(last)} SCORES" if last else "RECENT RESULTS"
    panel_title(img, box, layout, title)
    head = Rect(box.x + px(12), box.y, box.w - 2 * px(12), px(30))
    if is_match:
        tally = {k: sum(t == k for t, c in chips if c is not None) for k in "WLD"}
        _right_pieces(img, head, [(f"{tally['W']}W", WIN), (f"{tally['L']}L", LOSS), (f"{tally['D']}D", DRAW)],
                      px(13), px(6), px(22))
    elif last:
        scores = [float(r.score) for r in last if r.score is not None and math.isfinite(float(r.score))]
        mean = compact(sum(scores) / len(scores)) if scores else "–"
        text(img, head, f"mean {mean}", px(13), TEXT, weight=700, align="right", baseline=px(22))
    area = Rect(box.x + px(12), box.y + px(36), box.w - 2 * px(12), box.h - px(36) - px(12))
    if not last:
        placeholder(img, area, layout, "no results yet")
        return
    cols, rows, gap = 5, 2, px(6)
    chip_w, chip_h = (area.w - (cols - 1) * gap) // cols, (area.h - (rows - 1) * gap) // rows
    for i, (label, color) in enumerate(chips):
        r, c = divmod(i, cols)
        chip = Rect(area.x + c * (chip_w + gap), area.y + r * (chip_h + gap), chip_w, chip_h)
        draw_card(img, chip, color or CHIP_BG, None, px(6))
        inner = chip.inset(px(3), 0)
        size = shrink_to_fit(label, px(15), 800, inner.w, px(10))  # a number shrinks rather than lose digits
        text(img, inner, label, size, DARK_TEXT if color else TEXT, weight=800, align="center")


def _right_pieces(img: np.ndarray, box: Rect, pieces: Sequence[tuple[str, tuple[int, int, int]]], size: int,
                  gap: int, baseline: int) -> None:
    x = box.x1
    for content, color in reversed(pieces):
        w = text_width(content, size, 700)
        if x - w < box.x:
            break
        text(img, Rect(x - w, box.y, w, box.h), content, size, color, weight=700, baseline=baseline)
        x -= w + gap


def draw_poll(img: np.ndarray, box: Rect, layout: Layout, poll: Poll | None) -> None:
    """Draw the poll's question, the first four options with vote bars, and the time left."""
    px = layout.px
    body = Rect(box.x + px(12), box.y + px(30), box.w - 2 * px(12), box.h - px(30) - px(12))
    if poll is None:
        placeholder(img, body, layout, "no poll running")
        return
    head = Rect(box.x + px(12), box.y, box.w - 2 * px(12), px(30))
    left = poll.seconds_left
    if left is not None and math.isfinite(left):
        countdown, color = (f"{math.ceil(left)} s left", ACCENT) if left > 0 else ("closed", MUTED)
        text(img, head, countdown, px(13), color, weight=700, align="right", baseline=px(22))
    lines = wrap_text(poll.question or "–", px(16), 600, body.w, 2)
    y = body.y
    for line in lines:
        text(img, Rect(body.x, y, body.w, px(22)), line, px(16), TEXT, weight=600)
        y += px(22)
    y += px(6)
    votes = [(str(k), _votes(v)) for k, v in list(poll.votes.items())[:MAX_OPTIONS]]
    total = sum(v for _, v in votes)
    top = max((v for _, v in votes), default=0)
    if not votes:
        placeholder(img, Rect(body.x, y, body.w, body.y1 - y), layout, "no options")
        return
    option_h = px(40)
    for name, count in votes:
        if y + option_h > body.y1 - px(14):  # keep the footer line free
            break
        share = count / total if total else 0.0
        leading = total > 0 and count == top
        stat = f"{count} · {share:.0%}"
        stat_w = text(img, Rect(body.x, y, body.w, px(22)), stat, px(13), TEXT if leading else MUTED,
                      weight=600, align="right")
        text(img, Rect(body.x, y, body.w - stat_w - px(8), px(22)), name, px(15), TEXT,
             weight=700 if leading else 400)
        bar_y, bar_h = y + px(25), px(7)
        img[bar_y: bar_y + bar_h, body.x: body.x1] = CHIP_BG
        fill = round(body.w * share)
        img[bar_y: bar_y + bar_h, body.x: body.x + fill] = ACCENT if leading else (104, 112, 134)
        y += option_h
    footer = f"{total} vote" + ("" if total == 1 else "s")
    text(img, Rect(body.x, body.y1 - px(18), body.w, px(18)), footer, px(12), MUTED)


def _votes(value: object) -> int:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
    return max(0, int(v)) if math.isfinite(v) else 0


def user_color(user: str) -> tuple[int, int, int]:
    """Return a stable colour for a chat user name (the same in every process)."""
    return USER_COLORS[zlib.crc32(user.encode()) % len(USER_COLORS)]


def draw_chat(img: np.ndarray, box: Rect, layout: Layout, chat: Sequence[ChatLine]) -> None:
    """Draw the last five chat commands, newest at the bottom, each on at most two lines."""
    px = layout.px
    body = Rect(box.x + px(12), box.y + px(34), box.w - 2 * px(12), box.h - px(34) - px(10))
    if not chat:
        placeholder(img, body, layout, "no commands yet")
        return
    size, line_h, entry_gap = px(15), px(21), px(8)
    entries = []
    for line in list(chat)[-MAX_CHAT:]:
        user = fit_text(line.user or "viewer", size, 700, body.w // 2)
        indent = text_width(user, size, 700) + px(7)
        entries.append((user, indent, wrap_text(line.text or "–", size, 400, body.w, 2, first_indent=indent)))
    while entries and sum(len(e[2]) * line_h + entry_gap for e in entries) - entry_gap > body.h:
        entries.pop(0)  # the oldest goes first when they do not all fit
    y = body.y
    for user, indent, lines in entries:
        text(img, Rect(body.x, y, body.w, line_h), user, size, user_color(user), weight=700, baseline=px(15))
        for k, t in enumerate(lines):
            x = body.x + (indent if k == 0 else 0)
            text(img, Rect(x, y, body.x1 - x, line_h), t, size, TEXT, baseline=px(15))
            y += line_h
        y += entry_gap
