"""Mouse and keyboard input on an X display through the XTEST extension, one python-xlib connection per display.

This is the mechanism pyautogui uses on X11 (`Xlib.ext.xtest.fake_input`), without pyautogui itself: pyautogui
opens a module-global connection to `$DISPLAY` when it is imported, so it can neither target a display chosen
at run time nor drive two displays from one process, and its defaults sleep 0.1 s after every call. Here a
click costs one round trip (well under a millisecond on a local Xvfb). With no window manager, keyboard focus
follows the pointer, so keys go to the window under it: click or move there first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from envs.errors import EnvError
from envs.screen.capture import display_gone

__all__ = ["KEY_ALIASES", "XInput"]

log = logging.getLogger(__name__)

KEY_ALIASES = {"ctrl": "Control_L", "shift": "Shift_L", "alt": "Alt_L", "enter": "Return", "esc": "Escape",
               "backspace": "BackSpace", "tab": "Tab", "up": "Up", "down": "Down", "left": "Left",
               "right": "Right"}
"""Short names accepted besides X keysym names (a, space, Return, F1, ...)."""


class XInput:
    """Synthetic input on one X display: `click(x, y)`, `move(x, y)` and `press(keys)` in screen pixels."""

    def __init__(self, display: str) -> None:
        from Xlib import XK, X, error
        from Xlib import display as xdisplay
        from Xlib.ext import xtest

        self.display = display
        self._X, self._XK, self._xtest = X, XK, xtest
        self._broken = (error.ConnectionClosedError, OSError)
        try:
            self._conn = xdisplay.Display(display)
        except (error.DisplayError, *self._broken) as exc:
            raise EnvError(f"display {display} cannot be opened for input ({exc}); start its X server, or use '' "
                           "to let the env start a private Xvfb") from exc
        if not self._conn.has_extension("XTEST"):
            self._conn.close()
            raise EnvError(f"display {display} has no XTEST extension, so input cannot be sent; use Xvfb or an "
                           "X server with XTEST enabled")

    def keycode(self, name: str) -> int:
        """Return the keycode of key `name` (a keysym name or an alias), or raise EnvError."""
        keysym = self._XK.string_to_keysym(KEY_ALIASES.get(name, name))
        code = self._conn.keysym_to_keycode(keysym) if keysym else 0
        if not code:
            raise EnvError(f"key {name!r} is not on the keyboard of display {self.display}; use an X keysym name "
                           f"(a, space, Return, F1, ...) or one of {', '.join(sorted(KEY_ALIASES))}")
        return code

    def _send(self, events: Sequence[tuple[int, dict]], doing: str) -> None:
        try:
            for event_type, kwargs in events:
                self._xtest.fake_input(self._conn, event_type, **kwargs)
            self._conn.sync()
        except self._broken as exc:
            log.debug("input on %s failed: %r", self.display, exc)
            raise display_gone(self.display, doing) from exc

    def move(self, x: int, y: int) -> None:
        """Move the pointer to screen pixel (x, y)."""
        self._send([(self._X.MotionNotify, {"x": x, "y": y})], "a pointer move")

    def click(self, x: int, y: int, button: int = 1) -> None:
        """Move to (x, y), then press and release `button` (1 = left)."""
        X = self._X
        self._send([(X.MotionNotify, {"x": x, "y": y}), (X.ButtonPress, {"detail": button}),
                    (X.ButtonRelease, {"detail": button})], "a click")

    def press(self, keys: Sequence[str]) -> None:
        """Press `keys` together (in order; modifiers first) and release them in reverse order."""
        codes = [self.keycode(k) for k in keys]
        X = self._X
        self._send([(X.KeyPress, {"detail": c}) for c in codes]
                   + [(X.KeyRelease, {"detail": c}) for c in reversed(codes)], "a key press")

    def close(self) -> None:
        try:
            self._conn.close()
        except self._broken as exc:
            log.debug("closing the input connection to %s: %r", self.display, exc)
