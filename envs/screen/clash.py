"""Clash Royale from the screen of an Android emulator (or a replay of one): taps, pixel detectors, a fixed
decision rate. The game itself never runs here; the screen source is a `Device`.

Every geometry value is a fraction of the window (so it scales with the window size) and every colour is a
config value. The defaults follow the 368x652 screenshot layout of ClashRoyaleBuildABot for cards, elixir
bar and placement tiles, but the colours, tower boxes and result banner are CALIBRATED ON SYNTHETIC FRAMES
ONLY (tests/integration/screen_frames.py): before live play, record real frames and recalibrate with
`python -m envs.screen.calibrate` (see its docstring). Supercell forbids bots in competitive play: use
friendly battles or the training camp only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from envs.common import image_space, mask_space, resize
from envs.errors import EnvError
from envs.screen.capture import Region
from envs.screen.config import Box, ClashConfig
from envs.screen.detectors import PixelBox, colour_fraction, saturation
from envs.screen.display import Screen
from envs.screen.env import make_config
from envs.screen.pacing import Pacer
from envs.screen.replay import ReplayDevice

__all__ = ["CARD_SLOTS", "ELIXIR_SEGMENTS", "BattleState", "ClashLayout", "ClashRoyaleEnv", "Device", "ScreenDevice",
           "action_mask", "elixir_bar_visible", "read_battle", "read_elixir", "read_result", "towers_standing"]

log = logging.getLogger(__name__)

CARD_SLOTS = 4
ELIXIR_SEGMENTS = 10
SEGMENT_MIN_FILL = 0.5
"""Fraction of an elixir segment's pixels in the filled colour above which the segment counts as full."""
BAR_MIN_MATCH = 0.8
"""Fraction of the elixir bar's pixels in the filled or empty colour above which a battle is on screen."""
TOWER_MIN_MATCH = 0.3
"""Fraction of a tower box in the team colour above which the tower stands."""
BANNER_MIN_MATCH = 0.5
"""Fraction of the banner box in a result colour above which that result is shown."""
RESET_TAP_GAP_S = 1.0
"""Pause after each reset tap (menus animate)."""
RESULTS = {"win": 1.0, "loss": -1.0, "draw": 0.0}


class Device(Protocol):
    """Where the game's pixels come from and taps go to: a live window or a replay.

    `size` is the window's (width, height); `grab()` returns its uint8[height, width, 3] RGB pixels; `tap(x, y)`
    taps window pixel (x, y); `now()` / `sleep(s)` are the device's clock (real time live, virtual in a replay).
    """

    size: tuple[int, int]

    def grab(self) -> np.ndarray: ...

    def tap(self, x: int, y: int) -> None: ...

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def close(self) -> None: ...


class ScreenDevice:
    """The live path: the emulator window as a region of an X display, grabbed with mss, tapped with XTEST clicks.

    Works with any Android screen shown in an X window: scrcpy mirroring a phone or an emulator over adb, or the
    Android emulator's own window. Put the window at a fixed position (or no window manager at all) and set
    `clash.region` to its client area, without title bar or borders.
    """

    def __init__(self, display: str, region: tuple[int, int, int, int]) -> None:
        self._screen = Screen(display)
        self.region = Region(*region)
        try:
            self._screen.check_region(self.region, "clash.region")
        except EnvError:
            self._screen.close()
            raise
        self.size = (self.region.width, self.region.height)

    def grab(self) -> np.ndarray:
        return self._screen.grab(self.region)

    def tap(self, x: int, y: int) -> None:
        self._screen.click(self.region.x + x, self.region.y + y)

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(seconds, 0.0))

    def close(self) -> None:
        self._screen.close()


