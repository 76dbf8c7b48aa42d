"""Elo from games against the fixed ladder, checked against hand-worked values."""

from __future__ import annotations

import math

import pytest

from app.rating import LADDER, expected_score, fit_rating, nearest_rungs, rung_of


def test_expected_score_is_the_elo_logistic() -> None:
    assert expected_score(1500, 1500) == 0.5
    assert expected_score(1900, 1500) == pytest.approx(10 / 11)  # 400 points: 10 to 1


def test_fit_without_prior_is_the_closed_form_for_one_opponent() -> None:
    # 3 wins, 1 loss against 1500: expected score 0.75, so R = 1500 + 400 log10(3).
    rating, se = fit_rating([(1500, 1), (1500, 1), (1500, 0), (1500, 1)], prior_draws=0)
    assert rating == pytest.approx(1500 + 400 * math.log10(3), abs=1e-6)
    k = math.log(10) / 400
    assert se == pytest.approx(1 / math.sqrt(4 * 0.75 * 0.25 * k * k))  # ~200 Elo from four games
    # Symmetric results against two opponents put the player halfway.
    assert fit_rating([(1400, 1), (1600, 0)], prior_draws=0)[0] == pytest.approx(1500, abs=1e-6)
    assert fit_rating([(1400, 0.5), (1600, 0.5)], prior_draws=0)[0] == pytest.approx(1500, abs=1e-6)


def test_the_virtual_draw_keeps_perfect_results_finite() -> None:
    # 10 wins of 10 against 1000, plus one virtual draw: 10.5 of 11, so R = 1000 + 400 log10(21).
    rating, se = fit_rating([(1000, 1)] * 10)
    assert rating == pytest.approx(1000 + 400 * math.log10(21), abs=1e-6)
    assert math.isfinite(se) and se > 0
    low, _ = fit_rating([(-153, 0)] * 6)
    assert low == pytest.approx(-153 - 400 * math.log10(13), abs=1e-6)  # 0.5 of 7
    with pytest.raises(ValueError):
        fit_rating([])
    with pytest.raises(ValueError):
        fit_rating([(1500, 2)])
    with pytest.raises(ValueError, match="no finite rating"):
        fit_rating([(1500, 1), (1700, 1)], prior_draws=0)


def test_nearest_rungs_and_rung_lookup() -> None:
    assert [spec for spec, _ in nearest_rungs(-500, 3)] == ["random", "epsilon:0.75", "epsilon:0.5"]
    assert [elo for _, elo in nearest_rungs(1500, 3)] == [1496, 1500, 1754]
    assert len(nearest_rungs(0, 99)) == len(LADDER) and len(nearest_rungs(0, 0)) == 1
    assert rung_of("greedy") == 658 and rung_of("stockfish:elo=1700") == 1754 and rung_of("epsilon:0.1") is None


def test_the_training_opponent_advances_one_rung_once_the_agent_scores_75_percent_against_it() -> None:
    from app.rating import next_opponent

    margin = 400 * math.log10(3)  # 75 % expected score
    assert next_opponent("random", -153 + margin + 50, 50 - 0.01) == "epsilon:0.75"
    assert next_opponent("random", -153 + margin + 50, 50 + 0.01) is None  # not sure enough yet
    assert next_opponent("greedy", 2000, 10) == "epsilon:0.25"  # one rung at a time
    assert next_opponent("stockfish:elo=2000", 4000, 10) is None  # the top rung
    assert next_opponent("stockfish:nodes=1000", 4000, 10) is None  # not a rung: the operator's choice stays


def test_the_training_opponent_falls_back_one_rung_under_25_percent_never_below_the_floor() -> None:
    from app.rating import next_opponent

    margin = 400 * math.log10(3)  # 25 % expected score at 191 Elo below
    assert next_opponent("epsilon:0.5", 496 - margin - 50, 50 - 0.01) == "epsilon:0.75"
    assert next_opponent("epsilon:0.5", 496 - margin - 50, 50 + 0.01) is None  # not sure enough yet
    assert next_opponent("greedy", -1000, 10) == "epsilon:0.5"  # one rung at a time
    assert next_opponent("greedy", -1000, 10, floor="epsilon:0.5") == "epsilon:0.5"
    assert next_opponent("greedy", -1000, 10, floor="greedy") is None  # where the operator started it
    assert next_opponent("random", -1000, 10) is None  # the bottom rung
    assert next_opponent("greedy", 658, 10) is None  # between 25 % and 75 %: it stays
    assert next_opponent("greedy", -1000, 10, floor="stockfish:nodes=1000") is None  # a floor that is not a rung
    # Between two rungs far apart (epsilon 0.25 at 959, Stockfish at 1496): no back and forth between them.
    assert next_opponent("epsilon:0.25", 1200, 35) == "stockfish"
    assert next_opponent("stockfish", 1200, 35) is None
    assert next_opponent("stockfish:elo=2000", 2050, 35) is None
    assert next_opponent("stockfish", 1000, 35) == "epsilon:0.25"
