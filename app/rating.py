"""Elo ratings on the Stockfish 15.1 engine scale, from games against the calibrated ladder.

The ladder (`envs.chess.opponents.LADDER`: random mover, epsilon mixes, greedy, Stockfish levels) was
fitted once with UCI_Elo 1500 as the anchor. A checkpoint's rating is the maximum-likelihood Elo of its
games against rungs whose ratings stay fixed, P(win) = 1 / (1 + 10^(-(R - r) / 400)) with a draw worth
half a win, plus one virtual draw against each rung played (BayesElo's prior), so that all wins or all
losses still give a finite rating. The standard error comes from the curvature of the log-likelihood.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from envs.chess.opponents import LADDER

__all__ = ["ADVANCE_SCORE", "GAME_SCORE", "LADDER", "expected_score", "fit_rating", "nearest_rungs",
           "next_opponent", "rung_of"]

GAME_SCORE = {"win": 1.0, "draw": 0.5, "loss": 0.0}
"""A game's score for the rated player, by the env's result."""

_K = math.log(10) / 400

ADVANCE_SCORE = 0.75
"""The training opponent advances to the next rung once the agent is expected to score this much against it (and
falls back one rung once it is expected to score less than 1 - this)."""


def expected_score(rating: float, opponent: float) -> float:
    return 1.0 / (1.0 + 10 ** (-(rating - opponent) / 400))


def fit_rating(games: Sequence[tuple[float, float]], *, prior_draws: float = 1.0) -> tuple[float, float]:
    """Return (Elo, standard error) of one player from its games: (opponent's fixed Elo, score 1/0.5/0).

    Each distinct opponent adds `prior_draws` virtual draws. Newton's method on the concave log-likelihood.
    """
    if not games:
        raise ValueError("a rating needs at least one game")
    played: dict[float, list[float]] = {}
    for opponent, score in games:
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"a game's score must be 0, 0.5 or 1 (between 0 and 1), got {score}")
        n, s = played.get(opponent, [0.0, 0.0])
        played[opponent] = [n + 1, s + score]
    pairs = [(r, n + prior_draws, s + prior_draws / 2) for r, (n, s) in played.items()]
    if all(s == 0 for _, _, s in pairs) or all(s == n for _, n, s in pairs):
        raise ValueError("all wins or all losses have no finite rating without prior_draws > 0")
    rating = sum(r * n for r, n, _ in pairs) / sum(n for _, n, _ in pairs)
    for _ in range(100):
        grad = sum(s - n * expected_score(rating, r) for r, n, s in pairs) * _K
        info = sum(n * (p := expected_score(rating, r)) * (1 - p) for r, n, _ in pairs) * _K * _K
        step = max(-400.0, min(400.0, grad / info))
        rating += step
        if abs(step) < 1e-6:
            break
    info = sum(n * (p := expected_score(rating, r)) * (1 - p) for r, n, _ in pairs) * _K * _K
    return rating, 1.0 / math.sqrt(info)


def nearest_rungs(rating: float, count: int) -> list[tuple[str, float]]:
    """The `count` ladder rungs nearest to `rating`, weakest first."""
    count = max(1, min(count, len(LADDER)))
    nearest = sorted(LADDER, key=lambda rung: (abs(rung[1] - rating), rung[1]))[:count]
    return sorted(nearest, key=lambda rung: rung[1])


def rung_of(spec: str) -> float | None:
    """The ladder Elo of an opponent spec (None when it is not a rung)."""
    return dict(LADDER).get(spec.strip())


def next_opponent(current: str, elo: float, se: float, *, floor: str | None = None) -> str | None:
    """The training curriculum's next opponent, or None to stay.

    The agent moves up one rung once it is expected to score ADVANCE_SCORE against its opponent even at its
    rating minus one standard error, and back down one rung (never below `floor`, the rung the climb started
    from) once it is expected to score less than 1 - ADVANCE_SCORE even at its rating plus one standard error:
    after a regression it trains against an opponent it can still learn from. The margins on both sides keep it
    from moving back and forth on noise, and it never steps down to a rung it would at once move up from again.
    An opponent that is not a rung (a custom spec) is never changed, nor is one whose `floor` is not a rung."""
    rung = rung_of(current)
    if rung is None:
        return None
    if expected_score(elo - se, rung) >= ADVANCE_SCORE:
        stronger = [spec for spec, r in LADDER if r > rung]
        return stronger[0] if stronger else None
    if expected_score(elo + se, rung) < 1 - ADVANCE_SCORE:
        lowest = rung_of(floor) if floor is not None else -math.inf
        if lowest is None:  # a floor that is not a rung: the operator's opponent, which never moves
            return None
        weaker = [(spec, r) for spec, r in LADDER if r < rung and r >= lowest]
        # Not to a rung it would leave again at once (two rungs far apart, e.g. epsilon 0.25 and Stockfish).
        if weaker and expected_score(elo - se, weaker[-1][1]) < ADVANCE_SCORE:
            return weaker[-1][0]
    return None