@dataclass(frozen=True)
class ClashLayout:
    """The pixel geometry of one window size: the config's fractions times (width, height)."""

    width: int
    height: int
    cfg: ClashConfig

    @property
    def n_cells(self) -> int:
        return self.cfg.grid[0] * self.cfg.grid[1]

    @property
    def n_actions(self) -> int:
        return 1 + CARD_SLOTS * self.n_cells

    def pixels(self, box: Box) -> PixelBox:
        """Return a fractional box in pixels (left, top, right, bottom)."""
        left, top, right, bottom = box
        return (round(left * self.width), round(top * self.height), round(right * self.width),
                round(bottom * self.height))

    def point(self, x: float, y: float) -> tuple[int, int]:
        """Return window fractions (x, y) as a pixel, clamped inside the window."""
        return min(int(x * self.width), self.width - 1), min(int(y * self.height), self.height - 1)

    def _part(self, box: Box, index: int, parts: int, inset: float) -> Box:
        """Return part `index` of `parts` equal columns of `box`, shrunk by `inset` (a fraction of the part)."""
        left, top, right, bottom = box
        w, h = (right - left) / parts, bottom - top
        x0 = left + index * w
        return x0 + inset * w, top + inset * h, x0 + (1 - inset) * w, bottom - inset * h

    def card_box(self, slot: int) -> PixelBox:
        """The centre of hand card `slot` (0 = leftmost), without the gaps between cards."""
        return self.pixels(self._part(self.cfg.hand, slot, CARD_SLOTS, 0.15))

    def segment_box(self, segment: int) -> PixelBox:
        """The centre of elixir segment `segment` (0 = leftmost), without the separators."""
        return self.pixels(self._part(self.cfg.elixir_bar, segment, ELIXIR_SEGMENTS, 0.2))

    def card_centre(self, slot: int) -> tuple[int, int]:
        left, top, right, bottom = self._part(self.cfg.hand, slot, CARD_SLOTS, 0.0)
        return self.point((left + right) / 2, (top + bottom) / 2)

    def cell_centre(self, col: int, row: int) -> tuple[int, int]:
        """The centre of placement cell (col, row); col 0 is the left, row 0 the row next to the river."""
        cols, rows = self.cfg.grid
        left, top, right, bottom = self.cfg.own_half
        return self.point(left + (col + 0.5) * (right - left) / cols, top + (row + 0.5) * (bottom - top) / rows)

    def decode(self, action: int) -> tuple[int, int, int] | None:
        """Return (card slot, col, row) of a card action, or None for the wait action (0)."""
        if action == 0:
            return None
        card, cell = divmod(action - 1, self.n_cells)
        row, col = divmod(cell, self.cfg.grid[0])
        return card, col, row

    def taps(self, action: int) -> list[tuple[int, int]]:
        """Return the window pixels tapped for `action`: none to wait, else the card, then the cell centre."""
        decoded = self.decode(action)
        if decoded is None:
            return []
        card, col, row = decoded
        return [self.card_centre(card), self.cell_centre(col, row)]

    def action_names(self) -> tuple[str, ...]:
        cols, rows = self.cfg.grid
        return ("wait", *(f"card{card + 1}@{col},{row}" for card in range(CARD_SLOTS)
                          for row in range(rows) for col in range(cols)))


@dataclass(frozen=True)
class BattleState:
    """What the detectors read from one frame."""

    in_battle: bool
    """The elixir bar is on screen and no result banner is."""
    elixir: int
    """Filled elixir segments, 0-10."""
    cards_ready: tuple[bool, ...]
    """Per hand slot: the card is in colour (the game greys out cards the elixir cannot pay for)."""
    enemy_towers: tuple[bool, ...]
    """Per enemy tower (left princess, king, right princess): still standing."""
    own_towers: tuple[bool, ...]
    """Per own tower: still standing."""
    result: str | None
    """'win', 'loss' or 'draw' when the result banner shows, else None."""


def read_elixir(frame: np.ndarray, layout: ClashLayout) -> int:
    """Return how many elixir segments are filled."""
    cfg = layout.cfg
    return sum(colour_fraction(frame, layout.segment_box(i), cfg.elixir_rgb, cfg.colour_tolerance) >= SEGMENT_MIN_FILL
               for i in range(ELIXIR_SEGMENTS))


def elixir_bar_visible(frame: np.ndarray, layout: ClashLayout) -> bool:
    """Return whether the elixir bar is on screen: its segments show the filled or the empty colour."""
    cfg = layout.cfg
    known = sum(colour_fraction(frame, layout.segment_box(i), rgb, cfg.colour_tolerance)
                for i in range(ELIXIR_SEGMENTS) for rgb in (cfg.elixir_rgb, cfg.elixir_empty_rgb))
    return known / ELIXIR_SEGMENTS >= BAR_MIN_MATCH


def read_result(frame: np.ndarray, layout: ClashLayout) -> str | None:
    """Return the result the banner shows ('win', 'loss', 'draw'), or None when no banner is visible."""
    cfg = layout.cfg
    box = layout.pixels(cfg.banner)
    for result, rgb in (("win", cfg.victory_rgb), ("loss", cfg.defeat_rgb), ("draw", cfg.draw_rgb)):
        if colour_fraction(frame, box, rgb, cfg.colour_tolerance) >= BANNER_MIN_MATCH:
            return result
    return None


