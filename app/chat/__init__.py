"""Viewer chat: the transport-free command core, the hub every transport shares, and the Twitch bot."""

from app.chat.core import ChatCore, ChatRules, Message, Reply, Show, Steer
from app.chat.hub import ChatHub

__all__ = ["ChatCore", "ChatHub", "ChatRules", "Message", "Reply", "Show", "Steer"]
