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
        self._card: tuple[str, float] | None = None

    def open(self) -> None:
        try:
            self.controller.connect()
            self.controller.ensure_scenes()
            self.controller.show("starting")
            self.controller.start_stream()
        except StreamError as exc:
            log.error("OBS mode: %s (the run goes on; the controller keeps reconnecting)", exc)

    def show(self, scene: str) -> None:
        self.scene = scene
        try:
            self.controller.show(scene)
        except StreamError as exc:
            log.debug("OBS: cannot show %s yet: %s", scene, exc)

    def card(self, scene: str, seconds: float) -> None:
        """Ask for a card scene (e.g. 'rollback') for `seconds`, then live again; any thread may ask, the
        component's thread switches."""
        self._card = (scene, time.monotonic() + seconds)

    def run(self, stop: threading.Event, hud: Callable[[], dict[str, str]], is_live: Callable[[], bool]) -> None:
        """Component loop: once a second, the scene, the HUD texts and the stats."""
        while not stop.wait(1.0):
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
            if self.scene != card[0]:
                self.show(card[0])
            return
        if card is not None:
            self._card = None
            self.show("live" if is_live() else "starting")
        elif self.scene == "starting" and is_live():
            self.show("live")

    def close(self) -> None:
        self.show("brb")  # OBS keeps streaming the be-right-back card while the app restarts
        self.controller.close()
