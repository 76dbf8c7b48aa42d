"""When a game on xboard's screen is over: the rules of xboard's engine adapter, not python-chess's claims."""

from __future__ import annotations

import chess
import pytest

from envs.screen.xboard import gui_outcome


def _play(board: chess.Board, moves: str) -> chess.Board:
    for uci in moves.split():
        board.push_uci(uci)
    return board


def test_a_repetition_the_side_to_move_could_claim_is_played_on() -> None:
    # after Nf3 Nf6 Ng1 Ng8 Nf3 Nf6 Ng1, black's Ng8 would repeat the start a third time: python-chess ends the
    # game here (a claim of the side to move), polyglot only once the position is on the board a third time
    board = _play(chess.Board(), "g1f3 g8f6 f3g1 f6g8 g1f3 g8f6 f3g1")
    assert board.outcome(claim_draw=True) is not None
    assert gui_outcome(board) is None
    board.push_uci("f6g8")
    outcome = gui_outcome(board)
    assert outcome is not None and outcome.termination == chess.Termination.THREEFOLD_REPETITION
    assert outcome.winner is None


def test_fifty_moves_end_at_the_hundredth_quiet_ply_not_one_before() -> None:
    board = chess.Board("8/8/8/4k3/8/8/R7/4K3 w - - 99 80")
    assert board.outcome(claim_draw=True) is not None      # a move would reach 100: python-chess claims
    assert gui_outcome(board) is None
    board.push_uci("a2a3")
    outcome = gui_outcome(board)
    assert outcome is not None and outcome.termination == chess.Termination.FIFTY_MOVES


def test_a_mate_on_the_hundredth_ply_is_a_mate() -> None:
    board = chess.Board("6k1/5ppp/8/8/8/8/8/R5K1 w - - 99 80")
    board.push_uci("a1a8")
    outcome = gui_outcome(board)
    assert outcome is not None and (outcome.termination, outcome.winner) == (chess.Termination.CHECKMATE, chess.WHITE)


@pytest.mark.parametrize(("fen", "ended"), [
    ("8/8/8/4k3/8/8/8/4K3 b - - 0 1", True),                 # KK
    ("8/8/8/4k3/8/8/8/2B1K3 b - - 0 1", True),               # KBK
    ("8/8/8/4k3/8/8/8/1N2K3 b - - 0 1", True),               # KNK
    ("8/8/3b4/4k3/8/8/8/2B1K3 b - - 0 1", True),             # KB-KB, both bishops on dark squares (d6, c1)
    ("8/8/2b5/4k3/8/8/8/2B1K3 b - - 0 1", False),            # KB-KB on opposite colours (c6, c1): a mate is possible
    ("8/8/8/4k3/8/8/8/B1B1K3 b - - 0 1", False),             # KBB one colour: python-chess calls it a draw, xboard not
    ("8/8/8/4k3/8/8/8/1NN1K3 b - - 0 1", False),             # KNN
    ("8/8/8/4k3/8/8/P7/4K3 b - - 0 1", False),               # a pawn
])
def test_too_little_material_as_polyglot_counts_it(fen: str, ended: bool) -> None:
    outcome = gui_outcome(chess.Board(fen))
    assert (outcome is not None) == ended
    if ended:
        assert outcome.termination == chess.Termination.INSUFFICIENT_MATERIAL


def test_stalemate_and_a_game_in_progress() -> None:
    stalemate = gui_outcome(chess.Board("7k/5Q2/6K1/8/8/8/8/8 b - - 0 1"))
    assert stalemate is not None and stalemate.termination == chess.Termination.STALEMATE
    assert gui_outcome(chess.Board()) is None
