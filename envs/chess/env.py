"""Chess from pixels against configurable opponents (python-chess rules, tile-rendered board)."""

from __future__ import annotations

import logging
import random
from typing import Any

import chess
import chess.pgn
import gymnasium as gym
import numpy as np

from envs.chess.moves import MoveInput
from envs.chess.opponents import Opponent, PolicyOpponent, make_opponent
from envs.chess.render import BoardRenderer
from envs.common import image_space, mask_space
from envs.errors import EnvError

__all__ = ["ChessEnv"]

log = logging.getLogger(__name__)

MAX_POLICY_TRIES = 16
"""A self-play opponent that keeps choosing illegal actions gets a random legal move after this many."""


class ChessEnv(gym.Env):
    """A chess game seen as pixels, played with GUI-like actions, against an opponent.

    Observation: dict with `image` uint8[image_size, image_size, 3] (the board, the agent's side at the
        bottom, the last move tinted, the selected square tinted, a promotion picker when open) and
        `action_mask` bool[n] (True where an action is legal now).
    Actions: mode 'click': Discrete(64) screen cells (0 = top-left), a piece then a target, two steps per
        move (another own piece may be re-selected); mode 'fromto': Discrete(4096) = from_cell * 64 +
        to_cell. Promotions are to a queen unless `underpromotion`, which adds a picker step.
    Reward: +1 win, -1 loss, 0 draw, at the game's end; 0 on every other step.
    Episode end: terminated by checkmate, stalemate, insufficient material, or a claimable threefold
        repetition / 50-move rule (claimed at once); truncated (adjudicated draw) after `max_plies`
        plies, or after 4 x max_plies agent steps (an agent that keeps re-selecting). An action outside
        the mask changes nothing and is counted in `episode_info()['illegal_actions']`.
    Episode info: result ('win', 'loss', 'draw' for the agent), opponent, agent_color, plies, termination,
        opening_plies, illegal_actions, pgn.
    Args:
        image_size: side of the observation, a multiple of 8 (8 px per square at 64).
        action_mode: 'click' or 'fromto'.
        opponent: spec string (random, greedy, epsilon:<e>, stockfish, stockfish:skill=<n>,
            stockfish:elo=<n>, stockfish:depth=<n>, stockfish:nodes=<n>) or an Opponent / PolicyOpponent.
        agent_color: 'white', 'black' or 'alternate' (switches every episode; a seeded reset plays white
            for an even seed, black for an odd one, so episodes seeded seed, seed + 1, ... alternate).
        opening_plies: each game opens with 0..opening_plies uniformly random plies so games differ.
        max_plies: ply limit of a game.
        underpromotion: offer the promotion picker instead of auto-queening.
        stockfish_path: Stockfish binary ('' finds it on PATH or in /usr/games).
        render_size: side of `render()`'s frame for viewers (a multiple of 8).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, image_size: int = 64, action_mode: str = "click", opponent: str | Opponent = "random",
                 agent_color: str = "alternate", opening_plies: int = 6, max_plies: int = 300,
                 underpromotion: bool = False, stockfish_path: str = "", render_size: int = 512,
                 render_mode: str | None = "rgb_array") -> None:
        for name, size in (("image_size", image_size), ("render_size", render_size)):
            if size % 8 or size < 16:
                raise EnvError(f"chess {name} = {size}: must be a multiple of 8 and >= 16 (one cell per square)")
        if agent_color not in ("white", "black", "alternate"):
            raise EnvError(f"chess agent_color = {agent_color!r}: must be 'white', 'black' or 'alternate'")
        try:
            self._input = MoveInput(action_mode, underpromotion)
        except ValueError as exc:
            raise EnvError(f"chess {exc}") from None
        self.action_mode, self.underpromotion = action_mode, underpromotion
        self.agent_color, self.opening_plies, self.max_plies = agent_color, opening_plies, max_plies
        self.render_mode = render_mode
        self._obs_renderer = BoardRenderer(image_size // 8)
        self._view_renderer = BoardRenderer(render_size // 8)
        self.opponent = make_opponent(opponent, stockfish_path=stockfish_path)
        n = self._input.n_actions
        self.action_space = gym.spaces.Discrete(n)
        self.observation_space = gym.spaces.Dict({"image": image_space(image_size), "action_mask": mask_space(n)})
        self.board = chess.Board()
        self.agent_white = True
        self._rng = random.Random(0)
        self._episode = 0
        self._steps = self._illegal = self._opening = 0
        self._mask = np.zeros(n, bool)
        self._over: dict[str, Any] | None = None

    # -- episode ------------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = random.Random(seed)
            # The colour follows the seed's parity: the app seeds each episode (seed + k), so colours alternate.
            self._episode = seed
        self.agent_white = {"white": True, "black": False}.get(self.agent_color, self._episode % 2 == 0)
        self._episode += 1
        self._steps = self._illegal = 0
        self._over = None
        self._input.reset()
        for _ in range(100):
            self._open_game()
            if self.board.turn != self.agent_white:
                self._opponent_move()
            # The opponent's first move can end the game (a mate in one left by the random opening): the agent
            # would face a board with no legal move. Such an opening is drawn again.
            if self.board.outcome(claim_draw=True) is None:
                break
        else:
            raise EnvError("chess: 100 random openings in a row ended with the opponent's first move")
        return self._observe(), {}

    def _open_game(self) -> None:
        """Play 0..opening_plies random plies; retry in the rare case the opening itself ends the game."""
        while True:
            self.board = chess.Board()
            self._opening = self._rng.randint(0, self.opening_plies)
            for _ in range(self._opening):
                self.board.push(self._rng.choice(list(self.board.legal_moves)))
                if self.board.is_game_over():
                    break
            if not self.board.is_game_over():
                return

    def step(self, action):
        if self._over is not None:
            raise EnvError("chess: step() after the game ended; call reset()")
        self._steps += 1
        action = int(action)
        reward, terminated, truncated = 0.0, False, False
        if not (0 <= action < self._mask.size and self._mask[action]):
            self._illegal += 1
        else:
            move = self._input.apply(self.board, action, self.agent_white)
            if move is not None:
                self.board.push(move)
                terminated = self._check_end()
                if not terminated:
                    self._opponent_move()
                    terminated = self._check_end()
        if not terminated and (self.board.ply() >= self.max_plies or self._steps >= 4 * self.max_plies):
            truncated = True
            self._finish("draw", "max_plies" if self.board.ply() >= self.max_plies else "max_steps")
        if self._over is not None and terminated:
            reward = {"win": 1.0, "loss": -1.0, "draw": 0.0}[self._over["result"]]
        info: dict[str, Any] = {"move": self.board.peek().uci() if self.board.move_stack else None}
        if terminated or truncated:
            info["episode"] = self.episode_info()
        return self._observe(), reward, terminated, truncated, info

    def _check_end(self) -> bool:
        outcome = self.board.outcome(claim_draw=True)
        if outcome is None:
            return False
        result = "draw" if outcome.winner is None else "win" if outcome.winner == self.agent_white else "loss"
        self._finish(result, outcome.termination.name.lower())
        return True

    def _finish(self, result: str, termination: str) -> None:
        self._over = {"result": result, "termination": termination}

    # -- opponent -----------------------------------------------------------------------------------------

    def _opponent_move(self) -> None:
        if isinstance(self.opponent, PolicyOpponent):
            move = self._policy_move(self.opponent)
        else:
            move = self.opponent.choose(self.board, self._rng)
        if move not in self.board.legal_moves:
            raise EnvError(f"chess opponent {self.opponent.name!r} played an illegal move {move}")
        self.board.push(move)

    def _policy_move(self, opponent: PolicyOpponent) -> chess.Move:
        """Drive a frozen agent policy through the same actions, seeing the board from its side."""
        picker = MoveInput(self.action_mode, self.underpromotion)
        white = self.board.turn
        for _ in range(MAX_POLICY_TRIES):
            mask = picker.mask(self.board, white)
            image = self._obs_renderer.render(self.board, white, last_move=self._last_move(),
                                              selected=picker.selected, picker=picker.picker(white))
            action = int(opponent.policy({"image": image, "action_mask": mask}))
            if 0 <= action < mask.size and mask[action]:
                move = picker.apply(self.board, action, white)
                if move is not None:
                    return move
        log.warning("self-play opponent made no legal move in %d actions; playing a random move",
                    MAX_POLICY_TRIES)
        return self._rng.choice(list(self.board.legal_moves))

    # -- views --------------------------------------------------------------------------------------------

    def _last_move(self) -> chess.Move | None:
        return self.board.peek() if self.board.move_stack else None

    def _observe(self) -> dict[str, np.ndarray]:
        if self._over is None:
            self._mask = self._input.mask(self.board, self.agent_white)
        else:
            self._mask = np.zeros(self._input.n_actions, bool)
        return {"image": self._draw(self._obs_renderer), "action_mask": self._mask.copy()}

    def _draw(self, renderer: BoardRenderer) -> np.ndarray:
        return renderer.render(self.board, self.agent_white, last_move=self._last_move(),
                               selected=self._input.selected, picker=self._input.picker(self.agent_white))

    def render(self) -> np.ndarray:
        """Return the board for viewers at render_size, from the agent's side."""
        return self._draw(self._view_renderer)

    def episode_info(self) -> dict[str, Any]:
        """Return the match-history facts of the current game (result 'draw' while it is still running)."""
        over = self._over or {"result": "draw", "termination": "unfinished"}
        game = chess.pgn.Game.from_board(self.board)
        agent, other = "DreamStream agent", self.opponent.name
        white_won = (over["result"] == "win") == self.agent_white
        result = "*" if self._over is None else "1/2-1/2" if over["result"] == "draw" else \
            "1-0" if white_won else "0-1"
        game.headers.update({"Event": "DreamStream", "White": agent if self.agent_white else other,
                             "Black": other if self.agent_white else agent, "Result": result,
                             "Termination": over["termination"]})
        return {"result": over["result"], "opponent": other, "agent_color": "white" if self.agent_white else "black",
                "plies": self.board.ply(), "termination": over["termination"], "opening_plies": self._opening,
                "illegal_actions": self._illegal, "pgn": str(game)}

    def close(self) -> None:
        self.opponent.close()
