"""Mate-in-one positions for the fast chess yardstick, and the script that generates the shipped set.

Positions come from uniformly random games: every position reached after ply 10 in which the side to
move has at least one mating move is kept (random games give about 100 unique ones per second). The
shipped file `data/mate_in_1.txt.gz` holds one FEN per line; a position's split (train / held-out test)
is fixed by a hash of its FEN, so it never changes when the file is regenerated or extended.

    python -m envs.chess.positions --count 12000 --seed 0
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import random
import time
from pathlib import Path

import chess

__all__ = ["DATA_PATH", "TEST_FRACTION", "generate", "load_positions", "mating_moves", "split_of"]

DATA_PATH = Path(__file__).resolve().parent / "data" / "mate_in_1.txt.gz"
TEST_FRACTION = 1 / 6
"""Share of positions held out for evaluation (about 2,000 of 12,000)."""


def mating_moves(board: chess.Board) -> list[chess.Move]:
    """Return every legal move of the side to move that checkmates."""
    found = []
    for move in board.legal_moves:
        board.push(move)
        if board.is_checkmate():
            found.append(move)
        board.pop()
    return found


def split_of(fen: str) -> str:
    """Return 'test' for the held-out share of positions, else 'train' (stable: a hash of the FEN)."""
    digest = int.from_bytes(hashlib.sha256(fen.encode()).digest()[:8], "big")
    return "test" if digest / 2**64 < TEST_FRACTION else "train"


def generate(count: int, seed: int = 0, min_ply: int = 10, max_ply: int = 250) -> list[str]:
    """Return `count` unique FENs with a mate in one for the side to move, from random games."""
    rng = random.Random(seed)
    fens: dict[str, None] = {}
    while len(fens) < count:
        board = chess.Board()
        while not board.is_game_over() and board.ply() < max_ply and len(fens) < count:
            if board.ply() >= min_ply and mating_moves(board):
                fens.setdefault(board.fen(), None)
            board.push(rng.choice(list(board.legal_moves)))
    return list(fens)


@functools.lru_cache(maxsize=4)
def load_positions(split: str, path: Path = DATA_PATH) -> tuple[str, ...]:
    """Return the FENs of one split ('train' or 'test') from the shipped file."""
    with gzip.open(path, "rt") as fh:
        fens = tuple(line.strip() for line in fh if line.strip())
    return tuple(f for f in fens if split_of(f) == split)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DATA_PATH)
    args = parser.parse_args()
    t0 = time.monotonic()
    fens = generate(args.count, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the file byte-identical when regenerated with the same seed.
    with args.out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as fh:
        fh.write(("\n".join(fens) + "\n").encode())
    test = sum(split_of(f) == "test" for f in fens)
    print(f"wrote {len(fens)} positions ({len(fens) - test} train, {test} test) to {args.out} "
          f"in {time.monotonic() - t0:.0f}s")


if __name__ == "__main__":
    main()
