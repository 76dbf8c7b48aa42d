"""Secrets never reach a log line, a logged traceback, or a component's last error."""

from __future__ import annotations

import logging
import threading

from app.logs import SecretFilter
from app.supervisor import Supervisor

SECRET = "s3cr3t-client-secret"


def fail() -> None:
    raise RuntimeError(f"POST https://id.twitch.tv/oauth2/token?client_id=x&client_secret={SECRET} failed")


def test_message_and_traceback_are_masked(tmp_path) -> None:
    logger = logging.getLogger("test_logs.masked")
    handler = logging.FileHandler(tmp_path / "log.txt")
    handler.addFilter(SecretFilter([SECRET]))
    logger.addHandler(handler)
    try:
        logger.error("token %s refused", SECRET)
        try:
            fail()
        except RuntimeError:
            logger.exception("the client stopped")
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = (tmp_path / "log.txt").read_text()
    assert SECRET not in text
    assert "token *** refused" in text and "client_secret=*** failed" in text and "Traceback" in text


def test_a_crashed_components_error_is_masked() -> None:
    stop = threading.Event()
    events = []
    supervisor = Supervisor(stop, on_event=lambda kind, message: events.append(message),
                            redact=SecretFilter([SECRET]).mask)

    def component(_stop: threading.Event) -> None:
        stop.set()
        fail()

    supervisor.add("twitch_chat", component)
    supervisor.start()
    supervisor.join(timeout_s=10)
    status = supervisor.status()["twitch_chat"]
    assert SECRET not in str(status) and "client_secret=***" in status["last_error"]
    assert events and all(SECRET not in e for e in events)
