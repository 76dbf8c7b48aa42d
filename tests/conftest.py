"""Shared helpers: ffprobe, waiting for conditions, and a real `dreamstream` process under test."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

DREAMSTREAM = str(Path(sys.executable).parent / "dreamstream")

# The suite runs JAX on the CPU also on a GPU box: its workers and the app processes it starts would each take 75 %
# of the GPU's memory, and exact-equality checks assume the CPU's arithmetic.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    # One XLA compile cache for the whole session (this process and every `dreamstream` it starts): the many
    # tests that build the same tiny agent compile it once. Set the variable yourself to keep one across runs.
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="dreamstream-tests-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

PATIENCE_S = 180.0
"""How long a test waits for something that normally takes seconds; generous for slow CI machines."""


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = PATIENCE_S, every_s: float = 0.2) -> Any:
    """Return the first truthy value of `condition()`, or fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the thing may not exist yet
            last_exc = exc
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what} (last error: {last_exc})")


def ffprobe(target: str | Path, *extra: str, timeout_s: float = 60) -> dict[str, Any]:
    """Return ffprobe's JSON description (streams and format) of a file or URL."""
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format",
                          *extra, str(target)], capture_output=True, text=True, timeout=timeout_s, check=True)
    return json.loads(out.stdout)


def keyframe_times(target: str | Path, timeout_s: float = 60) -> list[float]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-skip_frame", "nokey",
                          "-show_entries", "frame=pts_time", "-of", "csv=p=0", str(target)],
                         capture_output=True, text=True, timeout=timeout_s, check=True)
    return [float(x.strip(",")) for x in out.stdout.split() if x.strip(",")]


class AppProcess:
    """`dreamstream <args>` as a child process, with its output in a file and helpers to talk to it."""

    def __init__(self, args: list[str], logdir: Path, output: Path, env: dict[str, str] | None = None) -> None:
        self.args, self.logdir, self.output_path = args, logdir, output
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> AppProcess:
        self._out = self.output_path.open("ab")
        self.proc = subprocess.Popen([DREAMSTREAM, *self.args, "--logdir", str(self.logdir)], stdout=self._out,
                                     stderr=subprocess.STDOUT, env=self.env)
        return self

    @property
    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def url(self) -> str:
        path = self.logdir / "dashboard.url"
        return wait_for(lambda: path.exists() and path.read_text().strip(), "dashboard.url to be written")

    def get(self, path: str, timeout_s: float = 10) -> bytes:
        with urllib.request.urlopen(self.url() + path.lstrip("/"), timeout=timeout_s) as resp:
            return resp.read()

    def status(self) -> dict[str, Any]:
        return json.loads(self.get("api/status"))

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = PATIENCE_S) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for child in self.children():
                child.kill()
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def app_factory(tmp_path):
    """Start `dreamstream` processes; every one still running at the end is killed with its children."""
    started: list[AppProcess] = []

    def start(args: list[str], logdir: Path, env: dict[str, str] | None = None) -> AppProcess:
        app = AppProcess(args, logdir, tmp_path / f"output-{len(started)}.log", env).start()
        started.append(app)
        return app

    yield start
    for app in started:
        app.kill()
