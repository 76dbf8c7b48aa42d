"""A local RTMP receiver: Debian's nginx with the rtmp module, unprivileged, everything in one folder.

It stands in for Twitch's ingest when testing a broadcast (`dreamstream stream test --target local`),
in the tests, and in benchmarks: it accepts a publisher, records what it receives as FLV, and reports
its state on an HTTP `/stat` page.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from stream.errors import StreamError

__all__ = ["LocalRtmpServer", "free_port"]

log = logging.getLogger(__name__)

MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
CONFIG = """\
load_module {module};
daemon off; master_process off; worker_processes 1;
pid {dir}/nginx.pid; error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;
  application live {{ live on; record all; record_path {dir}/rec; record_unique on;
    record_interval {record_interval_s}s; }} }} }}
http {{ access_log off; client_body_temp_path {dir}/body;
  server {{ listen 127.0.0.1:{http_port}; location /stat {{ rtmp_stat all; }} }} }}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PR_SET_PDEATHSIG = 1
try:  # resolved here, not in the forked child, where loading a library could deadlock
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None  # not Linux: a stale server is still ended by the next start (see _kill_stale)


def _die_with_parent() -> None:
    """In the child before exec: have Linux send SIGTERM when the starting thread dies (e.g. kill -9 of the app)."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class LocalRtmpServer:
    """nginx-rtmp on loopback: `url(key)` to publish to, `recordings(key)` of what arrived, `stat()`."""

    def __init__(self, directory: Path, nginx: str = "nginx", record_interval_s: int = 600) -> None:
        """`record_interval_s`: a new recording file every so often (so old ones can be pruned)."""
        self.directory = Path(directory)
        self.record_interval_s = max(1, int(record_interval_s))
        self.nginx = shutil.which(nginx) or shutil.which(nginx, path="/usr/sbin:/sbin")
        if self.nginx is None or not MODULE.exists():
            raise StreamError("a local RTMP server needs nginx with the rtmp module; install them with "
                              "`apt-get install nginx libnginx-mod-rtmp` (or `make setup`)")
        self.port = self.http_port = 0
        self._proc: subprocess.Popen | None = None
        self._spawner: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self, timeout_s: float = 30.0) -> LocalRtmpServer:
        """Start nginx on free ports and wait until it accepts RTMP connections."""
        for sub in ("rec", "body"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port, self.http_port = free_port(), free_port()
        conf = self.directory / "nginx.conf"
        conf.write_text(CONFIG.format(module=MODULE, dir=self.directory, port=self.port, http_port=self.http_port,
                                      record_interval_s=self.record_interval_s))
        self._kill_stale()
        log_file = (self.directory / "nginx.out").open("ab")
        # Spawned from a thread of our own that lives until stop(): Linux's parent-death signal follows the
        # spawning *thread*, so nginx started again by a supervisor thread would be ended with that thread.
        if self._spawner is None:
            self._spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="local-rtmp-spawner")
        self._proc = self._spawner.submit(
            subprocess.Popen, [self.nginx, "-c", str(conf), "-p", f"{self.directory}/"], stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent).result()
        log_file.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise StreamError(f"nginx exited at start with code {self._proc.returncode}; see "
                                  f"{self.directory / 'error.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    log.debug("local RTMP server on port %d (stat on %d)", self.port, self.http_port)
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise StreamError(f"nginx did not listen on 127.0.0.1:{self.port} within {timeout_s:.0f}s")

    def url(self, key: str = "dreamstream") -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{key}"

    def _kill_stale(self) -> None:
        """End an nginx that a killed earlier session left running on this folder (its pid file says which)."""
        pid_file = self.directory / "nginx.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if b"nginx" in cmdline[0] and str(self.directory).encode() in b" ".join(cmdline):
            log.warning("ending a stale local RTMP server (pid %d) left by an earlier session", pid)
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                return
            for _ in range(50):
                if not _alive(pid):
                    break
                time.sleep(0.1)

    def recordings(self, key: str = "dreamstream") -> list[Path]:
        return sorted((self.directory / "rec").glob(f"{key}-*.flv"), key=lambda p: p.stat().st_mtime)

    def stat(self) -> str:
        """Return nginx-rtmp's XML status page."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/stat", timeout=5) as resp:
            return resp.read().decode()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def keep_running(self, stop: threading.Event, check_s: float = 1.0) -> None:
        """A supervised component: start nginx again (same ports, so publishers reconnect to the same URL) if it
        is not running, then watch it until `stop`; raise when it exits, so the supervisor counts the restart
        and calls this again after its backoff."""
        if not self.is_running():
            code = self._proc.returncode if self._proc is not None else None
            self.start()
            log.warning("local RTMP server started again on port %d (nginx had exited with code %s; see %s)",
                        self.port, code, self.directory / "error.log")
        while not stop.wait(check_s):
            if not self.is_running():
                raise StreamError(f"the local RTMP server (nginx) exited with code {self._proc.returncode}")

    def stop(self) -> None:
        """Stop nginx gracefully (SIGQUIT lets it finish its recordings), then kill it if it lingers."""
        proc, self._proc = self._proc, None
        spawner, self._spawner = self._spawner, None
        try:
            if proc is None or proc.poll() is not None:
                return
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        finally:
            if spawner is not None:  # after nginx has ended: its spawning thread may go now
                spawner.shutdown(wait=False)

    def kill(self) -> None:
        """Kill nginx at once (to test what a crashed ingest does to the stream)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def __enter__(self) -> LocalRtmpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
