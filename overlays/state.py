"""What a broadcast frame shows besides the game image, as frozen plain data the app fills in.

Every field has a default, so `OverlayState()` is valid; missing, empty or NaN values render as "–" or
"no data yet". Nothing here draws; `overlays.compose` does.

Caching: the dream strips and each learning curve are drawn once and reused while their cache key is
unchanged. With `version=None` (the default) the key is a digest of the content, always correct and cheap
(about 0.15 ms for four curves of 2,000 points, 0.55 ms for 40 frames of 64x64, every frame). With an int
`version`, the key is the version alone: the app bumps it whenever it changes the data, and the same version
must mean the same data (data changed in place under an unchanged version keeps showing the old picture).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ChatLine", "Curve", "Dream", "OverlayState", "Poll", "Result"]

Frames = np.ndarray | Sequence[np.ndarray]
"""uint8[N, h, w, 3], or a sequence of N uint8[h, w, 3] frames, oldest first."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Dream:
    """The dream vs reality strips: open-loop predictions beside the real frames, and an imagined future."""

    reality: Frames | None = None
    """The last K real frames, oldest first (K around 6-15)."""
    prediction: Frames | None = None
    """The world model's open-loop prediction of reality[context:] (`agent.open_loop(reality, actions)`)."""
    context: int = 5
    """How many leading real frames the model saw before predicting on its own."""
    imagined: Frames | None = None
    """The next H frames the agent dreams from its current latent state with its own policy."""
    imagined_reward: np.ndarray | Sequence[float] | None = None
    """float[H]: the predicted reward of each imagined step."""
    version: int | None = None
    """Cache key set by the app (bump it on every change), or None to key on a digest of the content."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Curve:
    """One learning curve: values over env steps. Non-finite points are skipped; mismatched lengths are cut."""

    label: str = ""
    """Chart title, e.g. "episode score", "world-model loss", "eval score", "Elo"."""
    steps: np.ndarray | Sequence[float] = ()
    """x: env steps, ascending (up to a few thousand points; drawing downsamples)."""
    values: np.ndarray | Sequence[float] = ()
    """y: one value per step."""
    color: tuple[int, int, int] | None = None
    """RGB line colour; None takes the chart slot's colour."""
    version: int | None = None
    """Cache key set by the app (bump it on every change), or None to key on a digest of the content."""


@dataclass(frozen=True, kw_only=True)
class Result:
    """One finished episode or match, as the `episodes` table keeps it."""

    outcome: str | None = None
    """'win', 'loss' or 'draw' for matches (shown W/L/D in colour); None for single-player games."""
    score: float | None = None
    """The episode's score, shown when there is no outcome."""


@dataclass(frozen=True, kw_only=True)
class Poll:
    """The viewer poll running in chat."""

    question: str = ""
    """E.g. "next opponent?"."""
    votes: Mapping[str, int] = field(default_factory=dict)
    """Option -> votes so far, in display order (the first four are shown)."""
    seconds_left: float | None = None
    """Time until the poll closes; None hides the countdown, 0 or less shows "closed"."""


@dataclass(frozen=True, kw_only=True)
class ChatLine:
    """One chat command as viewers sent it."""

    user: str = ""
    text: str = ""


@dataclass(frozen=True, kw_only=True, eq=False)
class OverlayState:
    """Everything a broadcast frame shows besides the game image; the app builds one per frame."""

    run_name: str = ""
    """Shown in the header."""
    game: str = ""
    """Current game (env id), shown in the header."""
    opponent: str = ""
    """Current opponent; empty for single-player games."""
    hud: Mapping[str, object] = field(default_factory=dict)
    """Label -> value (int, float, str or None) in display order: env steps, updates, env fps, ... (first 8)."""
    notice: str = ""
    """A highlighted message in the header ("compiling the world model...", "stream reconnecting")."""
    action: str = ""
    """The agent's current action, shown under the game view."""
    arrow: tuple[float, float, float, float] | None = None
    """(x0, y0, x1, y1) in fractions [0, 1] of the game frame: an arrow drawn on the game view (a chess move)."""
    dream: Dream = field(default_factory=Dream)
    """The dream vs reality strips."""
    curves: tuple[Curve, ...] = ()
    """Up to four learning curves, drawn in a 2x2 grid in this order."""
    results: tuple[Result, ...] = ()
    """The last results, oldest first (the last ten are shown)."""
    poll: Poll | None = None
    """The running poll, or None."""
    chat: tuple[ChatLine, ...] = ()
    """The last chat commands, oldest first (the last five are shown)."""
