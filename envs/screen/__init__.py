"""Any game on an X11 screen, xboard chess and Clash Royale; registration only here (light), the env classes live in
submodules."""

from envs.registry import register

register("screen", "envs.screen.env:ScreenEnv",
         "any program on an X display: action table of clicks and keys, pixel/template detectors for reward and end",
         options="screen", needs_display=True, single_instance=True)
register("xboard-chess", "envs.screen.xboard:XboardChessEnv",
         "chess against Stockfish in xboard, seen and clicked only through the screen (agent plays White)",
         options="xboard", needs_display=True, single_instance=True)
register("clash-royale", "envs.screen.clash:ClashRoyaleEnv",
         "Clash Royale from an emulator window (or a replay): wait or card x placement cell, friendly battles only",
         options="clash", needs_display=True, single_instance=True)
