"""A fixed decision rate for real-time games: each agent step waits for its slot on a steady clock.

The clock is injectable (`now`, `sleep`), so a replayed recording runs on virtual time and tests never sleep.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["Pacer"]

log = logging.getLogger(__name__)


class Pacer:
    """Slots every 1 / hz seconds from `restart()`; `wait()` sleeps until the next one.

    A step that overran by more than a whole period does not cause a burst of catch-up steps: the
    schedule restarts from now and `late_steps` counts the event.
    """

    def __init__(self, hz: float, now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not hz > 0:
            raise ValueError(f"decision rate {hz} Hz: must be > 0")
        self.period_s = 1.0 / hz
        self.now, self.sleep = now, sleep
        self.late_steps = 0
        self._slot = now()

    def restart(self) -> None:
        """Start the schedule at the current time (call when an episode starts)."""
        self._slot = self.now()

    def wait(self) -> None:
        """Sleep until the next slot."""
        self._slot += self.period_s
        delay = self._slot - self.now()
        if delay > 0:
            self.sleep(delay)
        elif delay < -self.period_s:
            self.late_steps += 1
            log.debug("decision step %.0f ms late; restarting the schedule", -delay * 1000)
            self._slot = self.now()
