"""Viewer chat commands with no transport: parsing, validation, rate limits and polls (clock injected).

Every message, from the dashboard's local box or from Twitch, goes through `ChatCore.handle(message, now)`,
which returns what to do as plain effects: `Reply` (text for chat), `Show` (a line for the overlay's chat
panel) and `Steer` (an action for the app). `ChatCore.tick(now)` closes polls whose time is up.

Abuse rules, all here so they are tested without a network:
- only commands are acted on; unknown commands and plain chat are ignored without a reply (no echo spam);
- one command per viewer per `user_cooldown_s`, at most `commands_per_s` from all viewers together (a raid
  cannot flood the app; moderators are exempt, so they can still end a poll), at most one reply per viewer
  per `reply_cooldown_s` and `replies_per_30s` replies in all (Twitch limits bots to 20 per 30 s);
  announcements (polls, reset votes) are not held back by viewers' replies;
- the broadcast never shows a viewer's free text: the overlay line is the canonical command built from
  the viewer's login and the (moderator-written) poll option, e.g. `!vote 2 (stockfish)`;
- text is NFKC-normalised, stripped of control, format (zero-width, bidi override) and private-use
  characters, and cut to length before anything else looks at it; every state table is bounded.
"""

from __future__ import annotations

import collections
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from overlays import Poll

__all__ = ["COMMANDS", "ChatCore", "ChatRules", "Message", "Reply", "Show", "Steer", "clean_login", "clean_text"]

MODERATORS = frozenset({"broadcaster", "moderator", "operator"})
"""Roles allowed to run polls ("operator" is the dashboard's local chat box)."""
COMMANDS = ("help", "commands", "stats", "dream", "vote", "reset", "poll", "endpoll")
"""Every chat command (without the prefix); `chat.disabled_commands` names some of them."""
MAX_USERS = 50_000
"""Viewers remembered for cooldowns and votes; the least recently seen are forgotten beyond this."""
_LOGIN = re.compile(r"[^a-z0-9_]")
_SPACE = re.compile(r"\s+")
_MENTION = re.compile(r"@\S+ ")
"""A leading mention: Twitch's reply button starts the text with "@login " (twitchio's commands strip it too)."""
_NUMBER = re.compile(r"[0-9]{1,4}")
"""ASCII digits only: str.isdigit() also accepts characters int() rejects (e.g. U+2776)."""


@dataclass(frozen=True, kw_only=True)
class Message:
    """One chat message, as any transport delivers it."""

    user_id: str
    login: str
    text: str
    roles: frozenset[str] = frozenset()
    """Any of broadcaster, moderator, vip, subscriber, operator."""
    message_id: str = ""
    """The transport's id of the message (Twitch replies thread to it)."""


@dataclass(frozen=True)
class Reply:
    """Say `text` in chat, as a reply to message `reply_to`; an announcement goes to every transport."""

    text: str
    reply_to: str = ""
    announce: bool = False


@dataclass(frozen=True)
class Show:
    """Add a line to the overlay's chat panel."""

    user: str
    text: str


@dataclass(frozen=True)
class Steer:
    """Ask the app to do something: 'dream' (refresh the dream strips now) or 'reset_episode'."""

    action: str
    reason: str = ""


Effect = Reply | Show | Steer


@dataclass(frozen=True, kw_only=True)
class ChatRules:
    prefix: str = "!"
    user_cooldown_s: float = 2.0
    commands_per_s: float = 20.0
    replies_per_30s: int = 15
    reply_cooldown_s: float = 30.0
    """A viewer gets at most one reply per this many seconds (moderators: no limit)."""
    dream_cooldown_s: float = 15.0
    poll_s: float = 60.0
    reset_poll_s: float = 30.0
    reset_min_votes: int = 3
    reset_cooldown_s: float = 300.0
    max_chars: int = 500
    show_closed_poll_s: float = 15.0
    disabled: frozenset[str] = frozenset()
    """Commands nobody can use (names from COMMANDS)."""
    ignored: frozenset[str] = frozenset()
    """Logins whose messages are ignored: no command, no line on the stream or the dashboard."""


