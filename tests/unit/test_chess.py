"""Chess from pixels: tile renderer, GUI-like move input, the game env with scripted opponents, mate-in-1."""

from __future__ import annotations

import random

import chess
import numpy as np
import pytest

import envs
from envs.chess.env import ChessEnv
from envs.chess.mate import MateInOneEnv
from envs.chess.moves import MoveInput
from envs.chess.opponents import Greedy, PolicyOpponent, RandomMover, make_opponent
from envs.chess.positions import load_positions, mating_moves, split_of
from envs.chess.render import BoardRenderer, cell_to_square, square_to_cell
from envs.errors import EnvError


def cell(name: str, white: bool = True) -> int:
    return square_to_cell(chess.parse_square(name), white)


class Scripted:
    """An opponent that plays a fixed list of UCI moves."""

    name = "scripted"

    def __init__(self, *moves: str) -> None:
        self.moves = list(moves)

    def choose(self, board: chess.Board, rng: random.Random) -> chess.Move:
        return chess.Move.from_uci(self.moves.pop(0))

    def close(self) -> None:
        pass


# -- renderer -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("white", [True, False], ids=["white-bottom", "black-bottom"])
def test_cells_and_squares_are_inverse(white) -> None:
    assert [square_to_cell(cell_to_square(c, white), white) for c in range(64)] == list(range(64))
    assert cell_to_square(0, white) == (chess.A8 if white else chess.H1)
    assert cell_to_square(63, white) == (chess.H1 if white else chess.A8)


def test_gather_matches_tile_by_tile_reference() -> None:
    r = BoardRenderer(8)
    board = chess.Board("r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3")
    image = r.render(board, white_at_bottom=False)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    symbols = "PNBRQKpnbrqk"
    for c in range(64):
        square = cell_to_square(c, False)
        piece = board.piece_at(square)
        content = symbols.index(piece.symbol()) + 1 if piece else 0
        dark = (chess.square_file(square) + chess.square_rank(square)) % 2 == 0
        row, col = divmod(c, 8)
        assert np.array_equal(image[row * 8:(row + 1) * 8, col * 8:(col + 1) * 8], r.tiles[int(dark), content]), c


