"""What the broadcast frame shows, kept up to date from the actor, the learner and the episodes.

`FrameFeed` turns the app's events into the plain data `overlays.compose` draws: the view of the game,
the move arrow, the dream strips (refreshed every few seconds from the agent's `open_loop` and
`imagine`), learning-curve buffers and the last results. Every overlay value is replaced as a whole
(never changed in place), so the compositor thread can read it at any time without a torn picture.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Mapping
from typing import Any

import chess
import numpy as np

from app.curves import CURVES, RunCurves
from overlays import ChatLine, Curve, Dream, OverlayConfig, OverlayState, Poll, Result

__all__ = ["FrameFeed", "move_arrow"]

log = logging.getLogger(__name__)

CONTEXT = 5
MIN_DREAM_FRAMES = CONTEXT + 2
"""Fewest real frames a dream strip is made of: the model's 5 context frames and 2 predictions."""


def move_arrow(uci: str | None, white_at_bottom: bool) -> tuple[float, float, float, float] | None:
    """Return (x0, y0, x1, y1) in fractions of the board image for a chess move, as the viewer sees it."""
    if not uci:
        return None
    move = chess.Move.from_uci(uci)

    def point(square: int) -> tuple[float, float]:
        f, r = chess.square_file(square), chess.square_rank(square)
        x, y = (f + 0.5) / 8, (7.5 - r) / 8
        return (x, y) if white_at_bottom else (1 - x, 1 - y)

    return (*point(move.from_square), *point(move.to_square))


class FrameFeed:
    """The app's side of the overlay: collects, then hands out an OverlayState per frame."""

    def __init__(self, cfg: OverlayConfig, *, run_name: str, game: str) -> None:
        self.cfg = cfg
        self.run_name, self.game = run_name, game
        self._lock = threading.Lock()
        self._recent: collections.deque[tuple[np.ndarray, Any]] = collections.deque(maxlen=cfg.dream_frames)
        self._last_episode: list[tuple[np.ndarray, Any]] = []
        """The end of the previous episode: dreams use it while the current episode is still too short."""
        self.curves = RunCurves(cfg.curve_points)
        """The whole run's learning curves (load() them from the run dir at start; saved with the state)."""
        self._curve_cache = {label: Curve(label=label, version=0) for label in CURVES}
        self._results: collections.deque[Result] = collections.deque(maxlen=10)
        self._dream = Dream()
        self._dream_version = 0
        self.opponent = ""
        self.arrow: tuple[float, float, float, float] | None = None
        self.latent: Any = None
        self.latent_mask: np.ndarray | None = None

    # -- events -------------------------------------------------------------------------------------------

    def on_step(self, image: np.ndarray, stored_action: Any, latent: Any, info: Mapping[str, Any],
                env: Any, mask: np.ndarray | None = None) -> None:
        """Called by the actor after each decision: the observation it acted on (its image and, in games with
        illegal actions, its `action_mask`) and the action taken."""
        with self._lock:
            self._recent.append((image, stored_action))
            self.latent, self.latent_mask = latent, mask
        unwrapped = getattr(env, "unwrapped", env)
        if hasattr(unwrapped, "agent_white") and "move" in info:
            self.arrow = move_arrow(info["move"], unwrapped.agent_white)
        opponent = getattr(unwrapped, "opponent", None)
        self.opponent = getattr(opponent, "name", "") if opponent is not None else ""

    def on_episode(self, step: int, episode: Mapping[str, Any]) -> None:
        with self._lock:
            if len(self._recent) >= MIN_DREAM_FRAMES:
                self._last_episode = list(self._recent)
            self._recent.clear()  # a dream sequence never spans two episodes
            self._results.append(Result(outcome=episode.get("result"), score=float(episode["return"])))
        self.arrow = None

    def on_metrics_row(self, step: int, row: Mapping[str, Any], offset: int) -> None:
        """A row just written to metrics.jsonl, ending at byte `offset` (MetricsWriter.subscribe): feed the
        curves, and refresh the overlay's copies of those it changed."""
        with self._lock:
            changed = self.curves.add_row(step, row)
            self.curves.offset = offset  # with the row, so it is never taken twice
            for label in changed:
                self._refresh_curve(label)

    def _refresh_curve(self, label: str) -> None:
        steps, values = self.curves.curves[label].arrays()
        self._curve_cache[label] = Curve(label=label, steps=steps, values=values, version=self.curves.version)

    def load_curves(self, path: Any, metrics_path: Any) -> None:
        """Resume the run's curves (see RunCurves.load)."""
        with self._lock:
            self.curves.load(path, metrics_path)
            for label in CURVES:
                self._refresh_curve(label)

    def reset_curves(self, skip_to: int = 0) -> None:
        """Empty the curves; the metrics rows before byte `skip_to` are never taken into them."""
        with self._lock:
            self.curves.reset()
            self.curves.offset = skip_to
            for label in CURVES:
                self._refresh_curve(label)

    def curves_json(self, state_step: int | None = None) -> str:
        """The curves to save (RunCurves.to_json) with the state.json of env step `state_step`."""
        with self._lock:  # copied under the lock, serialised outside it: the compositor needs it every frame
            curves = self.curves.copy()
        return curves.to_json(state_step)

    def curves_data(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            curves = self.curves.copy()
        return curves.as_lists()

    # -- dreams -------------------------------------------------------------------------------------------

    def refresh_dream(self, agent: Any) -> bool:
        """Recompute the dream strips with the agent's newest parameters; False when there is too little data."""
        if not hasattr(agent, "open_loop"):
            return False
        with self._lock:
            recent, latent, mask = list(self._recent), self.latent, self.latent_mask
            if len(recent) < MIN_DREAM_FRAMES:
                recent = self._last_episode
        if len(recent) < MIN_DREAM_FRAMES or latent is None:
            return False
        frames = np.stack([image for image, _ in recent])
        actions = np.stack([np.asarray(action) for _, action in recent])
        prediction = agent.open_loop(frames, actions, context=CONTEXT)
        imagined, rewards = agent.imagine(latent, self.cfg.imagine_horizon, mask)
        self._dream_version += 1
        self._dream = Dream(reality=frames, prediction=prediction, context=CONTEXT, imagined=imagined,
                            imagined_reward=rewards, version=self._dream_version)
        return True

    # -- the frame's data ---------------------------------------------------------------------------------

    def state(self, hud: Mapping[str, object], *, action: str = "", notice: str = "",
              chat: tuple[ChatLine, ...] = (), poll: Poll | None = None) -> OverlayState:
        with self._lock:
            curves = tuple(self._curve_cache[label] for label in CURVES)
            results = tuple(self._results)
        return OverlayState(run_name=self.run_name, game=self.game, opponent=self.opponent, hud=dict(hud),
                            notice=notice, action=action, arrow=self.arrow, dream=self._dream, curves=curves,
                            results=results, chat=chat, poll=poll)