def towers_standing(frame: np.ndarray, layout: ClashLayout, boxes: tuple[Box, ...], rgb: tuple[int, int, int]
                    ) -> tuple[bool, ...]:
    """Return, per tower box, whether enough of it has the team colour (a destroyed tower is grey rubble)."""
    tol = layout.cfg.colour_tolerance
    return tuple(colour_fraction(frame, layout.pixels(b), rgb, tol) >= TOWER_MIN_MATCH for b in boxes)


def read_battle(frame: np.ndarray, layout: ClashLayout) -> BattleState:
    """Return everything the detectors see in `frame` (uint8[H, W, 3] RGB of the whole window)."""
    cfg = layout.cfg
    result = read_result(frame, layout)
    ready = tuple(saturation(frame, layout.card_box(i)) >= cfg.card_min_saturation for i in range(CARD_SLOTS))
    return BattleState(
        in_battle=result is None and elixir_bar_visible(frame, layout), elixir=read_elixir(frame, layout),
        cards_ready=ready, enemy_towers=towers_standing(frame, layout, cfg.enemy_towers, cfg.enemy_tower_rgb),
        own_towers=towers_standing(frame, layout, cfg.own_towers, cfg.own_tower_rgb), result=result)


def action_mask(state: BattleState, layout: ClashLayout) -> np.ndarray:
    """Return bool[n_actions]: waiting is always legal; a card only in battle, in colour, with enough elixir."""
    mask = np.zeros(layout.n_actions, bool)
    mask[0] = True
    if state.in_battle and state.elixir >= layout.cfg.min_card_cost:
        for card, ready in enumerate(state.cards_ready):
            mask[1 + card * layout.n_cells:1 + (card + 1) * layout.n_cells] = ready
    return mask


