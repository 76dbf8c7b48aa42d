"""xboard chess against Stockfish played only through screen grabs and clicks, with the board read back from the
screen checked against the python-chess mirror after every move."""

from __future__ import annotations

import io
import os
import shutil
import signal
import time

import chess
import chess.pgn
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import EnvError
from envs.screen.xboard import XboardChessEnv, gui_outcome, occupancy_of, square_cell

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("Xvfb") is None or shutil.which("xboard", path="/usr/games") is None,
                       reason="Xvfb or xboard is not installed"),
]


@pytest.fixture(scope="module")
def env():
    game = XboardChessEnv(32, decision_hz=120)
    yield game
    game.close()


def cell(name: str) -> int:
    return square_cell(chess.parse_square(name))


def test_three_moves_through_the_screen_keep_the_mirror_in_sync(env) -> None:
    obs, _ = env.reset(seed=0)
    assert obs["action_mask"].sum() == 10  # 8 pawns and 2 knights can move
    assert np.array_equal(env.read_board_occupancy(), occupancy_of(chess.Board()))
    for source, target in (("e2", "e4"), ("g1", "f3"), ("f1", "c4")):
        if not obs["action_mask"][cell(source)]:
            source, target = next((chess.square_name(m.from_square), chess.square_name(m.to_square))
                                  for m in env.board.legal_moves)
        obs, reward, terminated, truncated, _ = env.step(cell(source))
        assert obs["action_mask"][cell(target)] and not obs["action_mask"][cell(source)]
        obs, reward, terminated, truncated, _ = env.step(cell(target))
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert env.board.move_stack[-2].uci() == source + target, "the agent's move is in the mirror"
        assert env.board.turn == chess.WHITE, "the engine's reply was read from the screen"
        assert np.array_equal(env.read_board_occupancy(), occupancy_of(env.board)), env.board.fen()
    assert env.board.ply() == 6


def test_reselecting_another_piece_moves_that_piece(env) -> None:
    env.reset(seed=0)
    env.step(cell("e2"))
    obs, *_ = env.step(cell("d2"))
    assert obs["action_mask"][cell("d4")] and not obs["action_mask"][cell("e4")]
    env.step(cell("d4"))
    assert env.board.move_stack[0].uci() == "d2d4"
    assert np.array_equal(env.read_board_occupancy(), occupancy_of(env.board))


def test_masked_click_changes_nothing(env) -> None:
    obs, _ = env.reset(seed=0)
    after, reward, terminated, truncated, _ = env.step(cell("e5"))
    assert np.array_equal(after["image"], obs["image"]) and env.board.ply() == 0
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert env.episode_info()["illegal_actions"] == 1


def test_new_game_resets_the_screen_and_the_mirror(env) -> None:
    env.reset(seed=0)
    env.step(cell("d2"))
    env.step(cell("d4"))
    obs, _ = env.reset(seed=1)
    assert env.board == chess.Board() and obs["action_mask"].sum() == 10
    assert np.array_equal(env.read_board_occupancy(), occupancy_of(chess.Board()))


@pytest.mark.parametrize(("square", "color", "kind"), [
    pytest.param(chess.H8, chess.BLACK, chess.ROOK, id="black-rook"),
    pytest.param(chess.G8, chess.BLACK, chess.KNIGHT, id="black-knight"),
    pytest.param(chess.F8, chess.BLACK, chess.BISHOP, id="black-bishop"),
    pytest.param(chess.H1, chess.WHITE, chess.ROOK, id="white-rook"),
    pytest.param(chess.G1, chess.WHITE, chess.KNIGHT, id="white-knight"),
    pytest.param(chess.F1, chess.WHITE, chess.BISHOP, id="white-bishop"),
])
def test_silhouettes_tell_promotion_pieces_apart(env, square, color, kind) -> None:
    """The silhouettes come from the queen-side pieces, so the king-side ones are unseen examples."""
    env.reset(seed=0)
    assert env.read_piece(square, color, [chess.QUEEN, chess.ROOK, chess.BISHOP, chess.KNIGHT]) == kind


def test_passes_the_gymnasium_checker(env) -> None:
    check_env(env, skip_render_check=True)
    assert env.render().shape == (*env.board_region[2:][::-1], 3)


def test_a_random_game_ends_with_the_mirrors_result_and_pgn() -> None:
    game = envs.make("xboard-chess", image_size=32, decision_hz=120, max_plies=160)
    rng = np.random.default_rng(7)
    try:
        obs, _ = game.reset(seed=7)
        terminated = truncated = False
        while not (terminated or truncated):
            obs, reward, terminated, truncated, info = game.step(rng.choice(np.flatnonzero(obs["action_mask"])))
            if game._selected is None:
                assert np.array_equal(game.read_board_occupancy(), occupancy_of(game.board)), game.board.fen()
        episode = info["episode"]
        outcome = gui_outcome(game.board)
        expected = "max_plies" if outcome is None else outcome.termination.name.lower()
        assert (episode["termination"], episode["opponent"], episode["plies"]) == (
            expected, "xboard stockfish skill 0", game.board.ply())
        assert reward == {"win": 1.0, "loss": -1.0, "draw": 0.0}[episode["result"]]
        assert truncated == (expected == "max_plies") and terminated != truncated
        replayed = chess.pgn.read_game(io.StringIO(episode["pgn"])).end().board()
        assert replayed == game.board and not obs["action_mask"].any()
    finally:
        game.close()


def test_a_dead_xboard_is_a_clear_error() -> None:
    game = XboardChessEnv(16, decision_hz=120)
    try:
        game.reset()
        os.kill(game.xboard.pid, signal.SIGTERM)  # xboard stops its engine and exits with code 15
        deadline = time.monotonic() + 10
        while game.xboard.exit_code() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(EnvError) as caught:
            game.step(cell("e2"))
        assert str(caught.value) == (
            f"xboard on display {game.screen.name} exited with code 15 (its output: "
            f"{game.xboard.log_tail() or 'none'}); was its window closed or its display stopped?")
    finally:
        game.close()


def test_missing_programs_are_named() -> None:
    if "/usr/games" in os.environ.get("PATH", "").split(os.pathsep):
        pytest.skip("PATH holds /usr/games, so the programs are found anyway")
    with pytest.raises(EnvError) as caught:
        XboardChessEnv(games_dir="/nonexistent")
    assert str(caught.value) == (
        "xboard and stockfish and polyglot not found on PATH or in xboard.games_dir = '/nonexistent'; install them "
        "(apt install xboard polyglot stockfish) or set xboard.games_dir to their directory")
