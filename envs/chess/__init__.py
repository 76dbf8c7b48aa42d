"""Chess from pixels: the full game against a ladder of opponents, and the mate-in-1 yardstick.

Registration only here (light); the env classes live in submodules and import python-chess on use.
"""

from envs.registry import register

register("chess", "envs.chess.env:ChessEnv", "Chess from pixels vs random/greedy/Stockfish, GUI-like click actions",
         options="chess")
register("chess-mate-in-1", "envs.chess.mate:MateInOneEnv",
         "Find the mating move from pixels, one move per episode (fast chess yardstick)", options="mate")