def clean_text(text: str, limit: int) -> str:
    """NFKC-normalise, drop control/format/private-use/unassigned characters, collapse spaces, cut to `limit`."""
    text = unicodedata.normalize("NFKC", text[: limit * 4])
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in " \t\n")
    return _SPACE.sub(" ", text).strip()[:limit]


def clean_login(login: str) -> str:
    """A Twitch login has only a-z, 0-9 and _ (at most 25); anything else is dropped."""
    return _LOGIN.sub("", login.lower())[:25] or "viewer"


@dataclass
class _Poll:
    question: str
    options: tuple[str, ...]
    ends_at: float
    steer: str = ""
    """A Steer action run when the first option wins (the reset vote), else ''."""
    min_votes: int = 0
    votes: dict[str, int] = field(default_factory=dict)
    """user_id -> option index (a viewer's last vote counts)."""
    closed_at: float | None = None

    def counts(self) -> list[int]:
        counts = [0] * len(self.options)
        for i in self.votes.values():
            counts[i] += 1
        return counts


class ChatCore:
    """The chat's rules and state. Not thread-safe: `ChatHub` serialises calls."""

    def __init__(self, rules: ChatRules, stats: Callable[[], Mapping[str, Any]] = dict) -> None:
        self.rules = rules
        self.stats = stats
        self.poll: _Poll | None = None
        self._last_command: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._tokens = max(1.0, rules.commands_per_s)
        self._tokens_at = -float("inf")
        self._replies: collections.deque[float] = collections.deque()
        self._replied: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._dream_at = -float("inf")
        self._reset_at = -float("inf")
        self.dropped = 0
        """Commands dropped by a rate limit (cooldown, global rate or reply budget)."""
        commands: dict[str, Callable[[Message, list[str], float], list[Effect]]] = {
            "help": self._help, "commands": self._help, "stats": self._stats, "dream": self._dream,
            "vote": self._vote, "reset": self._reset, "poll": self._start_poll, "endpoll": self._end_poll,
        }
        assert tuple(commands) == COMMANDS
        self._commands = {name: f for name, f in commands.items() if name not in rules.disabled}

    # -- entry points ------------------------------------------------------------------------------------

    def ignores(self, message: Message) -> bool:
        """Whether the message comes from an ignored login (`chat.ignore_users`); never the operator's box."""
        return "operator" not in message.roles and clean_login(message.login) in self.rules.ignored

    def handle(self, message: Message, now: float) -> list[Effect]:
        """Return the effects of one chat message (an empty list for anything that is not a valid command)."""
        if self.ignores(message):
            return []
        text = clean_text(message.text, self.rules.max_chars)
        mention = _MENTION.match(text)
        if mention is not None:  # "@dreambot !vote 1", a reply in a thread: the command after the mention counts
            text = text[mention.end():]
        if not text.startswith(self.rules.prefix):
            return []
        words = text[len(self.rules.prefix):].split(" ")
        command = self._commands.get(words[0].lower())
        if command is None:
            return []
        if not self._admit(message, now):
            self.dropped += 1
            return []
        effects = command(message, [w for w in words[1:] if w], now)
        return self._limit_replies(effects, now, message)

    def tick(self, now: float) -> list[Effect]:
        """Close a poll whose time is up; return its announcement (and the steering it decided)."""
        poll = self.poll
        if poll is None:
            return []
        if poll.closed_at is None and now >= poll.ends_at:
            return self._limit_replies(self._close(now), now)
        if poll.closed_at is not None and now - poll.closed_at >= self.rules.show_closed_poll_s:
            self.poll = None
        return []

    def poll_view(self, now: float) -> Poll | None:
        """The poll as the overlay and dashboard show it (0 s left once closed: the result stays a while)."""
        poll = self.poll
        if poll is None:
            return None
        votes = {f"{i + 1}. {o}": c for i, (o, c) in enumerate(zip(poll.options, poll.counts(), strict=True))}
        left = 0.0 if poll.closed_at is not None else max(0.0, poll.ends_at - now)
        return Poll(question=poll.question, votes=votes, seconds_left=left)

    # -- limits ------------------------------------------------------------------------------------------

    def _admit(self, message: Message, now: float) -> bool:
        user_id = message.user_id
        last = self._last_command.get(user_id)
        if last is not None and now - last < self.rules.user_cooldown_s:
            return False
        if not message.roles & MODERATORS:
            # A token bucket: `commands_per_s` on average, bursts of at most max(1, commands_per_s).
            rate = self.rules.commands_per_s
            if self._tokens_at > -float("inf"):
                self._tokens = min(max(1.0, rate), self._tokens + max(0.0, now - self._tokens_at) * rate)
            self._tokens_at = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
        _remember(self._last_command, user_id, now)
        return True

    def _limit_replies(self, effects: list[Effect], now: float, message: Message | None = None) -> list[Effect]:
        while self._replies and now - self._replies[0] >= 30.0:
            self._replies.popleft()
        kept: list[Effect] = []
        for effect in effects:
            if isinstance(effect, Reply) and not effect.announce:
                if len(self._replies) >= self.rules.replies_per_30s:
                    self.dropped += 1
                    continue
                if message is not None and not message.roles & MODERATORS:
                    last = self._replied.get(message.user_id)
                    if last is not None and now - last < self.rules.reply_cooldown_s:
                        self.dropped += 1
                        continue
                    _remember(self._replied, message.user_id, now)
                self._replies.append(now)
            kept.append(effect)
        return kept

    # -- commands ----------------------------------------------------------------------------------------

    def _help(self, message: Message, args: list[str], now: float) -> list[Effect]:
        p = self.rules.prefix
        parts = [(name, f"{p}{name}{usage}") for name, usage in (
            ("stats", ": how training goes"), ("dream", ": show what the agent imagines now"),
            ("vote", " N: vote in the poll"), ("reset", ": start a vote to restart the game"))]
        text = " · ".join(line for name, line in parts if name in self._commands)
        if message.roles & MODERATORS:
            mods = [line for name, line in (("poll", f"{p}poll [seconds] question | option | option ..."),
                                            ("endpoll", f"{p}endpoll")) if name in self._commands]
            if mods:
                text += " · mods: " + ", ".join(mods)
        return [Reply(text or "no commands are on", message.message_id)]

    def _stats(self, message: Message, args: list[str], now: float) -> list[Effect]:
        s = self.stats()
        parts = [f"{s['game']}" if s.get("game") else "",
                 f"env step {s['env_steps']:,}" if s.get("env_steps") is not None else "",
                 f"{s['updates']:,} updates" if s.get("updates") is not None else "",
                 f"{s['episodes']:,} episodes" if s.get("episodes") is not None else "",
                 f"mean score {s['mean_score']:.2f} (last 100)" if s.get("mean_score") is not None else "",
                 f"last eval {s['last_eval']}" if s.get("last_eval") else "",
                 f"uptime {s['uptime']}" if s.get("uptime") else ""]
        return [Reply(" · ".join(p for p in parts if p) or "starting up", message.message_id)]

    def _dream(self, message: Message, args: list[str], now: float) -> list[Effect]:
        if now - self._dream_at < self.rules.dream_cooldown_s:
            return []  # someone just asked: the strip is being refreshed; no reply, no spam
        self._dream_at = now
        login = clean_login(message.login)
        return [Show(login, f"{self.rules.prefix}dream"), Steer("dream", f"asked by {login}")]

    def _vote(self, message: Message, args: list[str], now: float) -> list[Effect]:
        poll = self.poll
        if poll is None or poll.closed_at is not None:
            return [Reply("no poll is running", message.message_id)]
        index = _option_index(poll.options, " ".join(args))
        if index is None:
            choices = ", ".join(f"{i + 1} = {o}" for i, o in enumerate(poll.options))
            return [Reply(f"vote with a number: {choices}", message.message_id)]
        previous = poll.votes.get(message.user_id)
        if previous == index or (previous is None and len(poll.votes) >= MAX_USERS):
            return []  # the same vote again changes nothing and is not shown again
        poll.votes[message.user_id] = index
        return [Show(clean_login(message.login), f"{self.rules.prefix}vote {index + 1} ({poll.options[index]})")]

    def _reset(self, message: Message, args: list[str], now: float) -> list[Effect]:
        if self.poll is not None and self.poll.closed_at is None:
            if self.poll.steer == "reset_episode":
                return self._vote(message, ["1"], now)  # asking again is a yes vote
            return [Reply("a poll is running; try again when it ends", message.message_id)]
        wait = self.rules.reset_cooldown_s - (now - self._reset_at)
        if wait > 0:
            return [Reply(f"the game can be reset by vote again in {wait:.0f} s", message.message_id)]
        self._reset_at = now
        self.poll = _Poll("Restart the game?", ("yes", "no"), now + self.rules.reset_poll_s, steer="reset_episode",
                          min_votes=self.rules.reset_min_votes, votes={message.user_id: 0})
        login = clean_login(message.login)
        return [Show(login, f"{self.rules.prefix}reset"),
                Reply(f"{login} wants to restart the game: {self.rules.prefix}vote 1 for yes, {self.rules.prefix}vote "
                      f"2 for no ({self.rules.reset_poll_s:.0f} s, needs {self.rules.reset_min_votes} yes)",
                      announce=True)]

    def _start_poll(self, message: Message, args: list[str], now: float) -> list[Effect]:
        if not message.roles & MODERATORS:
            return []
        if self.poll is not None and self.poll.closed_at is None:
            return [Reply(f"a poll is running; {self.rules.prefix}endpoll ends it", message.message_id)]
        seconds = self.rules.poll_s
        if args and _NUMBER.fullmatch(args[0]):
            seconds = float(min(max(int(args[0]), 10), 3600))
            args = args[1:]
        parts = [clean_text(p, 80) for p in " ".join(args).split("|")]
        question, options = parts[0][:100], tuple(o[:40] for o in parts[1:] if o)[:4]
        if not question or len(options) < 2:
            return [Reply(f"usage: {self.rules.prefix}poll [seconds] question | option | option (2 to 4 options)",
                          message.message_id)]
        self.poll = _Poll(question, options, now + seconds)
        listing = ", ".join(f"{i + 1} = {o}" for i, o in enumerate(options))
        return [Reply(f"poll: {question} {listing} ({self.rules.prefix}vote N, {seconds:.0f} s)", announce=True)]

    def _end_poll(self, message: Message, args: list[str], now: float) -> list[Effect]:
        if not message.roles & MODERATORS or self.poll is None or self.poll.closed_at is not None:
            return []
        return self._close(now)

    def _close(self, now: float) -> list[Effect]:
        poll = self.poll
        assert poll is not None
        poll.closed_at = now
        counts = poll.counts()
        total = sum(counts)
        if not total:
            return [Reply(f"poll closed without votes: {poll.question}", announce=True)]
        best = max(range(len(counts)), key=lambda i: counts[i])
        tied = counts.count(counts[best]) > 1
        result = "a tie" if tied else f"{poll.options[best]} ({counts[best]} of {total})"
        effects: list[Effect] = [Reply(f"poll closed: {poll.question} {result}", announce=True)]
        if poll.steer:
            if not tied and best == 0 and counts[0] >= poll.min_votes:
                effects.append(Steer(poll.steer, f"chat vote {counts[0]} of {total}"))
            elif not tied and best == 0:
                effects[0] = Reply(f"poll closed: {poll.question} yes, but {poll.min_votes} votes are needed",
                                   announce=True)
        return effects


def _option_index(options: tuple[str, ...], choice: str) -> int | None:
    choice = choice.strip().lower()
    if _NUMBER.fullmatch(choice) and 1 <= int(choice) <= len(options):
        return int(choice) - 1
    matches = [i for i, o in enumerate(options) if o.lower() == choice]
    return matches[0] if len(matches) == 1 else None


def _remember(table: collections.OrderedDict[str, float], user_id: str, now: float) -> None:
    table[user_id] = now
    table.move_to_end(user_id)
    while len(table) > MAX_USERS:
        table.popitem(last=False)
