"""FastAPI app of the dashboard: one router per area, no module-level app or hidden state.

Status page, JSON status, recent episodes and events, the run's learning curves, a preview of the broadcast
frame, and the local chat
box (the operator chats and runs polls with the same commands as viewers), and the operator's controls
(checkpoint now, roll back, pause and resume learning).
"""

from __future__ import annotations

import collections
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker
from starlette.middleware.trustedhost import TrustedHostMiddleware

from app import __version__
from app.chat import ChatHub, Message
from app.history import as_csv
from app.settings import DashboardConfig
from app.storage import history_rows, recent_episodes, recent_events

__all__ = ["DashboardServices", "create_app", "health_problems"]

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TOKEN_COOKIE = "dreamstream_token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
AUTH_LOG_EVERY_S = 60.0


@dataclass(frozen=True)
class DashboardServices:
    """What the dashboard reads from the running app, passed in rather than imported."""

    status: Callable[[], dict[str, Any]]
    """Snapshot of counters, components and stream health as plain data."""
    frame_jpeg: Callable[[], bytes | None]
    """The latest broadcast frame as JPEG, or None before the first."""
    sessions: sessionmaker[Session] | None = None
    run_id: int | None = None
    hls_dir: Path | None = None
    """Folder of the live HLS playlist (index.m3u8) the preview plays, when the stream writes one."""
    chat: ChatHub | None = None
    """The chat hub, when the local chat box is on."""
    control: Callable[[str, int | None], tuple[bool, str]] | None = None
    """The operator's controls: control(action, checkpoint step or None) -> (done or started, message)."""
    curves: Callable[[], dict[str, dict[str, Any]]] | None = None
    """The whole run's learning curves: {title: {steps, values, per_point, count}}."""


class ChatPost(BaseModel):
    text: str = Field(min_length=1, max_length=500)


class ControlPost(BaseModel):
    step: int | None = Field(default=None, ge=0)
    """For a rollback: the checkpoint to go back to (default: the best-scored one)."""