def test_highlights_change_only_their_cells() -> None:
    r = BoardRenderer(8)
    board = chess.Board()
    plain = r.render(board, True)
    lit = r.render(board, True, last_move=chess.Move.from_uci("g1f3"), selected=chess.E2)
    changed = {(y // 8) * 8 + x // 8 for y, x in zip(*np.nonzero((plain != lit).any(axis=2)), strict=True)}
    assert changed == {cell("g1"), cell("f3"), cell("e2")}


# -- move input -----------------------------------------------------------------------------------------


def test_click_select_then_target() -> None:
    board, mi = chess.Board(), MoveInput("click")
    mask = mi.mask(board, True)
    assert mask.sum() == 10  # 8 pawns and 2 knights can move
    assert mi.apply(board, cell("e2"), True) is None and mi.selected == chess.E2
    targets = np.flatnonzero(mi.mask(board, True))
    assert {cell("e3"), cell("e4")} <= set(targets) and len(targets) == 2 + 9  # targets + re-selectable pieces
    assert mi.apply(board, cell("g1"), True) is None and mi.selected == chess.G1  # re-select
    assert mi.apply(board, cell("f3"), True) == chess.Move.from_uci("g1f3")
    assert mi.phase == "select" and mi.selected is None


def test_black_at_bottom_clicks_map_to_black_squares() -> None:
    board = chess.Board("rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1")
    mi = MoveInput("click")
    assert mi.apply(board, cell("e7", white=False), False) is None
    assert mi.apply(board, cell("e5", white=False), False) == chess.Move.from_uci("e7e5")
    assert cell("e7", white=False) == 6 * 8 + 3  # second row from the bottom, fourth cell from the left


def test_fromto_mask_is_exactly_the_legal_moves() -> None:
    board, mi = chess.Board(), MoveInput("fromto")
    mask = mi.mask(board, True)
    expected = {cell(m.uci()[:2]) * 64 + cell(m.uci()[2:4]) for m in board.legal_moves}
    assert set(np.flatnonzero(mask)) == expected and len(expected) == 20
    assert mi.apply(board, cell("b1") * 64 + cell("c3"), True) == chess.Move.from_uci("b1c3")


PROMO = "8/4P1k1/8/8/8/8/8/4K3 w - - 0 1"


def test_promotion_is_to_a_queen_by_default() -> None:
    board, mi = chess.Board(PROMO), MoveInput("click")
    mi.apply(board, cell("e7"), True)
    assert mi.apply(board, cell("e8"), True) == chess.Move.from_uci("e7e8q")


@pytest.mark.parametrize(("index", "uci"), [(0, "e7e8q"), (1, "e7e8n"), (2, "e7e8r"), (3, "e7e8b")])
def test_underpromotion_picker(index, uci) -> None:
    board, mi = chess.Board(PROMO), MoveInput("click", underpromotion=True)
    mi.apply(board, cell("e7"), True)
    assert mi.apply(board, cell("e8"), True) is None and mi.phase == "promote"
    picker_cells = [cell("e8"), cell("e7"), cell("e6"), cell("e5")]
    assert list(np.flatnonzero(mi.mask(board, True))) == sorted(picker_cells)
    assert mi.apply(board, picker_cells[index], True) == chess.Move.from_uci(uci)


# -- the game -------------------------------------------------------------------------------------------


def play_clicks(env: ChessEnv, *ucis: str):
    out = None
    for uci in ucis:
        for sq in (uci[:2], uci[2:4]):
            action = cell(sq, env.agent_white)
            assert env._mask[action], f"{sq} not allowed"
            out = env.step(action)
    return out


def test_agent_wins_by_checkmate() -> None:
    env = ChessEnv(opponent=Scripted("f7f6", "g7g5"), agent_color="white", opening_plies=0)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = play_clicks(env, "e2e4", "d2d4", "d1h5")
    assert (reward, terminated, truncated) == (1.0, True, False)
    ep = info["episode"]
    assert (ep["result"], ep["termination"], ep["plies"], ep["agent_color"]) == ("win", "checkmate", 5, "white")
    assert "3. Qh5#" in ep["pgn"] and '[Result "1-0"]' in ep["pgn"] and '[Black "scripted"]' in ep["pgn"]


def test_agent_loses_and_the_reward_is_minus_one() -> None:
    env = ChessEnv(opponent=Scripted("e7e5", "d8h4"), agent_color="white", opening_plies=0)
    env.reset(seed=0)
    _, reward, terminated, _, info = play_clicks(env, "f2f3", "g2g4")
    assert (reward, terminated, info["episode"]["result"]) == (-1.0, True, "loss")
    assert '[Result "0-1"]' in info["episode"]["pgn"]


def test_ply_limit_truncates_as_a_draw() -> None:
    env = ChessEnv(opponent=Scripted("e7e5", "d7d5"), agent_color="white", opening_plies=0, max_plies=4)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = play_clicks(env, "e2e4", "d2d4")
    assert (reward, terminated, truncated) == (0.0, False, True)
    assert (info["episode"]["result"], info["episode"]["termination"]) == ("draw", "max_plies")


def test_an_opening_the_opponents_first_move_would_end_is_drawn_again() -> None:
    """Seed 1043: the random opening leaves greedy a mate in one; the agent would face a board with no move."""
    env = ChessEnv(opponent="greedy", agent_color="white", opening_plies=40)
    for seed in (1043, 1456):
        obs, _ = env.reset(seed=seed)
        assert env.board.outcome(claim_draw=True) is None and obs["action_mask"].any()


def test_illegal_action_changes_nothing_and_is_counted() -> None:
    env = ChessEnv(opponent=RandomMover(), agent_color="white", opening_plies=0)
    obs, _ = env.reset(seed=0)
    illegal = int(np.flatnonzero(~obs["action_mask"])[0])
    after, reward, *_ = env.step(illegal)
    assert np.array_equal(after["image"], obs["image"]) and reward == 0.0
    assert env.episode_info()["illegal_actions"] == 1


def test_agent_as_black_sees_its_side_at_the_bottom_after_the_opponents_move() -> None:
    env = ChessEnv(opponent=Scripted("e2e4"), agent_color="black", opening_plies=0)
    obs, _ = env.reset(seed=0)
    assert env.board.move_stack == [chess.Move.from_uci("e2e4")]
    reference = BoardRenderer(8).render(env.board, False, last_move=chess.Move.from_uci("e2e4"))
    assert np.array_equal(obs["image"], reference)
    assert obs["action_mask"][cell("e7", white=False)] and not obs["action_mask"][cell("e2", white=False)]


def test_colours_alternate_and_seeds_repeat() -> None:
    env = ChessEnv(opponent=RandomMover(), opening_plies=6)
    colours = []
    for _ in range(4):
        env.reset()
        colours.append(env.agent_white)
    assert colours == [True, False, True, False]
    # The app seeds every episode (seed + episode count): the colours must still alternate.
    assert [env.reset(seed=s) and env.agent_white for s in (10, 11, 12, 13)] == [True, False, True, False]
    first, _ = env.reset(seed=5)
    fen = env.board.fen()
    again, _ = env.reset(seed=5)
    assert np.array_equal(first["image"], again["image"]) and env.board.fen() == fen


def test_self_play_policy_opponent_moves_through_clicks() -> None:
    seen = []

    def policy(obs):
        seen.append(obs["action_mask"].sum())
        return int(np.flatnonzero(obs["action_mask"])[0])

    env = ChessEnv(opponent=PolicyOpponent(policy, name="frozen-v1"), agent_color="white", opening_plies=0)
    env.reset(seed=0)
    play_clicks(env, "e2e4")
    assert len(env.board.move_stack) == 2 and env.board.turn == chess.WHITE
    assert len(seen) == 2 and seen[0] == 10  # black's ten movable pieces, seen from black's side
    assert env.episode_info()["opponent"] == "frozen-v1"


def test_greedy_mates_in_one_and_takes_the_queen() -> None:
    greedy, rng = Greedy(), random.Random(0)
    mate = chess.Board("6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1")
    assert greedy.choose(mate, rng) == chess.Move.from_uci("a1a8")
    hanging = chess.Board("4k3/8/8/3q4/8/8/3R4/4K3 w - - 0 1")
    assert greedy.choose(hanging, rng) == chess.Move.from_uci("d2d5")


@pytest.mark.parametrize(("spec", "message"), [
    pytest.param("stokfish", "unknown chess opponent 'stokfish'; valid: random, greedy, epsilon:<0-1>, stockfish, "
                 "stockfish:skill=<0-20>, stockfish:elo=<1350-2850>, stockfish:depth=<1-30>, "
                 "stockfish:nodes=<1-100000000>", id="unknown"),
    pytest.param("epsilon:2", "chess opponent 'epsilon:2': epsilon must be a number between 0 and 1 "
                 "(e.g. epsilon:0.25)", id="epsilon-range"),
    pytest.param("random:3", "chess opponent 'random:3': random takes no argument", id="extra-arg"),
    pytest.param("stockfish:skill=99", "chess opponent 'stockfish:skill=99': expected one of "
                 "stockfish:skill=<0-20>, stockfish:elo=<1350-2850>, stockfish:depth=<1-30>, "
                 "stockfish:nodes=<1-100000000>", id="skill-range"),
])
def test_bad_opponent_specs(spec, message) -> None:
    with pytest.raises(EnvError) as info:
        make_opponent(spec)
    assert str(info.value) == message


@pytest.mark.parametrize(("kwargs", "message"), [
    pytest.param({"image_size": 60}, "chess image_size = 60: must be a multiple of 8 and >= 16 (one cell per "
                 "square)", id="size"),
    pytest.param({"action_mode": "drag"}, "chess action mode 'drag': must be 'click' or 'fromto'", id="mode"),
])
def test_bad_env_arguments(kwargs, message) -> None:
    with pytest.raises(EnvError) as info:
        envs.make("chess", **kwargs)
    assert str(info.value) == message


# -- mate in one ----------------------------------------------------------------------------------------


def test_positions_are_split_and_each_has_a_mate() -> None:
    train, test = load_positions("train"), load_positions("test")
    assert len(train) > 9000 and len(test) > 1500 and not set(train) & set(test)
    assert all(split_of(f) == "test" for f in test[:100])
    rng = random.Random(0)
    for fen in rng.sample(train, 50) + rng.sample(test, 50):
        assert mating_moves(chess.Board(fen)), fen


@pytest.mark.parametrize("mode", ["click", "fromto"])
def test_mating_move_is_rewarded_and_others_are_not(mode) -> None:
    env = MateInOneEnv(action_mode=mode, split="test")
    for solve in (True, False):
        env.reset(seed=3)
        board = chess.Board(env.board.fen())
        mates = mating_moves(board)
        move = mates[0] if solve else next(m for m in board.legal_moves if m not in mates)
        white = board.turn
        f, t = square_to_cell(move.from_square, white), square_to_cell(move.to_square, white)
        actions = [f, t] if mode == "click" else [f * 64 + t]
        for action in actions:
            _, reward, terminated, truncated, info = env.step(action)
        assert (reward, terminated, truncated) == (1.0 if solve else 0.0, True, False)
        assert info["episode"]["result"] == ("win" if solve else "loss") and info["episode"]["fen"] == board.fen()
