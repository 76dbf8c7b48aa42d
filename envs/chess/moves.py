"""GUI-like move input: the actions an agent (or a person with a mouse) uses to make a chess move.

'click' mode is two masked 64-way decisions on screen cells, select a piece then a target, exactly what
a chess website needs; another own piece may be selected instead of a target. 'fromto' mode is one
4,096-way decision `from_cell * 64 + to_cell`. With `underpromotion`, a promotion opens a picker of four
pieces stacked in the target's file (as on lichess): queen, knight, rook, bishop; the agent picks one
by its cell. Without it, every promotion is to a queen.
"""

from __future__ import annotations

from dataclasses import dataclass

import chess
import numpy as np

from envs.chess.render import cell_to_square, square_to_cell

__all__ = ["PICKER_KINDS", "MoveInput"]

PICKER_KINDS = (chess.QUEEN, chess.KNIGHT, chess.ROOK, chess.BISHOP)


def _is_promotion(board: chess.Board, from_sq: int, to_sq: int) -> bool:
    piece = board.piece_at(from_sq)
    return piece is not None and piece.piece_type == chess.PAWN and chess.square_rank(to_sq) in (0, 7)


@dataclass
class MoveInput:
    """State machine from actions to moves for the side to move of a board shown with a given orientation."""

    mode: str = "click"
    underpromotion: bool = False
    phase: str = "select"
    """'select' or 'target' (click mode), 'move' (fromto mode), or 'promote' (picking the promotion piece)."""
    selected: int | None = None
    pending: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("click", "fromto"):
            raise ValueError(f"action mode {self.mode!r}: must be 'click' or 'fromto'")
        self.reset()

    @property
    def n_actions(self) -> int:
        return 64 if self.mode == "click" else 4096

    def reset(self) -> None:
        self.phase = "select" if self.mode == "click" else "move"
        self.selected = None
        self.pending = None

    def picker(self, white_at_bottom: bool) -> tuple[int, tuple[int, ...]] | None:
        """Return (first cell, piece types) of the open promotion picker, for rendering and masks."""
        if self.phase != "promote" or self.pending is None:
            return None
        return square_to_cell(self.pending[1], white_at_bottom), PICKER_KINDS

    def _picker_cells(self, white_at_bottom: bool) -> list[int]:
        first, kinds = self.picker(white_at_bottom)  # type: ignore[misc]
        step = 8 if first < 32 else -8
        return [first + i * step for i in range(len(kinds))]

    def mask(self, board: chess.Board, white_at_bottom: bool) -> np.ndarray:
        """Return bool[n_actions]: True where an action is legal now."""
        mask = np.zeros(self.n_actions, bool)
        cell = lambda sq: square_to_cell(sq, white_at_bottom)
        if self.phase == "promote":
            mask[self._picker_cells(white_at_bottom)] = True
        elif self.phase == "move":
            for move in board.legal_moves:
                mask[cell(move.from_square) * 64 + cell(move.to_square)] = True
        else:
            movable = {m.from_square for m in board.legal_moves}
            if self.phase == "select":
                mask[[cell(sq) for sq in movable]] = True
            else:
                targets = {m.to_square for m in board.legal_moves if m.from_square == self.selected}
                mask[[cell(sq) for sq in targets | (movable - {self.selected})]] = True
        return mask

    def apply(self, board: chess.Board, action: int, white_at_bottom: bool) -> chess.Move | None:
        """Advance by one legal action (see `mask`); return the move once it is complete, else None."""
        if self.phase == "promote":
            assert self.pending is not None
            kind = PICKER_KINDS[self._picker_cells(white_at_bottom).index(action)]
            move = chess.Move(*self.pending, promotion=kind)
        elif self.phase == "move":
            from_cell, to_cell = divmod(action, 64)
            move = self._complete(board, cell_to_square(from_cell, white_at_bottom),
                                  cell_to_square(to_cell, white_at_bottom))
            if move is None:
                return None
        else:
            square = cell_to_square(action, white_at_bottom)
            own = board.piece_at(square)
            if self.phase == "select" or (own is not None and own.color == board.turn):
                self.selected, self.phase = square, "target"
                return None
            assert self.selected is not None
            move = self._complete(board, self.selected, square)
            if move is None:
                return None
        self.reset()
        return move

    def _complete(self, board: chess.Board, from_sq: int, to_sq: int) -> chess.Move | None:
        if not _is_promotion(board, from_sq, to_sq):
            return chess.Move(from_sq, to_sq)
        if not self.underpromotion:
            return chess.Move(from_sq, to_sq, promotion=chess.QUEEN)
        self.pending, self.phase = (from_sq, to_sq), "promote"
        return None
