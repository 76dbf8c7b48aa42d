"""Mate in one from pixels: the fast chess yardstick. One move per episode, from shipped positions."""

from __future__ import annotations

import random
from typing import Any

import chess
import gymnasium as gym
import numpy as np

from envs.chess.moves import MoveInput
from envs.chess.positions import load_positions, mating_moves
from envs.chess.render import BoardRenderer
from envs.common import image_space, mask_space
from envs.errors import EnvError

__all__ = ["MateInOneEnv"]


class MateInOneEnv(gym.Env):
    """Find the mating move: each episode is one position where the side to move mates in one.

    Observation: dict with `image` uint8[image_size, image_size, 3] (the board, the side to move at the
        bottom, the selection tinted) and `action_mask` bool[n].
    Actions: as ChessEnv: 'click' = Discrete(64) screen cells, select then target (two steps);
        'fromto' = Discrete(4096). Promotions are to a queen unless `underpromotion`.
    Reward: +1 if the move checkmates, else 0, given when the move is made.
    Episode end: terminated after the one move; truncated after 8 steps without a move (re-selecting).
    Episode info: result ('win' when mated, else 'loss'), fen, move (UCI), mating_moves (how many exist).
    Args:
        image_size: a multiple of 8. action_mode: 'click' or 'fromto'. underpromotion: promotion picker.
        split: 'train' (about 10,000 positions) or 'test' (about 2,000 held out, never seen in training).
        Positions come from random games (see envs.chess.positions); episode k after `reset(seed=s)`
        draws from a generator seeded with s, so the same seed gives the same position.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, image_size: int = 64, action_mode: str = "click", underpromotion: bool = False,
                 split: str = "train", render_size: int = 512, render_mode: str | None = "rgb_array") -> None:
        if split not in ("train", "test"):
            raise EnvError(f"mate-in-1 split = {split!r}: must be 'train' or 'test'")
        if image_size % 8 or render_size % 8:
            raise EnvError(f"mate-in-1 image_size = {image_size}: must be a multiple of 8")
        if action_mode not in ("click", "fromto"):
            raise EnvError(f"mate-in-1 action_mode = {action_mode!r}: must be 'click' or 'fromto'")
        self.positions = load_positions(split)
        self.split = split
        self._input = MoveInput(action_mode, underpromotion)
        self._obs_renderer = BoardRenderer(image_size // 8)
        self._view_renderer = BoardRenderer(render_size // 8)
        self.render_mode = render_mode
        n = self._input.n_actions
        self.action_space = gym.spaces.Discrete(n)
        self.observation_space = gym.spaces.Dict({"image": image_space(image_size), "action_mask": mask_space(n)})
        self._rng = random.Random(0)
        self.board = chess.Board()
        self._fen = ""
        self._steps = 0
        self._move: chess.Move | None = None
        self._done = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = random.Random(seed)
        self._fen = self._rng.choice(self.positions)
        self.board = chess.Board(self._fen)
        self._input.reset()
        self._steps, self._move, self._done = 0, None, False
        return self._observe(), {}

    def step(self, action):
        if self._done:
            raise EnvError("mate-in-1: step() after the episode ended; call reset()")
        self._steps += 1
        action = int(action)
        reward, terminated, truncated = 0.0, False, False
        mask = self._input.mask(self.board, self.board.turn)
        if 0 <= action < mask.size and mask[action]:
            move = self._input.apply(self.board, action, self.board.turn)
            if move is not None:
                self._move = move
                self.board.push(move)
                reward = 1.0 if self.board.is_checkmate() else 0.0
                terminated = True
        if not terminated and self._steps >= 8:
            truncated = True
        self._done = terminated or truncated
        info = {"episode": self.episode_info()} if self._done else {}
        return self._observe(), reward, terminated, truncated, info

    def _white_at_bottom(self) -> bool:
        # The solver's side stays at the bottom, also after its move is on the board.
        return self.board.turn if self._move is None else not self.board.turn

    def _observe(self) -> dict[str, np.ndarray]:
        white = self._white_at_bottom()
        mask = np.zeros(self._input.n_actions, bool) if self._done else self._input.mask(self.board, white)
        return {"image": self._draw(self._obs_renderer), "action_mask": mask}

    def _draw(self, renderer: BoardRenderer) -> np.ndarray:
        white = self._white_at_bottom()
        last = self.board.peek() if self.board.move_stack else None
        return renderer.render(self.board, white, last_move=last, selected=self._input.selected,
                               picker=self._input.picker(white))

    def render(self) -> np.ndarray:
        return self._draw(self._view_renderer)

    def episode_info(self) -> dict[str, Any]:
        solved = self._move is not None and self.board.is_checkmate()
        start = chess.Board(self._fen)
        return {"result": "win" if solved else "loss", "fen": self._fen,
                "move": self._move.uci() if self._move else None, "mating_moves": len(mating_moves(start))}
