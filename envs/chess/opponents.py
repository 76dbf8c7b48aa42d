"""Chess opponents: random mover, greedy 1-ply, epsilon-mixtures, depth-limited Stockfish, and a frozen
policy of the agent supplied by the caller (self-play). Built from short spec strings.

Stockfish strength follows Stockfish 15.1's mechanics: with a skill level below 20, the weakened move is
picked at depth 1 + int(level), so a depth limit of 2 + int(level) gives the strength of any longer
search at 1-3 ms per move. The ladder below was calibrated against SF 15.1 (engine-pool Elo scale,
anchor UCI_Elo 1500 = 1500; 1,500 games), see ../shared/notes/envs.md section 4.4.
"""

from __future__ import annotations

import logging
import math
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import chess

from envs.errors import EnvError

__all__ = [
    "LADDER",
    "EpsilonMix",
    "Greedy",
    "Opponent",
    "PolicyOpponent",
    "RandomMover",
    "Stockfish",
    "find_stockfish",
    "make_opponent",
]

log = logging.getLogger(__name__)

PIECE_VALUE = {chess.PAWN: 1, chess.KNIGHT: 3, chess.BISHOP: 3, chess.ROOK: 5, chess.QUEEN: 9, chess.KING: 0}

LADDER: tuple[tuple[str, float], ...] = (
    ("random", -153.0),
    ("epsilon:0.75", 178.0),
    ("epsilon:0.5", 496.0),
    ("greedy", 658.0),
    ("epsilon:0.25", 959.0),
    ("stockfish", 1496.0),
    ("stockfish:elo=1500", 1500.0),
    ("stockfish:elo=1700", 1754.0),
    ("stockfish:elo=2000", 2346.0),
)
"""(opponent spec, fitted Elo on the SF 15.1 engine scale) of the calibrated rungs, weakest first."""

SPEC_HELP = ("random, greedy, epsilon:<0-1>, stockfish, stockfish:skill=<0-20>, stockfish:elo=<1350-2850>, "
             "stockfish:depth=<1-30>, stockfish:nodes=<1-100000000>")


class Opponent(Protocol):
    """Anything that picks a move for the side to move."""

    name: str

    def choose(self, board: chess.Board, rng: random.Random) -> chess.Move: ...

    def close(self) -> None: ...


class RandomMover:
    """Plays a uniformly random legal move."""

    name = "random"

    def choose(self, board: chess.Board, rng: random.Random) -> chess.Move:
        return rng.choice(list(board.legal_moves))

    def close(self) -> None:
        pass


class Greedy:
    """Mates in one when it can; otherwise maximises captured value - 0.9 x the moved piece's value when
    the target square is attacked (ties broken at random)."""

    name = "greedy"

    def choose(self, board: chess.Board, rng: random.Random) -> chess.Move:
        best: list[chess.Move] = []
        best_score = -math.inf
        for move in board.legal_moves:
            board.push(move)
            mate = board.is_checkmate()
            board.pop()
            if mate:
                return move
            score = self._score(board, move)
            if score > best_score + 1e-9:
                best, best_score = [move], score
            elif abs(score - best_score) <= 1e-9:
                best.append(move)
        return rng.choice(best)

    @staticmethod
    def _score(board: chess.Board, move: chess.Move) -> float:
        captured = board.piece_at(move.to_square)
        gain = PIECE_VALUE[captured.piece_type] if captured else (1 if board.is_en_passant(move) else 0)
        if move.promotion:
            gain += PIECE_VALUE[move.promotion] - 1
        moved = board.piece_at(move.from_square)
        assert moved is not None
        if board.is_attacked_by(not board.turn, move.to_square):
            gain -= 0.9 * PIECE_VALUE[moved.piece_type]
        return gain


MOVE_TIME_S = 60.0
"""The longest Stockfish may think about one move (its limits are depth or nodes; this only bounds a hang)."""