class ClashRoyaleEnv(gym.Env):
    """Clash Royale battles played from the emulator's screen with taps (friendly battles / training camp only).

    Observation: dict with `image` uint8[image_size, image_size, 3] in [0, 255] (the whole window, area-resized,
        aspect ratio not kept), `action_mask` bool[1 + 4 * cols * rows], and for metrics only `log_elixir`,
        `log_enemy_towers_destroyed`, `log_own_towers_lost` (int32 scalars).
    Actions: Discrete(1 + 4 * cols * rows): 0 waits; 1 + card * cols * rows + row * cols + col taps hand card
        `card` (0-3, left to right), then the centre of placement cell (col, row) of the grid over the own half
        (row 0 next to the river). An action outside the mask taps nothing.
    Action mask: waiting always; a card while a battle is on screen, the card is in colour (the game greys
        out unaffordable cards) and the elixir bar shows at least `min_card_cost` segments.
    Reward: +1 win, -1 loss, 0 draw when the result banner appears; plus `tower_reward` per enemy tower
        destroyed and minus it per own tower lost (off by default; the counts only grow, so a unit standing
        in front of a tower cannot make it pay twice). Towers are counted from the battle frames only: the one
        with the result banner pays its result (the banner may cover tower boxes). An episode counts from the
        towers standing at its reset, so a battle that goes on after a truncation does not pay its fallen
        towers again.
    Episode end: terminated when a result banner is detected; truncated `max_battle_s` after the battle
        started. Steps run at `decision_hz` on the device's clock; the frame is grabbed after the wait.
        Reset taps `reset_taps` and then waits (up to `reset_timeout_s`) until a battle is on screen; a seeded
        reset on a ReplayDevice first rewinds the replay, so the same seed gives the same episode.
    Episode info: result ('win', 'loss', 'draw' or None), opponent, enemy_towers_destroyed, own_towers_lost,
        illegal_actions, duration_s.
    Args: image_size, then exactly the fields of `ClashConfig`; Python callers may pass `device` (any Device,
        e.g. a ReplayDevice over arrays) instead of the one the config selects (a ReplayDevice over
        replay_dir when it is set, else a live ScreenDevice on display/region).
    Detector thresholds and colours are calibrated on synthetic frames only; recalibrate on real recordings.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(self, image_size: int = 64, *, device: Device | None = None, **options: Any) -> None:
        cfg: ClashConfig = make_config(ClashConfig, options)
        self.cfg, self.image_size, self.render_mode = cfg, image_size, "rgb_array"
        if device is None:
            device = ReplayDevice(cfg.replay_dir) if cfg.replay_dir else ScreenDevice(cfg.display, cfg.region)
        self.device = device
        self.layout = ClashLayout(device.size[0], device.size[1], cfg)
        self.pacer = Pacer(cfg.decision_hz, device.now, device.sleep)
        self.action_names = self.layout.action_names()
        self.action_space = gym.spaces.Discrete(self.layout.n_actions)
        count = gym.spaces.Box(0, 3, (), np.int32)
        self.observation_space = gym.spaces.Dict({
            "image": image_space(image_size), "action_mask": mask_space(self.layout.n_actions),
            "log_elixir": gym.spaces.Box(0, ELIXIR_SEGMENTS, (), np.int32),
            "log_enemy_towers_destroyed": count, "log_own_towers_lost": count})
        self._frame: np.ndarray | None = None
        self._state: BattleState | None = None
        self._result: str | None = None
        self._enemy_destroyed = self._own_lost = self._illegal = 0
        self._started_s = 0.0

    def _observe(self) -> BattleState:
        self._frame = self.device.grab()
        self._state = read_battle(self._frame, self.layout)
        return self._state

    def _obs(self) -> dict[str, np.ndarray]:
        assert self._frame is not None and self._state is not None
        return {"image": resize(self._frame, self.image_size).copy(),
                "action_mask": action_mask(self._state, self.layout),
                "log_elixir": np.array(self._state.elixir, np.int32),
                "log_enemy_towers_destroyed": np.array(self._enemy_destroyed, np.int32),
                "log_own_towers_lost": np.array(self._own_lost, np.int32)}

    def _wait_for_battle(self) -> None:
        deadline = self.device.now() + self.cfg.reset_timeout_s
        while not self._observe().in_battle:
            if self.device.now() >= deadline:
                raise EnvError(f"no battle on screen after {self.cfg.reset_timeout_s:.0f} s of waiting; start a "
                               "friendly battle or a training camp match (Supercell forbids bots in ladder play), "
                               "or check clash.region and recalibrate the elixir bar colours")
            self.device.sleep(self.pacer.period_s)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None and isinstance(self.device, ReplayDevice):
            self.device.rewind()  # the same seed replays the same episode
        for x, y in self.cfg.reset_taps:
            self.device.tap(*self.layout.point(x, y))
            self.device.sleep(RESET_TAP_GAP_S)
        self._wait_for_battle()
        # Counted from what stands now: after a truncation the same battle may go on, its fallen towers paid.
        state = self._state
        assert state is not None
        self._enemy_destroyed, self._own_lost = state.enemy_towers.count(False), state.own_towers.count(False)
        self._result, self._illegal = None, 0
        self._started_s = self.device.now()
        self.pacer.restart()
        return self._obs(), {}

    def _tap(self, action: int) -> None:
        for i, (x, y) in enumerate(self.layout.taps(action)):
            if i:
                self.device.sleep(self.cfg.tap_gap_s)
            self.device.tap(x, y)

    def _tower_reward(self, state: BattleState) -> float:
        """Return the shaping reward for towers newly seen destroyed (counts never go down)."""
        enemy = max(self._enemy_destroyed, state.enemy_towers.count(False))
        own = max(self._own_lost, state.own_towers.count(False))
        reward = self.cfg.tower_reward * ((enemy - self._enemy_destroyed) - (own - self._own_lost))
        self._enemy_destroyed, self._own_lost = enemy, own
        return reward

    def step(self, action):
        assert self._state is not None, "call reset() first"
        action = int(action)
        if action_mask(self._state, self.layout)[action]:
            self._tap(action)
        else:
            self._illegal += 1
        self.pacer.wait()
        state = self._observe()
        reward = self._tower_reward(state) if state.in_battle else 0.0
        terminated = state.result is not None
        if terminated:
            self._result = state.result
            reward += RESULTS[state.result]
        truncated = not terminated and self.device.now() - self._started_s >= self.cfg.max_battle_s
        info = {"episode": self.episode_info()} if terminated or truncated else {}
        return self._obs(), float(reward), terminated, truncated, info

    def episode_info(self) -> dict[str, Any]:
        """Return what the match history keeps of the battle."""
        return {"result": self._result, "opponent": self.cfg.opponent,
                "enemy_towers_destroyed": self._enemy_destroyed, "own_towers_lost": self._own_lost,
                "illegal_actions": self._illegal, "duration_s": round(self.device.now() - self._started_s, 1)}

    def render(self) -> np.ndarray | None:
        """Return the window at its native resolution, as last grabbed."""
        return None if self._frame is None else self._frame.copy()

    def close(self) -> None:
        self.device.close()
