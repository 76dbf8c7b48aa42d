"""Supervision of the app's long-running components: each runs in its own thread and is restarted
with exponential backoff when it crashes, so one failing part never takes the app down."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Component", "Supervisor"]

log = logging.getLogger(__name__)

STABLE_AFTER_S = 60.0


@dataclass
class Component:
    """A named loop `target(stop)` that runs until `stop` is set."""

    name: str
    target: Callable[[threading.Event], None]
    backoff_max_s: float = 30.0
    state: str = "new"
    restarts: int = 0
    last_error: str = ""
    started_at: float = 0.0
    thread: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    """Starts components in threads, restarts crashed ones, and stops them all on request."""

    def __init__(self, stop: threading.Event | None = None,
                 on_event: Callable[[str, str], None] | None = None,
                 redact: Callable[[str], str] = lambda text: text) -> None:
        self.stop_event = stop or threading.Event()
        self._components: dict[str, Component] = {}
        self._on_event = on_event
        self._redact = redact
        """Masks secrets in an error's text before it is kept (status page, events)."""

    def add(self, name: str, target: Callable[[threading.Event], None], *, backoff_max_s: float = 30.0) -> None:
        if name in self._components:
            raise ValueError(f"component {name!r} added twice")
        self._components[name] = Component(name=name, target=target, backoff_max_s=backoff_max_s)

    def start(self) -> None:
        """Start every component not yet started (components may be added and started in stages)."""
        for comp in list(self._components.values()):
            if comp.thread is None:
                comp.thread = threading.Thread(target=self._keep_running, args=(comp,), name=comp.name,
                                               daemon=True)
                comp.thread.start()

    def _keep_running(self, comp: Component) -> None:
        backoff_s = 1.0
        while not self.stop_event.is_set():
            comp.state, comp.started_at = "running", time.monotonic()
            try:
                comp.target(self.stop_event)
                if self.stop_event.is_set():
                    break
                comp.last_error = "returned before the app stopped"
                log.error("component %s %s; restarting", comp.name, comp.last_error)
            except Exception as exc:
                comp.last_error = self._redact(f"{type(exc).__name__}: {exc}")
                log.exception("component %s crashed; restarting", comp.name)
            if self._on_event is not None:
                try:
                    self._on_event("component_crashed", f"{comp.name}: {comp.last_error}")
                except Exception:
                    log.exception("recording the crash of %s failed", comp.name)
            if time.monotonic() - comp.started_at >= STABLE_AFTER_S:
                backoff_s = 1.0
            comp.state = "restarting"
            comp.restarts += 1
            self.stop_event.wait(min(backoff_s, comp.backoff_max_s))
            backoff_s = min(backoff_s * 2, comp.backoff_max_s)
        comp.state = "stopped"

    def join(self, timeout_s: float = 10.0) -> list[str]:
        """Wait for every component to finish after `stop_event` is set; return the names still running."""
        deadline = time.monotonic() + timeout_s
        for comp in list(self._components.values()):
            if comp.thread is not None:
                comp.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = [c.name for c in list(self._components.values()) if c.thread is not None and c.thread.is_alive()]
        for name in stuck:
            log.error("component %s did not stop within %.0fs", name, timeout_s)
        return stuck

    def status(self) -> dict[str, dict[str, Any]]:
        # A copy: components are added from the app's thread while the dashboard asks (a dict changing size
        # during the iteration would fail that request).
        return {c.name: {"state": c.state, "restarts": c.restarts, "last_error": c.last_error}
                for c in list(self._components.values())}
