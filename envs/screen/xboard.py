"""Chess against Stockfish in xboard, played only through the screen: the local stand-in for a chess website.

The env starts xboard on its display, finds the board by its flat square colours, clicks squares like a user
and reads the engine's replies back from the pixels (which squares hold a white piece, a black piece or
nothing). A python-chess mirror of the game supplies the action mask and the result; every reply is accepted
only when the screen matches exactly one legal reply, so the mirror and the screen cannot drift apart silently.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chess
import chess.pgn
import gymnasium as gym
import numpy as np

from envs.common import image_space, mask_space, resize
from envs.errors import EnvError
from envs.screen.capture import Region
from envs.screen.config import XboardConfig
from envs.screen.display import Screen
from envs.screen.env import make_config
from envs.screen.pacing import Pacer

__all__ = ["BLACK", "EMPTY", "WHITE", "XboardChessEnv", "cell_square", "find_board", "occupancy_of",
           "read_occupancy"]

log = logging.getLogger(__name__)

EMPTY, WHITE, BLACK = 0, 1, 2
"""Occupancy codes of a square."""
LIGHT_RGB, DARK_RGB = (200, 195, 101), (119, 162, 109)
"""xboard's flat square colours with -useBoardTexture false."""
MARKER_RGB = (255, 255, 0)
"""The dots xboard draws on a selected piece's targets (-showTargetSquares); read as background."""
SQUARE_TOLERANCE = 24
"""Per-channel difference at which a pixel still counts as square background."""
MIN_OCCUPIED = 0.08
"""Fraction of non-background pixels in a square's centre above which it holds a piece."""
MIN_BLACK = 0.5
"""Fraction of dark pixels (grey < 80) among a piece's pixels above which the piece is black."""
XBOARD_SCREEN = (1024, 768)
"""Size of the private Xvfb; xboard at -size Middling needs about 430x490."""
STARTUP_TIMEOUT_S = 30.0
"""How long xboard may take to show the initial position."""
POLL_S = 0.005
"""Pause between screen reads while waiting for the board to change."""
SELECT_SETTLE_S = 0.5
"""How long a selection click may take to show its target dots (two pieces with the same targets show none)."""
MOVE_SETTLE_S = 1.0
"""How long the agent's move may take to appear before the env checks whether xboard dropped it."""
OPPONENT_NAME = "xboard stockfish skill {skill}"
REFERENCE_SQUARES = {"R": chess.A1, "N": chess.B1, "B": chess.C1, "Q": chess.D1, "K": chess.E1, "P": chess.A2,
                     "r": chess.A8, "n": chess.B8, "b": chess.C8, "q": chess.D8, "k": chess.E8, "p": chess.A7}
"""Where each piece's silhouette is taken from in the initial position (queen side)."""
PGN_RESULTS = {"win": "1-0", "loss": "0-1", "draw": "1/2-1/2", None: "*"}
"""PGN result of the agent's (White's) result."""


def xboard_argv(cfg: XboardConfig, programs: dict[str, str]) -> list[str]:
    """Return xboard's command line: flat colours, no animation, coordinates, clocks, sounds or popups."""
    stockfish = Path(programs["stockfish"])
    flags = {"-fcp": stockfish.name, "-fd": str(stockfish.parent), "-firstOptions": f"Skill Level={cfg.skill_level}",
             "-depth": str(cfg.depth), "-size": "Middling", "-showCoords": "false", "-animateMoving": "false",
             "-animateDragging": "false", "-highlightLastMove": "false", "-showTargetSquares": "true",
             "-popupExitMessage": "false", "-useBoardTexture": "false", "-startupMessage": "",
             "-saveSettingsOnExit": "false", "-alwaysPromoteToQueen": "true", "-clockMode": "false",
             "-soundMove": ""}
    return [programs["xboard"], "-fUCI", *(part for pair in flags.items() for part in pair)]


