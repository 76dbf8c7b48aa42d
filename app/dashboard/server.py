"""Serving the dashboard with uvicorn in a thread, on a socket bound at startup (so a busy port is a
clear error at once, and port 0 picks a free one)."""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn
from fastapi import FastAPI

from app.errors import DreamStreamError

__all__ = ["DashboardServer"]

log = logging.getLogger(__name__)


class DashboardServer:
    """Binds host:port now; `serve(stop)` runs uvicorn until `stop` is set (a supervisor target)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.app = app
        self._sock = self._bind(host, port)
        self.host, self.port = host, self._sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise DreamStreamError(f"dashboard cannot listen on {host}:{port} ({exc.strerror}); set "
                                   "--dashboard.port to a free port (0 picks one)") from None
        sock.listen(128)
        return sock

    def serve(self, stop: threading.Event) -> None:
        if self._sock.fileno() == -1:  # uvicorn closed it when a previous serve() ended: same port again
            self._sock = self._bind(self.host, self.port)
        server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on"))
        finished = threading.Event()

        def watch() -> None:
            while not stop.wait(0.2):
                if finished.is_set():
                    return
            server.should_exit = True

        threading.Thread(target=watch, name="dashboard-stop", daemon=True).start()
        log.info("dashboard at %s", self.url)
        try:
            server.run(sockets=[self._sock])
        finally:
            finished.set()

    def close(self) -> None:
        self._sock.close()
