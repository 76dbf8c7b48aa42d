"""Chess against the real Stockfish (Debian's binary): strength settings, restarts, and full games."""

from __future__ import annotations

import logging
import random

import chess
import numpy as np
import psutil
import pytest

import envs
from envs.chess.opponents import Stockfish, make_opponent, skill_level_for_elo
from envs.errors import EnvError

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("spec", "name", "depth", "options"), [
    pytest.param("stockfish", "stockfish skill 0", 2, {"Skill Level": 0}, id="weakest"),
    pytest.param("stockfish:skill=5", "stockfish skill 5", 7, {"Skill Level": 5}, id="skill"),
    pytest.param("stockfish:elo=1500", "stockfish elo 1500", 3, {"UCI_LimitStrength": True, "UCI_Elo": 1500},
                 id="elo-1500"),
    pytest.param("stockfish:elo=2000", "stockfish elo 2000", 8, {"UCI_LimitStrength": True, "UCI_Elo": 2000},
                 id="elo-2000"),
    pytest.param("stockfish:depth=6", "stockfish depth 6", 6, {}, id="full-strength-depth"),
])
def test_strength_settings(spec, name, depth, options) -> None:
    sf = make_opponent(spec)
    try:
        assert sf.name == name and sf.limit.depth == depth
        assert {k: sf.options[k] for k in options} == options
        board = chess.Board()
        assert sf.choose(board, random.Random(0)) in board.legal_moves
    finally:
        sf.close()


def test_elo_to_level_follows_stockfish_15() -> None:
    # level = ((elo - 1346.6) / 143.4) ** (1 / 0.806), worked by hand (envs.md: 1500 -> 1.09, 2000 -> 6.58).
    assert skill_level_for_elo(1350) == pytest.approx(0.00963, abs=1e-4)
    assert skill_level_for_elo(1500) == pytest.approx(1.087, abs=1e-3)
    assert skill_level_for_elo(2000) == pytest.approx(6.563, abs=1e-3)
    assert skill_level_for_elo(1200) == 0.0 and skill_level_for_elo(4000) == 20.0


def test_dead_engine_is_restarted() -> None:
    sf = Stockfish(skill=0)
    board = chess.Board()
    rng = random.Random(0)
    try:
        board.push(sf.choose(board, rng))
        engine_pid = sf._engine.transport.get_pid()
        psutil.Process(engine_pid).kill()
        psutil.Process(engine_pid).wait(timeout=10)
        move = sf.choose(board, rng)
        assert move in board.legal_moves
        assert sf._engine.transport.get_pid() != engine_pid
    finally:
        sf.close()


def test_each_game_starts_with_ucinewgame(caplog) -> None:
    """The engine's hash of one game must not play the next: python-chess sends `ucinewgame` when the game changes."""
    caplog.set_level(logging.DEBUG, logger="chess.engine")
    sf = Stockfish(skill=0)
    rng = random.Random(0)

    def sent() -> int:
        return sum("<< ucinewgame" in record.getMessage() for record in caplog.records)

    try:
        board = chess.Board()
        for _ in range(3):                              # one game: the engine answers the other side's moves
            board.push(sf.choose(board, rng))
            board.push(rng.choice(list(board.legal_moves)))
        assert sent() == 1
        sf.choose(chess.Board(), rng)                   # a new game from the start
        assert sent() == 2
        sf.choose(chess.Board("6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1"), rng)  # a new start position
        assert sent() == 3
        opening = chess.Board()
        opening.push_uci("e2e4")
        sf.choose(opening, rng)                         # a new game whose first move is played already
        assert sent() == 4
    finally:
        sf.close()


def test_missing_binary_is_a_clear_error() -> None:
    with pytest.raises(EnvError) as info:
        envs.make("chess", opponent="stockfish", stockfish_path="/nonexistent/stockfish")
    assert str(info.value) == ("stockfish not found ('/nonexistent/stockfish'); install it with `apt-get install "
                               "stockfish` (or `make setup`) or set env.chess.stockfish_path")


def test_a_binary_that_is_not_an_engine_is_a_clear_error(tmp_path) -> None:
    not_an_engine = tmp_path / "stockfish"
    not_an_engine.write_text("#!/bin/sh\nexit 0\n")
    not_an_engine.chmod(0o755)
    sf = Stockfish(skill=0, path=str(not_an_engine))
    with pytest.raises(EnvError, match=f"stockfish at {not_an_engine} keeps failing .*check that the binary runs"):
        sf.choose(chess.Board(), random.Random(0))
    sf.close()


def test_random_agent_loses_to_stockfish_and_the_engine_is_closed() -> None:
    env = envs.make_from_config(envs.EnvConfig(id="chess", chess=envs.config.ChessConfig(opponent="stockfish")))
    rng = np.random.default_rng(0)
    results = []
    obs, _ = env.reset(seed=0)
    while len(results) < 3:
        obs, _reward, terminated, truncated, info = env.step(rng.choice(np.flatnonzero(obs["action_mask"])))
        if terminated or truncated:
            results.append((info["episode"]["result"], info["episode"]["opponent"]))
            obs, _ = env.reset()
    assert results == [("loss", "stockfish skill 0")] * 3
    engine = env.unwrapped.opponent._engine
    pid = engine.transport.get_pid()
    env.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_epsilon_mix_uses_stockfish_for_the_rest() -> None:
    mix = make_opponent("epsilon:0.0")
    try:
        board = chess.Board("6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1")
        assert mix.choose(board, random.Random(0)) == chess.Move.from_uci("a1a8")  # Stockfish finds the mate
    finally:
        mix.close()
