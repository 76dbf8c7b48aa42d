"""Any game on an X11 screen, xboard chess and Clash Royale; registration only here (light), the env classes live in submodules."""
