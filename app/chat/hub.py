"""The chat hub: one `ChatCore` shared by every transport (local box, Twitch), thread-safe, never raising.

Transports call `submit(message, source)` and get the replies meant for them; announcements (a poll opens
or closes, a reset vote starts) also go to every other transport's registered `say` callback. The hub
keeps the lines the overlay shows, the poll, and a short log for the dashboard's chat box. Steering
effects go to the app's `on_steer` callback.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from app.chat.core import ChatCore, Message, Reply, Show, Steer, clean_login, clean_text
from overlays import Poll

__all__ = ["ChatHub"]

log = logging.getLogger(__name__)

LOG_LINES = 200
"""Lines the dashboard's chat box can fetch (messages and replies)."""


class ChatHub:
    def __init__(self, core: ChatCore, *, on_steer: Callable[[Steer], None] = lambda steer: None,
                 clock: Callable[[], float] = time.monotonic, overlay_lines: int = 5) -> None:
        self.core = core
        self.on_steer = on_steer
        self.clock = clock
        self._lock = threading.Lock()
        self._shown: collections.deque[Show] = collections.deque(maxlen=overlay_lines)
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=LOG_LINES)
        self._ids = itertools.count(1)
        self._announcers: dict[str, Callable[[str], None]] = {}
        self.errors = 0
        self.boot = uuid.uuid4().hex
        """Changes with every start, so a dashboard page left open knows the log's ids started again."""

    def add_announcer(self, name: str, say: Callable[[str], None]) -> None:
        """Register where announcements (poll results) are said, besides the dashboard's log."""
        self._announcers[name] = say

    def remove_announcer(self, name: str) -> None:
        self._announcers.pop(name, None)

    def submit(self, message: Message, source: str) -> list[Reply]:
        """Handle one message from `source`; return the replies the transport should send. Never raises."""
        return self.submit_checked(message, source)[0]

    def submit_checked(self, message: Message, source: str) -> tuple[list[Reply], bool]:
        """`submit`, and whether rate limits dropped this message or a reply to it (counted under the lock: the
        shared counter also moves with every other viewer's dropped messages)."""
        if self.core.ignores(message):  # chat.ignore_users: not a command, not a line on the stream
            return [], False
        try:
            with self._lock:
                dropped = self.core.dropped
                effects = self.core.handle(message, self.clock())
                self._append("message", source, clean_login(message.login), clean_text(message.text, 200))
                replies = self._apply(effects, source)
                limited = self.core.dropped > dropped
        except Exception:
            self.errors += 1
            log.exception("chat: a message from %s could not be handled; chat goes on", source)
            return [], False
        self._announce([r for r in replies if r.announce], skip=source)  # e.g. a poll opened on the dashboard
        return replies, limited

    def tick(self) -> None:
        """Close polls whose time is up and announce the result (call about twice a second)."""
        try:
            with self._lock:
                replies = self._apply(self.core.tick(self.clock()), "")
        except Exception:
            self.errors += 1
            log.exception("chat: closing a poll failed; chat goes on")
            return
        self._announce(replies)

    def _apply(self, effects: list, source: str) -> list[Reply]:
        replies = []
        for effect in effects:
            if isinstance(effect, Show):
                self._shown.append(effect)
            elif isinstance(effect, Steer):
                self._append("steer", "", "", f"{effect.action} ({effect.reason})")
                try:
                    self.on_steer(effect)
                except Exception:
                    self.errors += 1
                    log.exception("chat: steering %s failed", effect.action)
            elif isinstance(effect, Reply):
                self._append("reply", source, "bot", effect.text)
                replies.append(effect)
        return replies

    def _announce(self, replies: list[Reply], skip: str = "") -> None:
        for reply in replies:
            for name, say in list(self._announcers.items()):
                if name == skip:
                    continue
                try:
                    say(reply.text)
                except Exception:
                    self.errors += 1
                    log.exception("chat: announcing to %s failed", name)

    def _append(self, kind: str, source: str, user: str, text: str) -> None:
        self._log.append({"id": next(self._ids), "kind": kind, "source": source, "user": user, "text": text,
                          "at": time.time()})

    def lines(self) -> list[Show]:
        with self._lock:
            return list(self._shown)

    def poll(self) -> Poll | None:
        with self._lock:
            return self.core.poll_view(self.clock())

    def history(self, after: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(line) for line in self._log if line["id"] > after]
