"""A local fake of Twitch's OAuth, Helix and EventSub WebSocket for driving a real twitchio 3.3.2 client.

`FakeTwitch` runs an aiohttp server on 127.0.0.1 in its own thread (own event loop). `patch(monkeypatch)` points
twitchio's `Route.BASE`, `Route.ID_BASE` and `eventsub.websockets.WSS` at it. Tokens are plain strings: the fake
issues app tokens `app-<n>`, and any `user-<id>` is a valid user access token for user `<id>` with the chat-bot scopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

logger = logging.getLogger(__name__)

BOT_SCOPES = ["user:read:chat", "user:write:chat", "user:bot"]
TOKEN_EXPIRES_S = 5_000_000  # > 3600 s, so twitchio's add_token does not try to refresh right away
CHAT_MESSAGE = "channel.chat.message"
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}


def _now() -> str:
    """The current UTC time in the RFC 3339 form Twitch uses (microseconds, `Z`)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(status: int, message: str) -> web.Response:
    """A Helix-style JSON error."""
    return web.json_response({"error": _REASONS.get(status, "Error"), "status": status, "message": message},
                             status=status)


class FakeTwitch:
    """Runs an aiohttp server on 127.0.0.1 in its own thread with its own event loop."""

    BOT_ID = "1001"
    BOT_LOGIN = "dreambot"
    OWNER_ID = "2002"
    OWNER_LOGIN = "streamer"
    CLIENT_ID = "fake-client-id"
    CLIENT_SECRET = "fake-secret"
    BOT_TOKEN = "user-1001"  # the bot's user access token

    def __init__(self, *, keepalive_interval_s: float = 3.0, user_token_expires_s: int = TOKEN_EXPIRES_S) -> None:
        self.keepalive_interval_s = keepalive_interval_s
        self.user_token_expires_s = user_token_expires_s
        """Life a user token reports when validated; under an hour makes twitchio refresh it at once."""
        self.refreshes = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[str] = []
        self._sent: list[dict[str, Any]] = []
        self._subs: dict[str, dict[str, Any]] = {}  # subscription id -> Helix subscription object (live ones)
        self._sessions: set[str] = set()  # connected websocket session ids
        self._app_tokens: set[str] = set()
        self._users: dict[str, str] = {self.BOT_ID: self.BOT_LOGIN, self.OWNER_ID: self.OWNER_LOGIN}
        self._delivered = 0  # chat notifications written to a websocket
        self._messages: dict[str, tuple[str, str, str]] = {}  # message id -> (user id, login, text), for replies
        self._sockets: dict[str, web.WebSocketResponse] = {}  # only touched on the server loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # ----------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> FakeTwitch:
        """Start the server thread on a free port; returns self."""
        if self._thread is not None:
            raise RuntimeError("FakeTwitch already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(sock, ready, errors), name="FakeTwitch", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("FakeTwitch server did not start within 30 s")
        if errors:
            raise RuntimeError("FakeTwitch server failed to start") from errors[0]
        return self

    def stop(self) -> None:
        """Close every websocket, stop the server and join its thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(15)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
        self._thread = None
        self._loop = None

    def __enter__(self) -> FakeTwitch:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port the server listens on (127.0.0.1)."""
        if self._port is None:
            raise RuntimeError("FakeTwitch not started")
        return self._port

    def patch(self, monkeypatch: Any) -> None:
        """Point twitchio's Helix, OAuth and EventSub WebSocket URLs at this server."""
        import twitchio.eventsub.websockets as tws
        import twitchio.http

        monkeypatch.setattr(twitchio.http.Route, "BASE", f"http://127.0.0.1:{self.port}/helix/")
        monkeypatch.setattr(twitchio.http.Route, "ID_BASE", f"http://127.0.0.1:{self.port}/")
        monkeypatch.setattr(tws, "WSS", f"ws://127.0.0.1:{self.port}/ws")

    # ----------------------------------------------------------------------------------------- test-thread API

    @property
    def requests(self) -> list[str]:
        """`METHOD /path` of every HTTP request received (websocket upgrades included), in order."""
        with self._lock:
            return list(self._requests)

    @property
    def sent(self) -> list[dict[str, Any]]:
        """The JSON bodies POSTed to /helix/chat/messages so far, in order."""
        with self._lock:
            return [dict(body) for body in self._sent]

    @property
    def subscriptions(self) -> list[dict[str, Any]]:
        """The live EventSub subscriptions (Helix objects)."""
        with self._lock:
            return [json.loads(json.dumps(sub)) for sub in self._subs.values()]

    def wait_subscribed(self, timeout_s: float = 60) -> None:
        """Block until a connected websocket session holds a channel.chat.message subscription."""
        with self._changed:
            if self._changed.wait_for(lambda: bool(self._chat_sessions_locked(None)), timeout_s):
                return
            raise AssertionError(f"FakeTwitch: no {CHAT_MESSAGE} subscription on a connected websocket after "
                                 f"{timeout_s:g} s.\n{self._describe_locked()}")

    def wait_sent(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 60) -> dict[str, Any]:
        """Block until a body POSTed to /helix/chat/messages satisfies `predicate`; return it."""
        found: list[dict[str, Any]] = []

        def check() -> bool:
            for body in self._sent:
                if predicate(body):
                    found.append(dict(body))
                    return True
            return False

        with self._changed:
            if self._changed.wait_for(check, timeout_s):
                return found[0]
            raise AssertionError(f"FakeTwitch: no matching chat message was sent within {timeout_s:g} s.\n"
                                 f"{self._describe_locked()}")

    def send_chat(self, text: str, *, user_id: str = "3003", login: str = "viewer", badges: list[dict] | None = None,
                  message_id: str | None = None, reply_to: str | None = None,
                  source_broadcaster_id: str | None = None) -> str:
        """Push a channel.chat.message notification to every session holding the subscription; return message_id.

        `reply_to`: the id of a message sent before (by `send_chat` or by the bot), for a threaded reply; Twitch's
        web client then starts the text with "@parent_login ". `source_broadcaster_id`: a shared chat session's
        field (the channel the message was sent from)."""
        return self._call(self._chat_event(text, user_id=str(user_id), login=login, badges=badges,
                                           message_id=message_id, reply_to=reply_to,
                                           source_broadcaster_id=source_broadcaster_id))

    async def _chat_event(self, text: str, *, user_id: str, login: str, badges: list[dict] | None,
                          message_id: str | None, reply_to: str | None, source_broadcaster_id: str | None) -> str:
        message_id = message_id or str(uuid.uuid4())
        with self._lock:
            self._users.setdefault(user_id, login)
            self._messages[message_id] = (user_id, self._users[user_id], text)
            parent = self._messages.get(reply_to) if reply_to else None
        reply = None
        if parent is not None:
            parent_id, parent_login, parent_text = parent
            reply = {"parent_message_id": reply_to, "parent_message_body": parent_text, "parent_user_id": parent_id,
                     "parent_user_login": parent_login, "parent_user_name": parent_login,
                     "thread_message_id": reply_to, "thread_user_id": parent_id, "thread_user_login": parent_login,
                     "thread_user_name": parent_login}
        source_login = self._users.get(source_broadcaster_id, "other") if source_broadcaster_id else None
        event = {
            "broadcaster_user_id": self.OWNER_ID,
            "broadcaster_user_login": self.OWNER_LOGIN,
            "broadcaster_user_name": self.OWNER_LOGIN,
            "chatter_user_id": user_id,
            "chatter_user_login": login,
            "chatter_user_name": login,
            "message_id": message_id,
            "message": {
                "text": text,
                "fragments": [{"type": "text", "text": text, "cheermote": None, "emote": None, "mention": None}],
            },
            "color": "#1E90FF",
            "badges": list(badges or []),
            "message_type": "text",
            "cheer": None,
            "reply": reply,
            "channel_points_custom_reward_id": None,
            "channel_points_animation_id": None,
            "source_broadcaster_user_id": source_broadcaster_id,
            "source_broadcaster_user_login": source_login,
            "source_broadcaster_user_name": source_login,
            "source_message_id": message_id if source_broadcaster_id else None,
            "source_badges": [] if source_broadcaster_id else None,
            "is_source_only": None,
        }
        await self._deliver_chat(event)
        return message_id

    def send_raw(self, data: str) -> None:
        """Push an arbitrary text frame to every connected websocket."""
        self._call(self._push_raw(data))

    def reconnect_sockets(self) -> None:
        """Send every EventSub websocket a `session_reconnect`, as Twitch does before maintenance: the client
        connects to the reconnect URL, its subscriptions move to the new session, then it closes the old one."""
        async def reconnect() -> None:
            for session_id, ws in list(self._sockets.items()):
                session = {"id": session_id, "status": "reconnecting", "connected_at": _now(),
                           "keepalive_timeout_seconds": None, "recovery_url": None,
                           "reconnect_url": f"{self._ws_base}?reconnect_from={session_id}"}
                await ws.send_str(self._envelope("session_reconnect", {"session": session}))
        self._call(reconnect())

    def close_sockets(self, code: int) -> None:
        """Close every EventSub websocket with `code` (4003: "connection unused", after which clients give up)."""
        async def close() -> None:
            for ws in list(self._sockets.values()):
                await ws.close(code=code, message=b"closed by the test")
        self._call(close())

    # ------------------------------------------------------------------------------------------------ internals

    def _call(self, coro: Any) -> Any:
        """Run a coroutine on the server loop from another thread and wait for it."""
        if self._loop is None or not self._loop.is_running():
            coro.close()
            raise RuntimeError("FakeTwitch is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    def _chat_sessions_locked(self, broadcaster_id: str | None) -> list[tuple[str, dict[str, Any]]]:
        """(session id, subscription) for live chat subscriptions on connected sessions. Hold the lock."""
        out = []
        for sub in self._subs.values():
            session_id = sub["transport"].get("session_id")
            if sub["type"] != CHAT_MESSAGE or session_id not in self._sessions:
                continue
            if broadcaster_id is None or sub["condition"].get("broadcaster_user_id") == broadcaster_id:
                out.append((session_id, sub))
        return out

    def _describe_locked(self) -> str:
        """State summary for assertion messages. Hold the lock."""
        subs = [f"{s['type']} {s['condition']} session={s['transport'].get('session_id')}" for s in self._subs.values()]
        return (f"  connected websocket sessions: {sorted(self._sessions) or 'none'}\n"
                f"  live subscriptions: {subs or 'none'}\n"
                f"  chat notifications delivered: {self._delivered}\n"
                f"  chat messages sent: {self._sent or 'none'}\n"
                f"  last requests: {self._requests[-30:] or 'none'}")

    def _run(self, sock: socket.socket, ready: threading.Event, errors: list[BaseException]) -> None:
        """Thread body: start the server, serve until stopped, then clean up."""
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as exc:
            errors.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._shutdown())
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/oauth2/token", self._token)
        app.router.add_get("/oauth2/validate", self._validate)
        app.router.add_post("/oauth2/revoke", self._revoke)
        app.router.add_get("/helix/users", self._get_users)
        app.router.add_post("/helix/eventsub/subscriptions", self._create_sub)
        app.router.add_get("/helix/eventsub/subscriptions", self._list_subs)
        app.router.add_delete("/helix/eventsub/subscriptions", self._delete_sub)
        app.router.add_post("/helix/chat/messages", self._chat_message)
        app.router.add_get("/ws", self._websocket)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def _shutdown(self) -> None:
        for ws in list(self._sockets.values()):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"server shutting down")
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        with self._changed:
            self._requests.append(f"{request.method} {request.path}")
            self._changed.notify_all()
        return await handler(request)

    def _bearer(self, request: web.Request) -> str | None:
        """The user id ('' for an app token) behind the request's Bearer token, or None if it is not valid."""
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").removeprefix("OAuth ").strip()
        return self._token_owner(token)

    def _token_owner(self, token: str) -> str | None:
        """The user id behind a token ('' for an app token), or None if the fake never issued it."""
        if token.startswith("user-") and token[5:].isdigit():
            return token[5:]
        with self._lock:
            return "" if token in self._app_tokens else None

    def _user_obj(self, user_id: str, login: str) -> dict[str, Any]:
        return {"id": user_id, "login": login, "display_name": login, "type": "", "broadcaster_type": "",
                "description": "", "profile_image_url": f"https://static-cdn.jtvnw.net/user-{user_id}.png",
                "offline_image_url": "", "view_count": 0, "created_at": "2020-01-01T00:00:00Z"}

    # ---------------------------------------------------------------------------------------------------- OAuth

    async def _token(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.can_read_body:
            params.update(await request.post())
        grant = params.get("grant_type")
        if params.get("client_id") != self.CLIENT_ID:
            return web.json_response({"status": 400, "message": "invalid client"}, status=400)
        if grant == "client_credentials":
            if params.get("client_secret") != self.CLIENT_SECRET:
                return web.json_response({"status": 403, "message": "invalid client secret"}, status=403)
            with self._lock:
                token = f"app-{len(self._app_tokens) + 1}"
                self._app_tokens.add(token)
            return web.json_response({"access_token": token, "expires_in": TOKEN_EXPIRES_S, "token_type": "bearer"})
        if grant == "refresh_token":
            refresh = str(params.get("refresh_token", ""))
            tail = refresh.rsplit("-", 1)[-1]
            if not refresh.startswith("refresh-") or not tail.isdigit():  # as Twitch: only tokens it issued
                return web.json_response({"status": 400, "message": "Invalid refresh token"}, status=400)
            user_id = tail
            self.refreshes += 1  # the refreshed token is a fresh one: it validates with a long life
            return web.json_response({"access_token": f"user-{user_id}", "refresh_token": f"refresh-{user_id}",
                                      "expires_in": TOKEN_EXPIRES_S, "scope": BOT_SCOPES, "token_type": "bearer"})
        return web.json_response({"status": 400, "message": f"unsupported grant_type {grant!r}"}, status=400)

    async def _validate(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("OAuth ").removeprefix("Bearer ").strip()
        owner = self._token_owner(token)
        if owner is None:
            return web.json_response({"status": 401, "message": "invalid access token"}, status=401)
        if owner == "":
            return web.json_response({"client_id": self.CLIENT_ID, "scopes": [], "expires_in": TOKEN_EXPIRES_S})
        with self._lock:
            login = self._users.setdefault(owner, f"user{owner}")
        expires_s = TOKEN_EXPIRES_S if self.refreshes else self.user_token_expires_s
        return web.json_response({"client_id": self.CLIENT_ID, "login": login, "scopes": BOT_SCOPES,
                                  "user_id": owner, "expires_in": expires_s})

    async def _revoke(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    # ----------------------------------------------------------------------------------------------------- Helix

    async def _get_users(self, request: web.Request) -> web.Response:
        owner = self._bearer(request)
        if owner is None:
            return _error(401, "Invalid OAuth token")
        ids = [i for v in request.query.getall("id", []) for i in v.split("+") if i]
        logins = [x.lower() for v in request.query.getall("login", []) for x in v.split("+") if x]
        if not ids and not logins:
            if not owner:
                return _error(400, "Missing required parameter: id or login (an app token has no user)")
            ids = [owner]
        data: list[dict[str, Any]] = []
        with self._lock:
            for user_id in ids:
                data.append(self._user_obj(user_id, self._users.setdefault(user_id, f"user{user_id}")))
            by_login = {login: uid for uid, login in self._users.items()}
            for login in logins:
                user_id = by_login.get(login)
                if user_id is None:  # invent a stable id for an unknown login
                    user_id = str(900_000 + len(self._users))
                    self._users[user_id] = login
                if user_id not in ids:
                    data.append(self._user_obj(user_id, login))
        return web.json_response({"data": data})

    async def _create_sub(self, request: web.Request) -> web.Response:
        owner = self._bearer(request)
        if owner is None:
            return _error(401, "Invalid OAuth token")
        try:
            body = await request.json()
            sub_type, version = body["type"], str(body["version"])
            condition, transport = dict(body["condition"]), dict(body["transport"])
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"malformed subscription request: {exc!r}")
        if transport.get("method") != "websocket":
            return _error(400, f"FakeTwitch only supports the websocket transport, got {transport.get('method')!r}")
        if not owner:
            return _error(400, "websocket transport requires a user access token, got an app access token")
        session_id = transport.get("session_id")
        with self._changed:
            if session_id not in self._sessions:
                return _error(400, f"websocket transport session {session_id!r} does not exist or has disconnected")
            if sub_type == CHAT_MESSAGE and condition.get("user_id") != owner:
                return _error(403, f"condition user_id {condition.get('user_id')!r} does not match token user {owner}")
            for sub in self._subs.values():
                if (sub["type"], sub["version"], sub["condition"], sub["transport"].get("session_id")) == (
                        sub_type, version, condition, session_id):
                    return _error(409, f"subscription already exists id={sub['id']}")
            sub = {"id": str(uuid.uuid4()), "status": "enabled", "type": sub_type, "version": version,
                   "condition": condition, "created_at": _now(), "cost": 0,
                   "transport": {"method": "websocket", "session_id": session_id, "connected_at": _now()}}
            self._subs[sub["id"]] = sub
            self._changed.notify_all()
            total = len(self._subs)
        return web.json_response({"data": [sub], "total": total, "total_cost": 0, "max_total_cost": 10}, status=202)

    async def _list_subs(self, request: web.Request) -> web.Response:
        if self._bearer(request) is None:
            return _error(401, "Invalid OAuth token")
        want_type, want_status = request.query.get("type"), request.query.get("status")
        with self._lock:
            data = [s for s in self._subs.values()
                    if (want_type is None or s["type"] == want_type) and (want_status in (None, s["status"]))]
            data = json.loads(json.dumps(data))
        return web.json_response({"data": data, "total": len(data), "total_cost": 0, "max_total_cost": 10,
                                  "pagination": {}})

    async def _delete_sub(self, request: web.Request) -> web.Response:
        if self._bearer(request) is None:
            return _error(401, "Invalid OAuth token")
        with self._changed:
            if self._subs.pop(request.query.get("id", ""), None) is None:
                return _error(404, "subscription not found")
            self._changed.notify_all()
        return web.Response(status=204)

    async def _chat_message(self, request: web.Request) -> web.Response:
        owner = self._bearer(request)
        if owner is None:
            return _error(401, "Invalid OAuth token")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "body is not JSON")
        if not isinstance(body, dict) or not body.get("broadcaster_id") or not body.get("sender_id"):
            return _error(400, f"missing broadcaster_id/sender_id in {body!r}")
        if owner and str(body["sender_id"]) != owner:
            return _error(401, f"sender_id {body['sender_id']!r} must match the token's user id {owner}")
        message_id = str(uuid.uuid4())
        resp = web.json_response({"data": [{"message_id": message_id, "is_sent": True, "drop_reason": None}]})
        await resp.prepare(request)  # answer before recording, so a test that closes the client right after
        await resp.write_eof()  # wait_sent() does not cut the reply off mid-flight
        # As Twitch does, the sent message comes back to every chat subscription as the sender's own message.
        sender = str(body["sender_id"])
        await self._chat_event(str(body.get("message", "")), user_id=sender, login=self._users.get(sender, "bot"),
                               badges=None, message_id=message_id, reply_to=body.get("reply_parent_message_id"),
                               source_broadcaster_id=None)
        with self._changed:
            self._sent.append(body)
            self._changed.notify_all()
        return resp

    async def _unknown(self, request: web.Request) -> web.Response:
        logger.warning("FakeTwitch: unhandled %s %s", request.method, request.path_qs)
        return _error(404, f"FakeTwitch does not implement {request.method} {request.path}")

    # ------------------------------------------------------------------------------------------------ WebSocket

    def _envelope(self, message_type: str, payload: dict[str, Any], **extra: str) -> str:
        metadata = {"message_id": str(uuid.uuid4()), "message_type": message_type, "message_timestamp": _now(), **extra}
        return json.dumps({"metadata": metadata, "payload": payload})

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        try:
            keepalive = max(10, min(int(request.query.get("keepalive_timeout_seconds", "10")), 600))
        except ValueError:
            keepalive = 10
        session_id = f"fake-session-{uuid.uuid4().hex}"
        self._ws_base = str(request.url.with_query(None))
        self._sockets[session_id] = ws
        moved_from = request.query.get("reconnect_from")
        if moved_from:  # a reconnect keeps the old session's subscriptions
            with self._changed:
                for sub in self._subs.values():
                    if sub["transport"].get("session_id") == moved_from:
                        sub["transport"]["session_id"] = session_id
        session = {"id": session_id, "status": "connected", "connected_at": _now(),
                   "keepalive_timeout_seconds": keepalive, "reconnect_url": None, "recovery_url": None}
        await ws.send_str(self._envelope("session_welcome", {"session": session}))
        with self._changed:
            self._sessions.add(session_id)
            self._changed.notify_all()
        pinger = asyncio.create_task(self._keepalive(ws))
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    logger.warning("FakeTwitch: client sent a websocket message; closing with 4001 like Twitch")
                    await ws.close(code=4001, message=b"client sent inbound traffic")
                    break
        finally:
            pinger.cancel()
            self._sockets.pop(session_id, None)
            with self._changed:
                self._sessions.discard(session_id)
                for sub_id in [k for k, s in self._subs.items() if s["transport"].get("session_id") == session_id]:
                    del self._subs[sub_id]  # Twitch drops websocket subscriptions when the session ends
                self._changed.notify_all()
        return ws

    async def _keepalive(self, ws: web.WebSocketResponse) -> None:
        while not ws.closed:
            await asyncio.sleep(self.keepalive_interval_s)
            try:
                await ws.send_str(self._envelope("session_keepalive", {}))
            except Exception:
                return

    async def _deliver_chat(self, event: dict[str, Any]) -> int:
        with self._lock:
            targets = [(sid, json.loads(json.dumps(sub))) for sid, sub in self._chat_sessions_locked(self.OWNER_ID)]
        delivered = 0
        for session_id, sub in targets:
            ws = self._sockets.get(session_id)
            if ws is None or ws.closed:
                continue
            sub["transport"].pop("connected_at", None)
            frame = self._envelope("notification", {"subscription": sub, "event": event},
                                   subscription_type=CHAT_MESSAGE, subscription_version=sub["version"])
            with contextlib.suppress(Exception):
                await ws.send_str(frame)
                delivered += 1
        with self._changed:
            self._delivered += delivered
            self._changed.notify_all()
        if not delivered:
            logger.warning("FakeTwitch: chat message %r reached no websocket (no live subscription)", event["message"])
        return delivered

    async def _push_raw(self, data: str) -> int:
        delivered = 0
        for ws in list(self._sockets.values()):
            with contextlib.suppress(Exception):
                await ws.send_str(data)
                delivered += 1
        return delivered

