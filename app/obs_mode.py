"""OBS mode in the app: keeps OBS's scenes in step with the run (starting, live, rollback, be right back), feeds its
HUD text sources, and polls its stats (which is also what reconnects after OBS restarts).

All calls happen in this component's own thread, never in the actor or the compositor: a hung OBS may
block a call for up to `obs.request_timeout_s`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from stream import ObsConfig, ObsController, StreamError

__all__ = ["ObsMode"]

log = logging.getLogger(__name__)


class ObsMode:
    """Drives OBS for the app; a failing OBS is logged and retried, never fatal to the run."""

    def __init__(self, cfg: ObsConfig, game_url: str) -> None:
        self.controller = ObsController(replace(cfg, game_url=cfg.game_url or game_url))
        self.stats: dict[str, Any] = {}
        self.scene = "starting"
        """The scene the run needs; `_shown` is the one OBS last took (None: not known to be shown)."""
        self._shown: str | None = None
        self._card: tuple[str, float] | None = None
        self._opened = False
        self._told = False

    def open(self) -> None:
        """Set OBS up (scenes, the current scene, its stream). When OBS is not there yet (or fails), the component
        loop tries again at the controller's backoff, so an OBS started after the app still goes live."""
        try:
            self.controller.connect()
            self.controller.ensure_scenes()
            self.show(self.scene)
            self.controller.start_stream()
        except StreamError as exc:
            if not self._told:
                log.error("OBS mode: %s (the run goes on; OBS is set up once it answers)", exc)
                self._told = True
            return
        self._opened = True
        if self._told:
            log.info("OBS mode: OBS is set up and streaming")

    def show(self, scene: str) -> None:
        self.scene = scene
        try:
            self.controller.show(scene)
            self._shown = scene
        except StreamError as exc:
            self._shown = None
            log.debug("OBS: cannot show %s yet: %s", scene, exc)

    def card(self, scene: str, seconds: float) -> None:
        """Ask for a card scene (e.g. 'rollback') for `seconds`, then live again; any thread may ask, the
        component's thread switches."""
        self._card = (scene, time.monotonic() + seconds)

    def run(self, stop: threading.Event, hud: Callable[[], dict[str, str]], is_live: Callable[[], bool]) -> None:
        """Component loop: once a second, the scene, the HUD texts and the stats."""
        while not stop.wait(1.0):
            self.tick(hud, is_live)

    def tick(self, hud: Callable[[], dict[str, str]], is_live: Callable[[], bool]) -> None:
        """One round of the component loop."""
        if not self._opened:
            self.open()
        self.step_scene(is_live)
        try:
            self.controller.set_hud(hud())
        except StreamError as exc:
            log.debug("OBS HUD update failed: %s", exc)
        self.stats = self.controller.stats()  # never raises; drives reconnects

    def step_scene(self, is_live: Callable[[], bool]) -> None:
        """Put the scene the run needs now: a requested card until its time is up, else live once playing."""
        card = self._card
        if card is not None and time.monotonic() < card[1]:
            if self.scene != card[0] or self._shown != card[0]:
                self.show(card[0])
            return
        if card is not None:
            if self._card is card:  # a card asked for meanwhile (another thread) stays
                self._card = None
            self.show("live" if is_live() else "starting")
        elif self.scene == "starting" and is_live():
            self.show("live")
        elif self._shown != self.scene:  # OBS was away when the scene was asked for: ask again
            self.show(self.scene)

    def close(self) -> None:
        self.show("brb")  # OBS keeps streaming the be-right-back card while the app restarts
        self.controller.close()
