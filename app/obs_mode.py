"""OBS mode in the app: keeps OBS's scenes in step with the run (starting, live, be right back), feeds its
HUD text sources, and polls its stats (which is also what reconnects after OBS restarts).

All calls happen in this component's own thread, never in the actor or the compositor: a hung OBS may
block a call for up to `obs.request_timeout_s`.
"""

from __future__ import annotations

import logging
import threading
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

    def run(self, stop: threading.Event, hud: Callable[[], dict[str, str]], is_live: Callable[[], bool]) -> None:
        """Component loop: once a second, the scene, the HUD texts and the stats."""
        while not stop.wait(1.0):
            if self.scene == "starting" and is_live():
                self.show("live")
            try:
                self.controller.set_hud(hud())
            except StreamError as exc:
                log.debug("OBS HUD update failed: %s", exc)
            self.stats = self.controller.stats()  # never raises; drives reconnects

    def close(self) -> None:
        self.show("brb")  # OBS keeps streaming the be-right-back card while the app restarts
        self.controller.close()