def _require_same_site_json(request: Request, example: str) -> None:
    """Refuse a state-changing post that another site could have sent (CSRF): a JSON body cannot come from a
    plain cross-site form, and a browser's fetch carries an Origin that must name this dashboard."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(status_code=415, detail=f"send JSON: {example}")
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
        raise HTTPException(status_code=403, detail="cross-site posts are refused")


def _auth(token: str) -> Callable[[Request], None]:
    """The token check (constant time). Wrong tokens are not locked out (a stale tab, or every client behind one
    proxy address, would lock the operator out; a token of 16+ characters cannot be guessed anyway) but told
    in the log, at most once a minute per address."""
    told: collections.OrderedDict[str, tuple[float, int]] = collections.OrderedDict()
    lock = threading.Lock()

    def check(request: Request) -> None:
        if not token:
            return
        # Any one that matches: a cookie left from before a token change must not shadow the new ?token= (the 401
        # came before the page could replace the cookie, and JavaScript cannot clear an HttpOnly one).
        header = request.headers.get("authorization", "")
        offered = [header[7:] if header.lower().startswith("bearer ") else "",
                   request.query_params.get("token") or "", request.cookies.get(TOKEN_COOKIE) or ""]
        if any(hmac.compare_digest(candidate.encode(), token.encode()) for candidate in offered if candidate):
            return
        given = next((candidate for candidate in offered if candidate), "")
        if given:  # a page opened without the token yet is no guess
            client, now = request.client.host if request.client is not None else "?", time.monotonic()
            with lock:
                since, count = told.pop(client, (-AUTH_LOG_EVERY_S, 0))
                count += 1
                if now - since >= AUTH_LOG_EVERY_S:
                    log.warning("dashboard: %d request(s) with a wrong token from %s (a stale tab after a token "
                                "change, or someone guessing)", count, client)
                    since, count = now, 0
                told[client] = (since, count)
                while len(told) > 1000:
                    told.popitem(last=False)
        raise HTTPException(status_code=401, detail="missing or wrong dashboard token",
                            headers={"WWW-Authenticate": "Bearer"})
    return check


def health_problems(status: dict[str, Any]) -> list[str]:
    """What an operator must look at, from a status snapshot: a stream not live, a component not running (a
    crash loop), a Twitch chat bot that is not connected, low disk, lost metrics, a stopping app."""
    problems = []
    if status.get("stopping"):
        problems.append("the app is stopping")
    stream = status.get("stream") or {}
    if stream and stream.get("state") in ("reconnecting", "stopped"):
        problems.append(f"stream {stream['state']}" + (f": {stream['last_error']}" if stream.get("last_error") else ""))
    for name, comp in (status.get("components") or {}).items():
        if comp.get("state") != "running":
            problems.append(f"component {name} {comp.get('state')}"
                            + (f": {comp['last_error']}" if comp.get("last_error") else ""))
    twitch = (status.get("chat") or {}).get("twitch")
    if twitch and not twitch.get("connected", True):
        problems.append("the Twitch chat bot is not connected")
    if (status.get("disk") or {}).get("low"):
        problems.append(f"disk low: {status['disk'].get('free_gb', 0):.1f} GB free")
    metrics = status.get("metrics") or {}
    if metrics.get("write_errors"):
        problems.append(f"{metrics['write_errors']} metrics rows not written (full disk?)")
    return problems


def _status_router(services: DashboardServices) -> APIRouter:
    router = APIRouter(prefix="/api")

    @router.get("/status")
    def status() -> dict[str, Any]:
        snapshot = services.status()
        return {**snapshot, "problems": health_problems(snapshot)}

    @router.get("/health")
    def health(response: Response) -> dict[str, Any]:
        """For an uptime monitor (with the token, when one is set): 503 and the problems when something is wrong.
        `/healthz` only says that the dashboard answers."""
        problems = health_problems(services.status())
        if problems:
            response.status_code = 503
        return {"status": "degraded" if problems else "ok", "problems": problems}

    @router.get("/episodes")
    def episodes(limit: int = 20, before_id: int | None = None,
                 mode: Literal["train", "eval"] | None = None) -> list[dict[str, Any]]:
        """The run's episodes, newest first; page back with `before_id` (the last id of the previous page)."""
        if services.sessions is None or services.run_id is None:
            return []
        with services.sessions() as session:
            return [{"id": e.id, "env_id": e.env_id, "mode": e.mode, "score": e.score, "length": e.length,
                     "result": e.result, "opponent": e.opponent, "env_step": e.env_step,
                     "ended_at": e.ended_at.isoformat(), "details": e.details}
                    for e in recent_episodes(session, services.run_id, min(max(limit, 1), 500), before_id=before_id,
                                             mode=mode)]

    @router.get("/history.csv")
    def history(mode: Literal["train", "eval"] | None = None) -> Response:
        """Every episode in the database as CSV (streamed: a weeks-long run has hundreds of thousands)."""
        if services.sessions is None:
            raise HTTPException(status_code=404, detail="no database")
        sessions = services.sessions

        def lines():
            with sessions() as session:
                yield from as_csv(history_rows(session, run_id=services.run_id, mode=mode))

        return StreamingResponse(lines(), media_type="text/csv", headers={
            "Content-Disposition": 'attachment; filename="dreamstream-history.csv"', "Cache-Control": "no-store"})

    @router.get("/events")
    def events(limit: int = 20) -> list[dict[str, Any]]:
        if services.sessions is None or services.run_id is None:
            return []
        with services.sessions() as session:
            return [{"id": e.id, "at": e.at.isoformat(), "kind": e.kind, "message": e.message,
                     "env_step": e.env_step} for e in recent_events(session, services.run_id, min(max(limit, 1), 500))]

    @router.get("/curves")
    def curves() -> dict[str, dict[str, Any]]:
        return services.curves() if services.curves is not None else {}

    @router.get("/frame.jpg")
    def frame() -> Response:
        data = services.frame_jpeg()
        if data is None:
            raise HTTPException(status_code=404, detail="no frame yet")
        return Response(content=data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    return router


def _pages_router(templates: Jinja2Templates, cfg: DashboardConfig) -> APIRouter:
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse)
    def index(request: Request) -> Response:
        token = request.query_params.get("token")
        if cfg.token and token:
            if not hmac.compare_digest(token.encode(), cfg.token.encode()):
                # passed on a good cookie: an old bookmark's token must not replace it (every later call: 401)
                return templates.TemplateResponse(request, "status.html", {"version": __version__})
            # The cookie, then the page without the token in the address bar (a streamer may show the browser;
            # it would also stay in the history).
            response = RedirectResponse("./", status_code=303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response
        return templates.TemplateResponse(request, "status.html", {"version": __version__})

    return router


def create_app(cfg: DashboardConfig, services: DashboardServices) -> FastAPI:
    """Return the dashboard app bound to `services`."""
    app = FastAPI(title="DreamStream dashboard", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    if cfg.host in LOOPBACK_HOSTS:
        # Bound to loopback without a token, the dashboard trusts whoever reaches it, so it answers only to
        # loopback names: a web page elsewhere cannot reach it by DNS rebinding (its Host header is foreign).
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])
    templates = Jinja2Templates(directory=str(TEMPLATES))
    auth = [Depends(_auth(cfg.token))]

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(_pages_router(templates, cfg), dependencies=auth)
    app.include_router(_status_router(services), dependencies=auth)
    if services.chat is not None:
        app.include_router(_chat_router(services.chat), dependencies=auth)
    if services.control is not None:
        app.include_router(_control_router(services.control), dependencies=auth)
    if services.hls_dir is not None:
        app.include_router(_hls_router(services.hls_dir), dependencies=auth)
    return app