def find_board(frame: np.ndarray) -> Region | None:
    """Return where the board is in a screen grab (by its square colours), or None if no board is visible."""
    background = _background(frame)
    rows = np.flatnonzero(background.sum(axis=1) >= 64)
    cols = np.flatnonzero(background.sum(axis=0) >= 64)
    if not len(rows) or not len(cols):
        return None
    region = Region(int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
    if region.width < 8 * 16 or abs(region.width - region.height) > 2:
        return None
    return region


def _background(image: np.ndarray) -> np.ndarray:
    """Return bool[H, W]: True where a pixel has a square colour (or is part of a target dot)."""
    pixels = image.astype(np.int16)
    return ((np.abs(pixels - LIGHT_RGB).max(axis=2) <= SQUARE_TOLERANCE)
            | (np.abs(pixels - DARK_RGB).max(axis=2) <= SQUARE_TOLERANCE)
            | (np.abs(pixels - MARKER_RGB).max(axis=2) <= SQUARE_TOLERANCE))


def cell_square(cell: int) -> int:
    """Return the python-chess square of screen cell `cell` (row-major, 0 = top-left = a8; White at the bottom)."""
    row, col = divmod(cell, 8)
    return chess.square(col, 7 - row)


def gui_outcome(board: chess.Board) -> chess.Outcome | None:
    """Return how the game on the screen has ended, or None while xboard plays on.

    xboard's engine adapter (polyglot) ends a game after either side's move on checkmate, stalemate, too little
    material (KK, KBK, KNK, or one bishop each on squares of one colour), 100 plies without a capture or pawn move,
    or a position on the board for the third time (its game_comp_status, in this order). python-chess's
    `outcome(claim_draw=True)` also ends a game when the side to move *could* claim a draw with its next move, and
    counts more endings as too little material; xboard plays such games on, so the env would wait for a screen
    that never comes (`reply_timeout_s`) and record a result the GUI never gave.
    """
    if not any(board.generate_legal_moves()):
        if board.is_check():
            return chess.Outcome(chess.Termination.CHECKMATE, not board.turn)
        return chess.Outcome(chess.Termination.STALEMATE, None)
    heavy = board.pawns | board.queens | board.rooks
    minors = board.bishops | board.knights
    if not heavy:
        one_minor = chess.popcount(minors) <= 1
        bishops = [board.pieces_mask(chess.BISHOP, color) for color in chess.COLORS]
        same_colour_bishops = (not board.knights and all(chess.popcount(b) == 1 for b in bishops)
                               and bool(bishops[0] & chess.BB_DARK_SQUARES) == bool(bishops[1] & chess.BB_DARK_SQUARES))
        if one_minor or same_colour_bishops:
            return chess.Outcome(chess.Termination.INSUFFICIENT_MATERIAL, None)
    if board.halfmove_clock >= 100:
        return chess.Outcome(chess.Termination.FIFTY_MOVES, None)
    if board.is_repetition(3):
        return chess.Outcome(chess.Termination.THREEFOLD_REPETITION, None)
    return None


def square_cell(square: int) -> int:
    """Return the screen cell of a python-chess square (inverse of `cell_square`)."""
    return (7 - chess.square_rank(square)) * 8 + chess.square_file(square)


def _square_patch(board_image: np.ndarray, square: int, margin: float) -> np.ndarray:
    """Return the pixels of `square` in a board image, without `margin` (a fraction of the side) on each side."""
    size = board_image.shape[0] / 8
    row, col = 7 - chess.square_rank(square), chess.square_file(square)
    inset = int(size * margin)
    top, left = round(row * size), round(col * size)
    return board_image[top + inset:round((row + 1) * size) - inset, left + inset:round((col + 1) * size) - inset]


def _classify(patch: np.ndarray) -> int:
    piece = ~_background(patch)
    if piece.mean() <= MIN_OCCUPIED:
        return EMPTY
    grey = patch.mean(axis=2)[piece]
    return BLACK if (grey < 80).mean() > MIN_BLACK else WHITE


def read_occupancy(board_image: np.ndarray) -> np.ndarray:
    """Return int8[64] indexed by python-chess square (a1 = 0): EMPTY, WHITE or BLACK as the pixels show."""
    return np.array([_classify(_square_patch(board_image, sq, 0.2)) for sq in chess.SQUARES], np.int8)


def occupancy_of(board: chess.Board) -> np.ndarray:
    """Return int8[64] indexed by square: what `read_occupancy` should see for `board`."""
    occupancy = np.zeros(64, np.int8)
    for square, piece in board.piece_map().items():
        occupancy[square] = WHITE if piece.color == chess.WHITE else BLACK
    return occupancy


def _shape(patch: np.ndarray) -> np.ndarray:
    return ~_background(patch)


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Return the intersection over union of two piece silhouettes (cropped to a common size)."""
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    a, b = a[:h, :w], b[:h, :w]
    return float((a & b).sum() / max((a | b).sum(), 1))


class XboardChessEnv(gym.Env):
    """Chess in xboard against Stockfish, seen and played only through the screen (the agent is White).

    Observation: dict with `image` uint8[image_size, image_size, 3] in [0, 255] (xboard's board, grabbed and
        area-resized; White at the bottom) and `action_mask` bool[64] (True where a click is legal now).
    Actions: Discrete(64) screen cells, row-major from the top-left (cell 0 = a8), as ChessEnv's 'click' mode:
        click a piece (a square with a legal move), then its target; in the target step another own piece
        may be clicked instead to select it. Promotions are to a queen (xboard's -alwaysPromoteToQueen).
        An action outside the mask sends no click and changes nothing.
    Reward: +1 win, -1 loss, 0 draw, at the game's end; 0 on every other step.
    Episode end: terminated by checkmate, stalemate, insufficient material, or a claimable threefold
        repetition / 50-move rule (claimed at once, as ChessEnv does); truncated (adjudicated draw) by the
        engine reply that reaches `max_plies` plies. After each agent move the env waits for the move and
        the engine's reply to appear on the screen, up to `reply_timeout_s` (a move xboard dropped, which
        happens right after start-up, is clicked again). Reset starts a new game with xboard's Ctrl+N.
    Episode info: result ('win', 'loss', 'draw' for the agent, None while playing), opponent, agent_color,
        plies, termination, illegal_actions, pgn.
    Args: image_size, then exactly the fields of `XboardConfig` (display, decision_hz, skill_level, depth,
        max_plies, reply_timeout_s, games_dir). A '' display starts a private Xvfb.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, image_size: int = 64, **options: Any) -> None:
        cfg: XboardConfig = make_config(XboardConfig, options)
        self.cfg, self.image_size, self.render_mode = cfg, image_size, "rgb_array"
        programs, child_path = _find_programs(cfg.games_dir)
        self.opponent = OPPONENT_NAME.format(skill=cfg.skill_level)
        self._home = tempfile.TemporaryDirectory(prefix="dreamstream-xboard-")
        self.screen: Screen | None = None
        try:
            self.screen = Screen(cfg.display, XBOARD_SCREEN)
            self.xboard = self.screen.start(xboard_argv(cfg, programs), name="xboard",
                                            env={"PATH": child_path, "HOME": self._home.name}, cwd=self._home.name,
                                            log_path=Path(self._home.name) / "xboard.log")
            self.board_region = self._wait_for_board()
        except EnvError:
            self.close()
            raise
        self._shapes = self._piece_shapes(self.screen.grab(self.board_region))
        self.pacer = Pacer(cfg.decision_hz)
        self.action_space = gym.spaces.Discrete(64)
        self.observation_space = gym.spaces.Dict({"image": image_space(image_size), "action_mask": mask_space(64)})
        self.board = chess.Board()
        self._selected: int | None = None
        self._unselected = self.screen.grab(self.board_region)
        """The board before the current move's first selection click (to notice a dropped move)."""
        self._frame: np.ndarray | None = None
        self._result: str | None = None
        self._termination: str | None = None
        self._illegal = 0

    # -- reading the screen -------------------------------------------------------------------------------

    def _check_alive(self) -> None:
        code = self.xboard.exit_code()
        if code is not None:
            raise EnvError(f"xboard on display {self.screen.name} exited with code {code} (its output: "
                           f"{self.xboard.log_tail() or 'none'}); was its window closed or its display stopped?")

    def _wait_for_board(self) -> Region:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        start = occupancy_of(chess.Board())
        while time.monotonic() < deadline:
            self._check_alive()
            region = find_board(self.screen.grab(self.screen.region))
            if region is not None and np.array_equal(read_occupancy(self.screen.grab(region)), start):
                self._check_orientation(region)
                log.info("xboard board found at %s on %s", tuple(region), self.screen.name)
                return region
            time.sleep(0.05)
        raise EnvError(f"xboard showed no board in the initial position on {self.screen.name} within "
                       f"{STARTUP_TIMEOUT_S:.0f} s (its output: {self.xboard.log_tail() or 'none'}); is another "
                       "window covering it, or has its settings file changed the board colours?")

    def _check_orientation(self, region: Region) -> None:
        corner = self.screen.grab(Region(region.x, region.y + region.height - 4, 4, 4)).astype(np.int16)
        if np.abs(corner - DARK_RGB).max() > SQUARE_TOLERANCE:
            raise EnvError("xboard shows the board flipped (a1 is not at the bottom left); the agent plays White "
                           "from the bottom, so unflip it (View > Flip View) or remove -flipView")

    def _piece_shapes(self, board_image: np.ndarray) -> dict[chess.Piece, np.ndarray]:
        """Return the silhouette of each piece as drawn in the initial position (to tell promotions apart)."""
        return {chess.Piece.from_symbol(symbol): _shape(_square_patch(board_image, square, 0.05))
                for symbol, square in REFERENCE_SQUARES.items()}

    def read_board_occupancy(self) -> np.ndarray:
        """Return int8[64] by python-chess square: EMPTY, WHITE or BLACK as the screen shows now."""
        self._check_alive()
        return read_occupancy(self.screen.grab(self.board_region))

    def _await(self, candidates: dict[chess.Move | None, np.ndarray], what: str) -> list[chess.Move | None]:
        """Return the candidates whose occupancy the screen shows twice in a row (a finished redraw)."""
        deadline = time.monotonic() + self.cfg.reply_timeout_s
        previous = None
        while True:
            seen = self.read_board_occupancy()
            if previous is not None and np.array_equal(seen, previous):
                matches = [move for move, expected in candidates.items() if np.array_equal(seen, expected)]
                if matches:
                    return matches
            previous = seen
            if time.monotonic() > deadline:
                raise EnvError(f"xboard did not show {what} within {self.cfg.reply_timeout_s:.0f} s (position "
                               f"{self.board.fen()}); see {self.xboard.log_path} or raise xboard.reply_timeout_s")
            time.sleep(POLL_S)

    def _read_reply(self) -> chess.Move:
        """Wait for the engine's reply to appear and return it."""
        candidates: dict[chess.Move | None, np.ndarray] = {}
        for move in self.board.legal_moves:
            self.board.push(move)
            candidates[move] = occupancy_of(self.board)
            self.board.pop()
        matches = self._await(candidates, f"the engine's reply to {self.board.peek().uci()}")
        if len(matches) == 1:
            return matches[0]
        return self._pick_promotion(matches)

    def _pick_promotion(self, moves: list[chess.Move]) -> chess.Move:
        """Return the promotion among `moves` (same squares, different pieces) whose piece the screen shows."""
        if len({(m.from_square, m.to_square) for m in moves}) != 1:
            raise EnvError(f"the screen matches several engine replies ({', '.join(m.uci() for m in moves)}); "
                           "this should not happen with xboard's flat board, please report it")
        kinds = [m.promotion for m in moves if m.promotion is not None]
        shown = self.read_piece(moves[0].to_square, chess.BLACK, kinds)
        return next(m for m in moves if m.promotion == shown)

    def read_piece(self, square: int, color: chess.Color, kinds: list[chess.PieceType]) -> chess.PieceType:
        """Return which of the piece types `kinds` of `color` the screen shows on `square` (by silhouette)."""
        patch = _shape(_square_patch(self.screen.grab(self.board_region), square, 0.05))
        return max(kinds, key=lambda kind: _similarity(patch, self._shapes[chess.Piece(kind, color)]))

    # -- acting -------------------------------------------------------------------------------------------

    def _click(self, square: int) -> None:
        region, size = self.board_region, self.board_region.width / 8
        row, col = 7 - chess.square_rank(square), chess.square_file(square)
        self.screen.click(region.x + round((col + 0.5) * size), region.y + round((row + 0.5) * size))

    def _select(self, square: int) -> None:
        """Click an own piece and wait until its target dots are drawn, so the next grab shows them."""
        before = self.screen.grab(self.board_region)
        if self._selected is None:
            self._unselected = before
        self._click(square)
        self._selected = square
        if not self._settles(lambda seen: not np.array_equal(seen, before), SELECT_SETTLE_S):
            log.debug("selecting %s changed nothing on the screen", chess.square_name(square))

    def _settles(self, condition: Callable[[np.ndarray], bool], timeout_s: float) -> bool:
        """Return whether the board image comes to rest (two equal grabs) in a state where `condition` holds."""
        deadline = time.monotonic() + timeout_s
        previous = self.screen.grab(self.board_region)
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            seen = self.screen.grab(self.board_region)
            if np.array_equal(seen, previous) and condition(seen):
                return True
            previous = seen
        return False

    def action_mask(self) -> np.ndarray:
        """Return bool[64] by screen cell: the squares a click may go to now."""
        mask = np.zeros(64, bool)
        if self._result is not None:
            return mask
        movable = {m.from_square for m in self.board.legal_moves} - {self._selected}
        targets = {m.to_square for m in self.board.legal_moves if m.from_square == self._selected}
        for square in movable | targets:
            mask[square_cell(square)] = True
        return mask

    def _move_to(self, target: int) -> chess.Move:
        assert self._selected is not None
        move = chess.Move(self._selected, target)
        if move not in self.board.legal_moves:
            move = chess.Move(self._selected, target, promotion=chess.QUEEN)
        return move

    def _play(self, target: int) -> None:
        """Make the agent's move to `target`, then read the engine's reply from the screen."""
        move = self._move_to(target)
        shown = occupancy_of(self.board)
        self._click(target)
        self._selected = None
        self.board.push(move)
        self._confirm_move(move, shown)
        if self._finish_if_over():
            self._await({None: occupancy_of(self.board)}, f"the agent's move {move.uci()}")
            return
        self.board.push(self._read_reply())
        if not self._finish_if_over() and self.board.ply() >= self.cfg.max_plies:
            # checked after the reply, so that no engine move is still on its way when the next reset starts a game
            self._result, self._termination = "draw", "max_plies"

    def _confirm_move(self, move: chess.Move, before: np.ndarray) -> None:
        """Wait until the agent's move changes the position on screen (occupancy `before`). Shortly after start-up
        xboard sometimes drops a move and its selection; then the board looks as before the selection, and the
        move is clicked again."""
        deadline = time.monotonic() + self.cfg.reply_timeout_s
        while not self._settles(lambda seen: not np.array_equal(read_occupancy(seen), before), MOVE_SETTLE_S):
            if time.monotonic() > deadline:
                raise EnvError(f"xboard did not show the agent's move {move.uci()} within "
                               f"{self.cfg.reply_timeout_s:.0f} s; see {self.xboard.log_path}")
            self._check_alive()
            if np.array_equal(self.screen.grab(self.board_region), self._unselected):
                log.warning("xboard dropped the move %s; clicking it again", move.uci())
                self._click(move.from_square)
                self._settles(lambda seen: not np.array_equal(seen, self._unselected), SELECT_SETTLE_S)
                self._click(move.to_square)

    def _finish_if_over(self) -> bool:
        """Record the result if the game has ended as xboard ends it; return whether it has."""
        outcome = gui_outcome(self.board)
        if outcome is not None:
            self._result = {chess.WHITE: "win", chess.BLACK: "loss", None: "draw"}[outcome.winner]
            self._termination = outcome.termination.name.lower()
        return outcome is not None

    # -- Gymnasium API ------------------------------------------------------------------------------------

    def _obs(self) -> dict[str, np.ndarray]:
        self._check_alive()
        self._frame = self.screen.grab(self.board_region)
        return {"image": resize(self._frame, self.image_size).copy(), "action_mask": self.action_mask()}

    def _new_game(self) -> None:
        region = self.board_region
        # with no window manager, keys go to the window under the pointer
        self.screen.move(region.x + region.width // 2, region.y + region.height // 2)
        self.screen.press(("ctrl", "n"))
        self.board = chess.Board()
        self._await({None: occupancy_of(self.board)}, "the new game after Ctrl+N")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self.board.move_stack or self._selected is not None:
            self._new_game()
        self._selected, self._result, self._termination, self._illegal = None, None, None, 0
        self.pacer.restart()
        return self._obs(), {}

    def step(self, action):
        self._check_alive()
        cell = int(action)
        square = cell_square(cell)
        if not self.action_mask()[cell]:
            self._illegal += 1
        elif self._selected is None or self.board.color_at(square) == chess.WHITE:
            self._select(square)
        else:
            self._play(square)
        self.pacer.wait()
        obs = self._obs()
        done = self._result is not None
        truncated = self._termination == "max_plies"
        reward = {"win": 1.0, "loss": -1.0}.get(self._result, 0.0) if done else 0.0
        info = {"episode": self.episode_info()} if done else {}
        return obs, reward, done and not truncated, truncated, info

    def episode_info(self) -> dict[str, Any]:
        """Return what the match history keeps of the game: result, opponent, plies, termination and PGN."""
        game = chess.pgn.Game.from_board(self.board)
        game.headers.update({"Event": "DreamStream xboard", "White": "agent", "Black": self.opponent,
                             "Result": PGN_RESULTS[self._result]})
        return {"result": self._result, "opponent": self.opponent, "agent_color": "white",
                "plies": self.board.ply(), "termination": self._termination, "illegal_actions": self._illegal,
                "pgn": str(game)}

    def render(self) -> np.ndarray | None:
        """Return the board at its native resolution, as last grabbed."""
        return None if self._frame is None else self._frame.copy()

    def close(self) -> None:
        if self.screen is not None:
            self.screen.close()
        self._home.cleanup()


def _find_programs(games_dir: str) -> tuple[dict[str, str], str]:
    """Return the paths of xboard, stockfish and polyglot (searched on PATH, then in `games_dir`) and the PATH
    xboard's children need (polyglot is found through it)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), games_dir])
    found = {name: shutil.which(name, path=path) for name in ("xboard", "stockfish", "polyglot")}
    missing = [name for name, where in found.items() if where is None]
    if missing:
        raise EnvError(f"{' and '.join(missing)} not found on PATH or in xboard.games_dir = {games_dir!r}; install "
                       "them (apt install xboard polyglot stockfish) or set xboard.games_dir to their directory")
    return {k: str(v) for k, v in found.items()}, path
