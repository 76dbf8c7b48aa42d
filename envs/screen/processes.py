"""Child programs the screen envs own (Xvfb, xboard, a game): each runs in its own session, and closing it ends
its whole process group (engines and adapters it spawned included), also at garbage collection or exit."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["ChildProcess"]

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
"""How long a program may take to exit after SIGTERM before its group is killed."""


def _exit_status(pid: int) -> int | None:
    """Return the exit code of child `pid` (negative signal number if killed), or None while it runs.

    The child is not reaped (WNOWAIT): its pid, and so its process group id, stays reserved until `close`
    kills the rest of the group, so that kill can never hit an unrelated group that reused the id.
    """
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    if info is None or info.si_pid == 0:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _end_group(popen: subprocess.Popen, name: str) -> None:
    """Stop `popen`'s process group: SIGTERM, SIGKILL after STOP_TIMEOUT_S, then SIGKILL to any stragglers."""
    pid = popen.pid
    if _exit_status(pid) is None:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _exit_status(pid) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if _exit_status(pid) is None:
            log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", name, pid, STOP_TIMEOUT_S)
    try:
        os.killpg(pid, signal.SIGKILL)  # the leader is a zombie or dying; its helpers may still run
    except ProcessLookupError:
        log.debug("%s (pid %d): no process of its group was left", name, pid)
    popen.wait()
    log.debug("%s (pid %d) stopped with code %s", name, pid, popen.returncode)


class ChildProcess:
    """A program started in a new session (so it leads its own process group) with its output in a log file."""

    def __init__(self, argv: Sequence[str], *, name: str, env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None, log_path: str | Path | None = None,
                 pass_fds: Sequence[int] = ()) -> None:
        self.name = name
        self.log_path = Path(log_path) if log_path is not None else None
        log.debug("starting %s: %s", name, list(argv))
        with open(os.devnull if log_path is None else log_path, "ab") as out:
            self._popen = subprocess.Popen(list(argv), env=None if env is None else dict(env), cwd=cwd,
                                           stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                           pass_fds=tuple(pass_fds), start_new_session=True)
        self._finalizer = weakref.finalize(self, _end_group, self._popen, name)

    @property
    def pid(self) -> int:
        return self._popen.pid

    def exit_code(self) -> int | None:
        """Return the program's exit code (negative: killed by that signal), or None while it runs."""
        if self._popen.returncode is not None:
            return self._popen.returncode
        return _exit_status(self._popen.pid)

    def log_tail(self, max_chars: int = 400) -> str:
        """Return the end of the program's output, for error messages ('' without a log file)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-max_chars:].strip()

    def close(self) -> None:
        """Stop the program and everything in its process group; safe to call twice."""
        self._finalizer()
