"""The run directory: where a run keeps its config, logs, metrics, checkpoints, replay, database and video.

A run dir is owned by one process at a time (an flock on `run.lock`). Files that must survive `kill -9`
are written under a temporary name and renamed into place.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import RunDirError

__all__ = ["RunDir", "atomic_write_text", "default_logdir"]

log = logging.getLogger(__name__)


def default_logdir(root: Path = Path("runs")) -> Path:
    """Return `runs/<YYYYmmdd-HHMMSS>` for a new run."""
    return root / time.strftime("%Y%m%d-%H%M%S")


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that a crash leaves either the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass
class RunDir:
    """Paths of one run directory, and its lock."""

    root: Path
    _lock_fd: int | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    @property
    def log_path(self) -> Path:
        return self.root / "logs" / "dreamstream.log"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def replay_dir(self) -> Path:
        return self.root / "replay"

    @property
    def recordings_dir(self) -> Path:
        return self.root / "recordings"

    @property
    def hls_dir(self) -> Path:
        return self.root / "hls"

    @property
    def rtmp_dir(self) -> Path:
        return self.root / "rtmp"

    @property
    def dashboard_url_path(self) -> Path:
        return self.root / "dashboard.url"

    def database_path(self, database: str) -> Path:
        path = Path(database)
        return path if path.is_absolute() else self.root / path

    def database_run_name(self, database: str) -> str:
        """The name of this run's row in the database: the run dir's name in its own database, its whole path
        in a database shared by several run dirs (two of them may have the same name, e.g. runs/a/default and
        runs/b/default, and would otherwise write into one row)."""
        return self.root.name if not Path(database).is_absolute() else str(self.root.resolve())

    @property
    def is_new(self) -> bool:
        return not self.config_path.exists()

    def create(self) -> None:
        """Create the folders; raise RunDirError when the location is unusable."""
        try:
            for d in (self.root, self.log_path.parent, self.metrics_dir, self.checkpoints_dir,
                      self.replay_dir, self.recordings_dir, self.hls_dir):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create run dir {self.root}: {exc.strerror}; "
                              "pass a writable --logdir") from None

    def lock(self) -> None:
        """Take the run dir for this process; raise RunDirError if another process holds it."""
        path = self.root / "run.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirError(f"run dir {self.root} is in use by pid {holder}; stop that run or pass "
                              "another --logdir") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def read_state(self) -> dict[str, Any]:
        """Return the saved counters ({} for a new run); a damaged file is reported, not trusted."""
        if not self.state_path.exists():
            return {}
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RunDirError(f"{self.state_path} is unreadable ({exc}); restore it from a backup or "
                              "delete it to restart the counters from zero") from None
        if not isinstance(state, dict):
            raise RunDirError(f"{self.state_path} must hold a JSON object")
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        atomic_write_text(self.state_path, json.dumps(state, indent=1, sort_keys=True) + "\n")
