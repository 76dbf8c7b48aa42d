"""The Twitch transport: a twitchio 3 client (EventSub WebSocket in, Helix out) feeding the chat hub.

It runs as a supervised component with its own event loop: a failed login, a dropped socket or a Twitch
outage ends `run` with an error and the supervisor restarts it with backoff, while training and the
stream go on. Every message goes through `ChatHub.submit`, which never raises; replies are sent as the
bot, threaded to the viewer's message. Secrets (client secret, bot token) come from the environment and
are never logged; tokens are neither read from nor written to `.tio.tokens.json`.

Bot account set-up (once): register an application at dev.twitch.tv (client id and secret), and make a
user access token for the bot account with the scopes `user:read:chat user:write:chat user:bot`; the
broadcaster makes the bot a moderator (or grants `channel:bot`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from typing import Any

from app.chat.core import Message
from app.chat.hub import ChatHub
from app.settings import ChatConfig

__all__ = ["ChatSetupError", "TwitchChat", "describe", "roles_of"]

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 10.0
DEAF_AFTER_S = 60.0
"""Without a chat subscription on a live EventSub socket for this long, the component starts over."""


class ChatSetupError(RuntimeError):
    """A set-up problem told in our own words (its text is safe to log)."""


def describe(exc: BaseException) -> str:
    """An exception from twitchio in words safe to log: its text may quote a URL with the client secret or a
    token in its query, so only the type and the HTTP status are kept."""
    if isinstance(exc, ChatSetupError):
        return str(exc)
    status = getattr(exc, "status", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")


def roles_of(chatter: Any) -> frozenset[str]:
    """The chat core's roles of a twitchio `Chatter` (from the message's badges)."""
    return frozenset(role for role in ("broadcaster", "moderator", "vip", "subscriber")
                     if getattr(chatter, role, False))


class TwitchChat:
    """Connects the hub to one Twitch channel's chat; `run(stop)` is the supervised component."""

    def __init__(self, cfg: ChatConfig, hub: ChatHub) -> None:
        self.cfg = cfg
        self.hub = hub
        self.connected = False
        self.received = 0
        self.sent = 0
        self.send_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "channel": self.cfg.channel, "received": self.received,
                "sent": self.sent, "send_errors": self.send_errors}

    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._main(stop))

    async def _main(self, stop: threading.Event) -> None:
        client = _client_class()(self)
        self._client, self._loop = client, asyncio.get_running_loop()
        task = asyncio.create_task(client.start(with_adapter=False, load_tokens=False, save_tokens=False))
        self.hub.add_announcer("twitch", self.say)
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set() and not task.done():
                await asyncio.sleep(0.2)
                # twitchio reconnects a dropped socket by itself, but gives up for good on some closes (4003
                # "unused", a revoked subscription) while its client keeps running: start over after a while.
                if client.channel_id and client.deaf_since is None and client.listener_died():
                    client._deaf("the EventSub listener stopped (connection lost, or a frame twitchio cannot read)")
                if client.deaf_since is not None and loop.time() - client.deaf_since > DEAF_AFTER_S:
                    raise ChatSetupError(f"no Twitch chat subscription for {DEAF_AFTER_S:.0f} s; logging in again")
            if task.done():
                exc = task.exception()
                raise ChatSetupError(f"the Twitch chat client stopped: {describe(exc)}" if exc else
                                     "the Twitch chat client stopped") from None
        finally:
            self.hub.remove_announcer("twitch")
            self.connected = False
            await client.close()
            if not task.done():
                task.cancel()

    def say(self, text: str) -> None:
        """Send an announcement from another thread (the hub's poll timer); never blocks it."""
        loop, client = self._loop, self._client
        if loop is None or client is None or not self.connected or loop.is_closed():
            return
        send = client.send(text, "")
        try:
            asyncio.run_coroutine_threadsafe(send, loop)
        except RuntimeError:  # the loop closed just now: this announcement is lost, nothing else
            send.close()


