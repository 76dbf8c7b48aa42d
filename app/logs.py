"""Logging, configured once for the process: rich console output and a plain rotating file in the run dir.

Every handler carries a filter that masks the configured secrets, as a second line of defence behind
the rule that secrets are never passed to a logger in the first place.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

__all__ = ["SecretFilter", "console", "output", "setup_logging"]

console = Console(stderr=True)
"""Logs and progress go to stderr."""
output = Console()
"""What a command prints as its result (tables, summaries) goes to stdout."""
_NOISY = ("jax._src", "absl", "urllib3", "asyncio", "multipart", "PIL", "numba", "alembic", "apscheduler",
          "uvicorn.access", "httpx", "matplotlib")


class SecretFilter(logging.Filter):
    """Replaces every secret in a record's final message with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            msg = record.getMessage()
            masked = self.mask(msg)
            if masked != msg:
                record.msg, record.args = masked, None
            if record.exc_info and not record.exc_text:
                # A library's exception text can quote a URL with a secret in its query: mask the traceback
                # too, and hand handlers the masked text instead of the live exception.
                text = logging.Formatter().formatException(record.exc_info)
                masked = self.mask(text)
                if masked != text:
                    record.exc_info, record.exc_text = None, masked
        return True

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def setup_logging(level: str = "info", log_path: Path | None = None, secrets: Iterable[str] = ()) -> None:
    """Route all loggers to the console (rich when a terminal) and, if given, to a plain file."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    numeric = getattr(logging, level.upper())
    root.setLevel(numeric)
    secret_filter = SecretFilter(secrets)
    if console.is_terminal:
        con: logging.Handler = RichHandler(console=console, show_path=False, rich_tracebacks=True,
                                           log_time_format="%H:%M:%S")
        con.setFormatter(logging.Formatter("%(message)s"))
    else:
        con = logging.StreamHandler(sys.stderr)
        con.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    con.addFilter(secret_filter)
    root.addHandler(con)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(log_path, maxBytes=20_000_000, backupCount=5)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"))
        fh.addFilter(secret_filter)
        root.addHandler(fh)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
