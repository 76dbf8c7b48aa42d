"""Synthetic frames for the screen env tests, and an X window that shows a frame and records the input it gets.

`clash_frame` mimics the layout of a Clash Royale battle screen in portrait (checkered arena, river, six towers,
hand of four cards with the next-card preview, 10-segment elixir bar, optional result banner). The positions
follow ClashRoyaleBuildABot's 368x652 screenshot constants; the colours are invented. The env's default
detector settings are calibrated on these frames only, which is why real recordings need recalibration.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

ARENA_LIGHT, ARENA_DARK = (96, 168, 80), (84, 152, 70)
RIVER = (40, 110, 170)
BRIDGE = (150, 110, 70)
PANEL = (62, 40, 28)
RUBBLE = (120, 110, 100)
BAR_BACK = (20, 10, 30)
ELIXIR_FULL, ELIXIR_EMPTY = (216, 64, 224), (48, 32, 72)
OWN_TOWER, OWN_ROOF = (64, 120, 232), (30, 60, 140)
ENEMY_TOWER, ENEMY_ROOF = (224, 56, 64), (130, 30, 30)
BANNERS = {"win": (40, 160, 255), "loss": (200, 24, 32), "draw": (150, 150, 150)}
CARD_ART = ((230, 80, 40), (60, 90, 220), (240, 200, 40), (150, 60, 200))
MENU = (40, 70, 140)

# Fractions of the window (left, top, right, bottom) where things are drawn.
ENEMY_TOWERS = ((0.15, 0.13, 0.34, 0.22), (0.39, 0.03, 0.61, 0.13), (0.66, 0.13, 0.85, 0.22))
OWN_TOWERS = ((0.15, 0.62, 0.34, 0.71), (0.39, 0.67, 0.61, 0.755), (0.66, 0.62, 0.85, 0.71))
CARDS = tuple((84 + 69 * k) / 368 for k in range(4))
CARD_WIDTH, CARD_TOP, CARD_BOTTOM = 61 / 368, 543 / 652, 616 / 652
ELIXIR_BAR = (100 / 368, 628 / 652, 350 / 368, 643 / 652)
BANNER = (0.05, 0.4, 0.95, 0.5)


def _fill(frame: np.ndarray, box: tuple[float, float, float, float], rgb: tuple[int, int, int]) -> None:
    h, w = frame.shape[:2]
    left, top, right, bottom = box
    frame[round(top * h):round(bottom * h), round(left * w):round(right * w)] = rgb


def _arena(frame: np.ndarray) -> None:
    h, w = frame.shape[:2]
    tile = max(w // 18, 1)
    ys, xs = np.mgrid[0:h, 0:w]
    checker = ((ys // tile + xs // tile) % 2).astype(bool)
    frame[checker], frame[~checker] = ARENA_LIGHT, ARENA_DARK
    _fill(frame, (0.0, 0.43, 1.0, 0.465), RIVER)
    for left in (0.2, 0.7):
        _fill(frame, (left, 0.425, left + 0.1, 0.47), BRIDGE)


def _tower(frame: np.ndarray, box, standing: bool, body, roof) -> None:
    left, top, right, bottom = box
    if not standing:
        _fill(frame, box, RUBBLE)
        _fill(frame, (left + 0.03, top + 0.03, left + 0.06, top + 0.05), (80, 75, 70))
        return
    _fill(frame, box, body)
    _fill(frame, (left, top, right, top + 0.25 * (bottom - top)), roof)


def _card(frame: np.ndarray, slot: int, ready: bool) -> None:
    left = CARDS[slot]
    box = (left, CARD_TOP, left + CARD_WIDTH, CARD_BOTTOM)
    _fill(frame, box, CARD_ART[slot])
    _fill(frame, (left + 0.01, CARD_TOP + 0.01, left + 0.05, CARD_TOP + 0.03), (250, 240, 220))  # art detail
    _fill(frame, (left, CARD_BOTTOM - 0.025, left + 0.04, CARD_BOTTOM), ELIXIR_FULL)  # the cost drop
    if not ready:
        h, w = frame.shape[:2]
        crop = frame[round(CARD_TOP * h):round(CARD_BOTTOM * h), round(left * w):round((left + CARD_WIDTH) * w)]
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        crop[:] = (np.stack([grey] * 3, axis=2) * 0.7).astype(np.uint8)


def _elixir_bar(frame: np.ndarray, elixir: int) -> None:
    h, w = frame.shape[:2]
    _fill(frame, ELIXIR_BAR, BAR_BACK)
    left, top, right, bottom = ELIXIR_BAR
    step = (right - left) / 10
    gap = 2 / w
    for i in range(10):
        _fill(frame, (left + i * step + gap, top + 2 / h, left + (i + 1) * step - gap, bottom - 2 / h),
              ELIXIR_FULL if i < elixir else ELIXIR_EMPTY)
    _fill(frame, (left - 0.06, top - 0.01, left - 0.01, bottom + 0.005), ELIXIR_FULL)  # the number bubble


def _banner(frame: np.ndarray, result: str) -> None:
    _fill(frame, BANNER, BANNERS[result])
    for k in range(5):  # blocky 'text' in white
        _fill(frame, (0.25 + 0.1 * k, 0.43, 0.31 + 0.1 * k, 0.47), (250, 250, 250))


def clash_frame(size: tuple[int, int] = (368, 652), *, elixir: int = 5,
                cards_ready: tuple[bool, ...] = (True, True, True, True),
                enemy_towers: tuple[bool, ...] = (True, True, True), own_towers: tuple[bool, ...] = (True, True, True),
                result: str | None = None, seed: int = 0) -> np.ndarray:
    """Return a synthetic battle screen uint8[height, width, 3] RGB of `size` = (width, height)."""
    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    _arena(frame)
    for box, standing in zip(ENEMY_TOWERS, enemy_towers, strict=True):
        _tower(frame, box, standing, ENEMY_TOWER, ENEMY_ROOF)
    for box, standing in zip(OWN_TOWERS, own_towers, strict=True):
        _tower(frame, box, standing, OWN_TOWER, OWN_ROOF)
    _fill(frame, (0.0, 0.82, 1.0, 1.0), PANEL)
    _fill(frame, (0.05, 0.93, 0.13, 0.985), CARD_ART[(seed + 1) % 4])  # the next-card preview
    for slot, ready in enumerate(cards_ready):
        _card(frame, slot, ready)
    _elixir_bar(frame, elixir)
    if result is not None:
        _banner(frame, result)
    return _noisy(frame, seed)


def menu_frame(size: tuple[int, int] = (368, 652), seed: int = 0) -> np.ndarray:
    """Return a screen that is not a battle (a menu: no elixir bar, no banner)."""
    width, height = size
    frame = np.full((height, width, 3), MENU, np.uint8)
    _fill(frame, (0.3, 0.7, 0.7, 0.78), (240, 190, 40))  # a 'Battle' button
    return _noisy(frame, seed)


def _noisy(frame: np.ndarray, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 3, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


class FrameWindow:
    """An X window at (x, y) on `display` showing an RGB frame; `events()` returns the clicks and keys it got."""

    def __init__(self, display: str, frame: np.ndarray, x: int = 0, y: int = 0) -> None:
        from Xlib import X
        from Xlib import display as xdisplay

        self._X = X
        self.conn = xdisplay.Display(display)
        screen = self.conn.screen()
        height, width = frame.shape[:2]
        self.window = screen.root.create_window(
            x, y, width, height, 0, screen.root_depth, X.InputOutput, X.CopyFromParent,
            background_pixel=screen.black_pixel, override_redirect=True,
            event_mask=X.ExposureMask | X.ButtonPressMask | X.KeyPressMask)
        self.gc = self.window.create_gc()
        self.window.map()
        self._received: list[tuple] = []
        deadline = time.monotonic() + 10
        while not any(e[0] == "expose" for e in self._drain()) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.show(frame)

    def show(self, frame: np.ndarray) -> None:
        """Draw `frame` (uint8[H, W, 3] RGB, the window's size) and wait until the server has it."""
        height, width = frame.shape[:2]
        bgrx = np.zeros((height, width, 4), np.uint8)
        bgrx[:, :, :3] = frame[:, :, ::-1]
        rows = max(1, 200_000 // (width * 4))  # stay under the core protocol's request size
        for top in range(0, height, rows):
            part = bgrx[top:top + rows]
            self.window.put_image(self.gc, 0, top, width, part.shape[0], self._X.ZPixmap, 24, 0, part.tobytes())
        self.conn.sync()

    def _drain(self) -> list[tuple]:
        X = self._X
        out = []
        while self.conn.pending_events():
            event = self.conn.next_event()
            if event.type == X.ButtonPress:
                out.append(("click", event.event_x, event.event_y))
            elif event.type == X.KeyPress:
                out.append(("key", event.detail, event.state))
            elif event.type == X.Expose:
                out.append(("expose",))
        return out

    def events(self, expected: int, timeout_s: float = 10.0) -> list[tuple]:
        """Return the clicks ('click', x, y) and keys ('key', keycode, modifier state) received so far, waiting up
        to `timeout_s` for at least `expected` of them."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._received += [e for e in self._drain() if e[0] != "expose"]
            if len(self._received) >= expected or time.monotonic() > deadline:
                return self._received
            time.sleep(0.01)

    def close(self) -> None:
        self.window.destroy()
        self.conn.close()