def find_stockfish(path: str = "") -> str:
    """Return the Stockfish binary: `path`, else on PATH, else Debian's /usr/games/stockfish."""
    candidates = [path] if path else [shutil.which("stockfish") or "", "/usr/games/stockfish"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    where = repr(path) if path else "on PATH or in /usr/games"
    raise EnvError(f"stockfish not found ({where}); install it with `apt-get install stockfish` (or `make setup`) "
                   "or set env.chess.stockfish_path")


def skill_level_for_elo(elo: float) -> float:
    """Return Stockfish 15.1's internal skill level for a UCI_Elo (src/search.cpp, struct Skill)."""
    return min(20.0, max(0.0, ((elo - 1346.6) / 143.4) ** (1 / 0.806))) if elo > 1346.6 else 0.0


class Stockfish:
    """Depth- or node-limited Stockfish through python-chess; started on first use, restarted if it dies.

    A weakened Stockfish (Skill Level, UCI_Elo) picks its move with its own time-seeded generator, so its games do
    not repeat from the env's seed; full strength with a depth or node limit (one thread) does.
    """

    def __init__(self, *, skill: int | None = None, elo: int | None = None, depth: int | None = None,
                 nodes: int | None = None, path: str = "") -> None:
        self.path = find_stockfish(path)
        self.options: dict[str, Any] = {"Threads": 1, "Hash": 16}
        if elo is not None:
            self.options.update({"UCI_LimitStrength": True, "UCI_Elo": elo})
            level = skill_level_for_elo(elo)
            self.name = f"stockfish elo {elo}"
        elif skill is not None or (depth is None and nodes is None):
            skill = 0 if skill is None else skill
            self.options["Skill Level"] = skill
            level = float(skill)
            self.name = f"stockfish skill {skill}"
        else:
            level = 20.0
            self.name = f"stockfish depth {depth}" if depth is not None else f"stockfish nodes {nodes}"
        if depth is None and nodes is None:
            depth = 2 + int(level)  # the weakened move is chosen at depth 1 + int(level)
        self.limit = _engine_limit(depth, nodes)
        self._engine = None
        self._games = 0
        self._seen: tuple[str, list[chess.Move]] | None = None

    def _start(self):
        import chess.engine

        engine = chess.engine.SimpleEngine.popen_uci(self.path, timeout=30)
        engine.configure({k: v for k, v in self.options.items() if k in engine.options})
        log.debug("started %s (%s) with %s", self.path, self.name, self.options)
        return engine

    def choose(self, board: chess.Board, rng: random.Random) -> chess.Move:
        import chess.engine

        failure: BaseException | None = None
        for attempt in (1, 2):
            try:
                if self._engine is None:
                    self._engine = self._start()
                # A depth or node limit alone has no clock: a hung engine would hang the game for good. The
                # search stops at MOVE_TIME_S, and python-chess gives up 30 s after that.
                return self._engine.play(board, self.limit, game=self._game(board)).move
            except (chess.engine.EngineTerminatedError, chess.engine.EngineError, OSError, TimeoutError) as exc:
                failure = exc
                log.warning("stockfish failed (%s: %s); restarting it (attempt %d)", type(exc).__name__, exc, attempt)
                self.close()
        raise EnvError(f"stockfish at {self.path} keeps failing ({type(failure).__name__}: {failure}); check that "
                       f"the binary runs: `{self.path}`")

    def _game(self, board: chess.Board) -> int:
        """Return the number of the game `board` belongs to: a new one when its start or its moves do not continue
        the position last asked about. python-chess sends `ucinewgame` when it changes, so the engine's hash of
        one game does not play the next (each rated game on its own, as in a match between engines)."""
        root, moves = board.root().fen(), board.move_stack
        seen = self._seen
        if seen is None or seen[0] != root or len(moves) < len(seen[1]) or moves[:len(seen[1])] != seen[1]:
            self._games += 1
        self._seen = (root, list(moves))
        return self._games

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            try:
                engine.quit()
            except Exception as exc:  # already dead: nothing left to close
                log.debug("stockfish quit: %s", exc)
                try:
                    engine.close()
                except Exception as exc2:
                    log.debug("stockfish close: %s", exc2)


def _engine_limit(depth: int | None, nodes: int | None):
    import chess.engine

    return chess.engine.Limit(depth=depth, nodes=nodes, time=MOVE_TIME_S)


class EpsilonMix:
    """With probability epsilon a random legal move, otherwise the inner opponent's (default Stockfish skill 0)."""

    def __init__(self, epsilon: float, inner: Opponent) -> None:
        self.epsilon = epsilon
        self.inner = inner
        self.name = f"epsilon {epsilon:g}"

    def choose(self, board: chess.Board, rng: random.Random) -> chess.Move:
        if rng.random() < self.epsilon:
            return rng.choice(list(board.legal_moves))
        return self.inner.choose(board, rng)

    def close(self) -> None:
        self.inner.close()


@dataclass
class PolicyOpponent:
    """A frozen policy of the agent (self-play), driven through the env's own action interface.

    `policy(obs) -> action` receives observations rendered from the opponent's side (its pieces at the
    bottom) with their action mask, exactly as the agent would.
    """

    policy: Callable[[dict[str, Any]], int]
    name: str = "self-play"

    def choose(self, board: chess.Board, rng: random.Random) -> chess.Move:
        raise EnvError("a PolicyOpponent is played by the env itself (through clicks), not via choose()")

    def close(self) -> None:
        pass


_SPEC = re.compile(r"^(?P<kind>random|greedy|epsilon|stockfish)(?::(?P<arg>.+))?$")


def make_opponent(spec: str | Opponent | PolicyOpponent, *, stockfish_path: str = "") -> Opponent | PolicyOpponent:
    """Return the opponent for a spec string (see SPEC_HELP) or pass an opponent object through."""
    if not isinstance(spec, str):
        return spec
    match = _SPEC.match(spec.strip())
    if not match:
        raise EnvError(f"unknown chess opponent {spec!r}; valid: {SPEC_HELP}")
    kind, arg = match["kind"], match["arg"]
    if kind in ("random", "greedy"):
        if arg:
            raise EnvError(f"chess opponent {spec!r}: {kind} takes no argument")
        return RandomMover() if kind == "random" else Greedy()
    if kind == "epsilon":
        try:
            epsilon = float(arg or "")
        except ValueError:
            epsilon = -1.0
        if not 0.0 <= epsilon <= 1.0:
            raise EnvError(f"chess opponent {spec!r}: epsilon must be a number between 0 and 1 (e.g. epsilon:0.25)")
        return EpsilonMix(epsilon, Stockfish(skill=0, path=stockfish_path))
    kwargs: dict[str, int] = {}
    if arg:
        key, _, value = arg.partition("=")
        bounds = {"skill": (0, 20), "elo": (1350, 2850), "depth": (1, 30), "nodes": (1, 10**8)}
        if key not in bounds or not value.isdigit() or not bounds[key][0] <= int(value) <= bounds[key][1]:
            raise EnvError(f"chess opponent {spec!r}: expected one of stockfish:skill=<0-20>, "
                           "stockfish:elo=<1350-2850>, stockfish:depth=<1-30>, stockfish:nodes=<1-100000000>")
        kwargs[key] = int(value)
    return Stockfish(path=stockfish_path, **kwargs)
