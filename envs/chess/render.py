"""Fast chess board pixels: pre-rendered tiles gathered with numpy (about 20,000 boards/s at 64x64).

The 13 square contents (empty + 12 pieces) are rasterised once from python-chess's SVG art on every
square background (light/dark x normal, last move, selected, promotion picker), then shrunk to the
wanted square size. A frame is one fancy-indexing gather. SVG rendering per frame would be ~1000x slower.

Screen cells are numbered row-major from the top-left as the viewer sees the board (`cell = row * 8 + col`);
the side at the bottom decides which square a cell shows.
"""

from __future__ import annotations

import functools
import io

import chess
import chess.svg
import cv2
import numpy as np

__all__ = ["BACKGROUNDS", "BoardRenderer", "cell_to_square", "square_to_cell"]

MASTER_PX = 64
"""Tiles are rasterised at this size, then area-resized to the wanted square size."""
COLOURS = {  # (light, dark) squares, RGB
    "normal": ((240, 217, 181), (181, 136, 99)),
    "last_move": ((205, 210, 106), (170, 162, 58)),
    "selected": ((130, 151, 105), (100, 111, 64)),
    "picker": ((250, 250, 250), (225, 225, 225)),
}
BACKGROUNDS = tuple(COLOURS)
PIECE_SYMBOLS = "PNBRQKpnbrqk"  # content index 1..12; 0 is an empty square


def cell_to_square(cell: int, white_at_bottom: bool) -> int:
    """Return the chess square shown at screen cell `cell` (0 = top-left)."""
    row, col = divmod(cell, 8)
    return chess.square(col, 7 - row) if white_at_bottom else chess.square(7 - col, row)


def square_to_cell(square: int, white_at_bottom: bool) -> int:
    """Return the screen cell that shows `square`."""
    file, rank = chess.square_file(square), chess.square_rank(square)
    return (7 - rank) * 8 + file if white_at_bottom else rank * 8 + (7 - file)


def _piece_rgba(symbol: str) -> np.ndarray:
    import cairosvg  # heavy: only when tiles are first built

    svg = chess.svg.piece(chess.Piece.from_symbol(symbol), size=MASTER_PX)
    png = cairosvg.svg2png(bytestring=svg.encode(), output_width=MASTER_PX, output_height=MASTER_PX)
    bgra = cv2.imdecode(np.frombuffer(io.BytesIO(png).getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)


@functools.lru_cache(maxsize=8)
def _tiles(square_px: int) -> np.ndarray:
    """Return uint8[len(BACKGROUNDS) * 2, 13, square_px, square_px, 3]: [background*2 + is_dark, content]."""
    pieces = [_piece_rgba(s) for s in PIECE_SYMBOLS]
    tiles = np.empty((len(BACKGROUNDS) * 2, 13, square_px, square_px, 3), np.uint8)
    for b, name in enumerate(BACKGROUNDS):
        for dark, colour in enumerate(COLOURS[name]):
            base = np.empty((MASTER_PX, MASTER_PX, 3), np.float32)
            base[:] = colour
            for content in range(13):
                tile = base.copy()
                if content:
                    rgba = pieces[content - 1].astype(np.float32)
                    alpha = rgba[..., 3:] / 255.0
                    tile = tile * (1 - alpha) + rgba[..., :3] * alpha
                small = cv2.resize(tile, (square_px, square_px), interpolation=cv2.INTER_AREA)
                tiles[b * 2 + dark, content] = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    tiles.setflags(write=False)
    return tiles


# Cell -> square lookups for both orientations, and each cell's square colour (a1 is dark).
_CELL_SQUARES = {w: np.array([cell_to_square(c, w) for c in range(64)]) for w in (True, False)}
_IS_DARK = np.array([(chess.square_file(s) + chess.square_rank(s)) % 2 == 0 for s in range(64)])


class BoardRenderer:
    """Renders boards as uint8[8 * square_px, 8 * square_px, 3] with highlights, from cached tiles."""

    def __init__(self, square_px: int) -> None:
        if square_px < 2:
            raise ValueError(f"square_px = {square_px}: must be >= 2")
        self.square_px = square_px
        self.tiles = _tiles(square_px)

    def render(self, board: chess.Board, white_at_bottom: bool = True, *, last_move: chess.Move | None = None,
               selected: int | None = None, picker: tuple[int, tuple[int, ...]] | None = None) -> np.ndarray:
        """Return the board image.

        Args:
            last_move: its from and to squares are tinted.
            selected: a square tinted as the current selection (a GUI's first click).
            picker: (first cell, piece types) of a promotion picker drawn over the board: the pieces of
                the side to move stacked from that cell toward the board's centre.
        """
        squares = _CELL_SQUARES[white_at_bottom]
        content = np.zeros(64, np.intp)
        for square, piece in board.piece_map().items():
            content[square] = PIECE_SYMBOLS.index(piece.symbol()) + 1
        background = np.zeros(64, np.intp)
        if last_move is not None:
            background[[last_move.from_square, last_move.to_square]] = BACKGROUNDS.index("last_move")
        if selected is not None:
            background[selected] = BACKGROUNDS.index("selected")
        cell_content = content[squares]
        cell_bg = background[squares] * 2 + _IS_DARK[squares]
        if picker is not None:
            first, kinds = picker
            step = 8 if first < 32 else -8
            for i, kind in enumerate(kinds):
                cell = first + i * step
                symbol = chess.Piece(kind, board.turn).symbol()
                cell_content[cell] = PIECE_SYMBOLS.index(symbol) + 1
                cell_bg[cell] = BACKGROUNDS.index("picker") * 2 + _IS_DARK[squares[cell]]
        s = self.square_px
        cells = self.tiles[cell_bg, cell_content]  # (64, s, s, 3)
        return cells.reshape(8, 8, s, s, 3).transpose(0, 2, 1, 3, 4).reshape(8 * s, 8 * s, 3)
