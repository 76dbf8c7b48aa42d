"""The app's exception family, and the tuple of every package's family that the CLI reports in one line.

Lower layers may not import the app, so envs/trainer/overlays/stream each own a root error of their own;
`DREAMSTREAM_ERRORS` gathers them so the command line treats all of them the same way.
"""

from __future__ import annotations

from envs.errors import EnvError
from overlays.errors import OverlayError
from stream.errors import StreamError
from trainer.errors import TrainerError

__all__ = ["DREAMSTREAM_ERRORS", "ConfigError", "DreamStreamError", "RunDirError", "StorageError"]


class DreamStreamError(Exception):
    """Root of the errors raised by the app layer."""


class ConfigError(DreamStreamError):
    """A config block, key or value is invalid; the message names it and what would be valid."""


class RunDirError(DreamStreamError):
    """The run directory cannot be used (locked by another process, unwritable, incompatible)."""


class StorageError(DreamStreamError):
    """The database cannot be opened or migrated."""


DREAMSTREAM_ERRORS = (DreamStreamError, EnvError, TrainerError, OverlayError, StreamError)
