"""Yardstick suites (Atari, DMC, PixelCatch, any Gymnasium env); registration only here (light), the env classes live in submodules."""