def _client_class():
    """Build the twitchio client class on first use (twitchio is imported only when Twitch chat is on)."""
    import twitchio
    from twitchio import eventsub

    class _Client(twitchio.Client):
        def __init__(self, owner: TwitchChat) -> None:
            super().__init__(client_id=owner.cfg.client_id, client_secret=owner.cfg.client_secret)
            self.owner = owner
            self.bot_user_id = ""
            self.channel_id = ""
            self.deaf_since: float | None = None
            """Loop time since which no socket holds our chat subscription (None: listening)."""
            self.echoes: collections.deque[str] = collections.deque(maxlen=64)
            """Texts the bot sent, not yet seen back: when the bot is the broadcaster's own account, these tell
            its echoed replies apart from the broadcaster's commands (both come from the same user id)."""

        async def setup_hook(self) -> None:
            cfg = self.owner.cfg
            try:
                validated = await self.add_token(cfg.bot_token, cfg.bot_refresh_token)
            except Exception as exc:  # its text may quote the token: only the type is told, never chained
                raise ChatSetupError(f"Twitch refused the bot token (TWITCH_BOT_TOKEN): {describe(exc)}; make a "
                                     "user token for the bot with the scopes user:read:chat user:write:chat user:bot "
                                     "for chat.client_id") from None
            self.bot_user_id = str(validated.user_id)
            users = await self.fetch_users(logins=[cfg.channel.lower()])
            if not users:
                raise ChatSetupError(f"chat.channel = {cfg.channel!r}: no such Twitch channel")
            self.channel_id = str(users[0].id)
            await self.subscribe_websocket(payload=eventsub.ChatMessageSubscription(
                broadcaster_user_id=self.channel_id, user_id=self.bot_user_id), token_for=self.bot_user_id)
            self.owner.connected = True
            log.info("Twitch chat: joined #%s as user %s", cfg.channel, self.bot_user_id)
            if self.bot_user_id == self.channel_id:
                log.info("Twitch chat: the bot posts as the broadcaster's own account; the broadcaster's commands "
                         "are still read (a separate bot account makes the bot's replies easier to tell apart)")

        async def event_websocket_welcome(self, payload: Any) -> None:
            if self.channel_id:  # a reconnect: twitchio subscribes the new session again
                self.owner.connected, self.deaf_since = True, None

        async def event_websocket_closed(self, payload: Any) -> None:
            closed = getattr(payload, "socket", None)
            others = [socket for pair in list(getattr(self, "_websockets", {}).values())
                      for socket in list(pair.values()) if socket is not closed]
            if any(getattr(socket, "connected", False) for socket in others):
                # Twitch's session_reconnect: twitchio opened the new socket (its welcome came first), then closed
                # this one; chat goes on. Marking it deaf made say() drop announcements and forced a re-login.
                log.debug("Twitch chat: an old EventSub socket closed after a reconnect")
                return
            self._deaf("the EventSub socket closed")

        async def event_subscription_revoked(self, payload: Any) -> None:
            self._deaf("Twitch revoked the chat subscription")

        def listener_died(self) -> bool:
            """True when a socket's listener task has ended while the socket stays registered.

            twitchio 3.3's listener ends for good on a JSON frame without `metadata` (a KeyError), with no
            event and no reconnect that would start it again: chat goes deaf silently. This reads twitchio
            internals (the version is pinned); if they are not there, it reports nothing.
            """
            sockets = getattr(self, "_websockets", {})
            for pair in list(sockets.values()):
                for socket in list(pair.values()):
                    task = getattr(socket, "_listen_task", None)
                    if task is not None and task.done():
                        return True
            return False

        def _deaf(self, why: str) -> None:
            if self.deaf_since is None:
                log.warning("Twitch chat: %s; waiting for twitchio to reconnect", why)
                self.deaf_since = asyncio.get_running_loop().time()
            self.owner.connected = False

        async def event_message(self, payload: Any) -> None:
            chatter = payload.chatter
            source = payload.source_broadcaster
            if source is not None and str(source.id) != self.channel_id:
                return  # shared from another channel's chat (shared chat session)
            if str(chatter.id) == self.bot_user_id and (self.bot_user_id != self.channel_id or self._echo(payload)):
                return  # our own replies
            self.owner.received += 1
            message = Message(user_id=str(chatter.id), login=chatter.name or "", text=payload.text or "",
                              roles=roles_of(chatter), message_id=payload.id or "")
            for reply in self.owner.hub.submit(message, "twitch"):
                await self.send(reply.text, reply.reply_to)

        def _echo(self, payload: Any) -> bool:
            """True (once) for a message whose text the bot sent: its own reply seen back."""
            text = payload.text or ""
            if text in self.echoes:
                self.echoes.remove(text)
                return True
            return False

        async def send(self, text: str, reply_to: str) -> None:
            text = text[:500]
            self.echoes.append(text)
            try:
                channel = self.create_partialuser(self.channel_id)
                await asyncio.wait_for(channel.send_message(text, self.bot_user_id, token_for=self.bot_user_id,
                                                            reply_to_message_id=reply_to or None), SEND_TIMEOUT_S)
                self.owner.sent += 1
            except Exception as exc:  # a rejected or timed-out send loses one reply, never the bot
                self.owner.send_errors += 1
                log.warning("Twitch chat: a reply was not sent: %s", describe(exc))

        async def event_error(self, payload: Any) -> None:
            log.error("Twitch chat: error in %s: %s", getattr(payload.listener, "__qualname__", "a listener"),
                      describe(payload.error))

    return _Client