def _hls_router(directory: Path) -> APIRouter:
    """Serve the live HLS playlist and its segments (only those two kinds of file, never anything else)."""
    router = APIRouter(prefix="/hls")
    media = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}

    @router.get("/{name}")
    def hls(name: str) -> Response:
        path = directory / name
        if "/" in name or path.suffix not in media or not path.is_file():
            raise HTTPException(status_code=404, detail="no such HLS file")
        try:
            content = path.read_bytes()
        except FileNotFoundError:  # deleted between the check and the read (ffmpeg's rotation, an encoder restart)
            raise HTTPException(status_code=404, detail="no such HLS file") from None
        return Response(content=content, media_type=media[path.suffix], headers={"Cache-Control": "no-store"})

    return router


def _chat_router(hub: ChatHub) -> APIRouter:
    """The local chat box: read the chat log and the poll; post as the operator (a moderator in chat)."""
    router = APIRouter(prefix="/api")

    @router.get("/chat")
    def chat(after: int = 0) -> dict[str, Any]:
        poll = hub.poll()
        return {"boot": hub.boot, "lines": hub.history(after),
                "poll": None if poll is None else {"question": poll.question, "votes": poll.votes,
                                                   "seconds_left": round(poll.seconds_left, 1)}}

    @router.post("/chat")
    def post(body: ChatPost, request: Request) -> dict[str, Any]:
        _require_same_site_json(request, '{"text": "..."}')  # no foreign page may chat as the operator
        message = Message(user_id="operator", login="operator", text=body.text, roles=frozenset({"operator"}))
        replies, limited = hub.submit_checked(message, "local")
        return {"replies": [r.text for r in replies], "rate_limited": limited}

    return router


def _control_router(control: Callable[[str, int | None], tuple[bool, str]]) -> APIRouter:
    """The operator's controls: checkpoint now (scored first), roll back, pause or resume learning."""
    router = APIRouter(prefix="/api")

    @router.post("/control/{action}")
    def post(action: str, body: ControlPost, request: Request) -> dict[str, Any]:
        _require_same_site_json(request, "{} or {\"step\": N}")
        done, message = control(action, body.step)
        if not done:
            raise HTTPException(status_code=409, detail=message)
        return {"ok": True, "message": message}

    return router
