"""Typed settings owned by the app layer: the run itself, chat, dashboard, scheduler and storage."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Interval

MIN_TOKEN_CHARS = 16
"""The shortest dashboard token accepted when the dashboard is reachable beyond loopback."""

__all__ = ["ChatConfig", "DashboardConfig", "RunConfig", "SchedulerConfig", "StorageConfig"]

LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    name: str = ""
    """Run name shown on stream and dashboard (empty: the run dir's name)."""
    steps: Annotated[int, Interval(ge=0)] = 0
    """Stop after this many env steps in total, counting earlier sessions (0 runs until stopped)."""
    duration_s: Annotated[float, Interval(ge=0)] = field(default=0.0, metadata={"session_only": True})
    """Stop this session after so many seconds (0 runs until stopped). For this session only: not saved."""
    train_ratio: Annotated[float, Interval(gt=0, le=100_000)] = 32.0
    """Replayed steps per env step that the learner keeps (it waits when ahead; the actor never waits)."""
    pace_to_learner: bool = True
    """Slow the actor (never pause it) to the env-step rate at which the learner keeps train_ratio."""
    max_env_fps: Annotated[float, Interval(ge=0, le=100_000)] = 30.0
    """Cap on env steps per second in `run`, so viewers can follow the game (0: no cap; `train` has none)."""
    status_interval_s: Annotated[float, Interval(gt=0, le=3600)] = 10.0
    """Seconds between status lines in the log and metric rows in the metrics store."""
    train_metrics_interval_s: Annotated[float, Interval(ge=0, le=3600)] = 10.0
    """The learner writes one metrics row (the mean over the updates since the last) at most this often and
    every 10 updates at most (the session's first update at once): a fast GPU writes no more rows than a CPU,
    so metrics.jsonl and TensorBoard grow by ~10 and ~16 MB a day (~0.7 GB in four weeks; raise it to write
    less)."""
    log_level: LogLevel = "info"
    """Console and file log level."""
    compile_cache: str = "compile_cache"
    """Directory where XLA's compiled programs are kept, so a restart does not pay the compile again; relative
    to the run dir unless absolute. Give several runs one absolute directory (e.g. ~/.cache/dreamstream/xla)
    to share their compiles. Left at this default, JAX's own JAX_COMPILATION_CACHE_DIR wins when it is set."""

    def __post_init__(self) -> None:
        if not self.compile_cache.strip():
            raise ValueError("run.compile_cache is empty: give a directory (relative to the run dir, or absolute)")


@dataclass(frozen=True, kw_only=True)
class DashboardConfig:
    enabled: bool = True
    """Serve the operator dashboard."""
    host: str = "127.0.0.1"
    """Address to bind. Anything but loopback requires DREAMSTREAM_DASHBOARD_TOKEN."""
    port: Annotated[int, Interval(ge=0, le=65535)] = 8080
    """TCP port (0 picks a free one; the URL is logged and written to the run dir)."""
    token: str = field(default="", repr=False, metadata={"secret_env": "DREAMSTREAM_DASHBOARD_TOKEN"})
    """Bearer token the dashboard asks for when set. Secret: from the environment only."""

    def __post_init__(self) -> None:
        if self.host not in ("127.0.0.1", "localhost", "::1") and not self.token:
            raise ValueError(f"dashboard.host = {self.host!r}: binding beyond loopback needs a token; "
                             "set DREAMSTREAM_DASHBOARD_TOKEN")
        if self.host not in ("127.0.0.1", "localhost", "::1") and len(self.token) < MIN_TOKEN_CHARS:
            raise ValueError(f"dashboard.host = {self.host!r}: DREAMSTREAM_DASHBOARD_TOKEN has {len(self.token)} "
                             f"characters; a dashboard reachable from the network needs at least {MIN_TOKEN_CHARS} "
                             "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(24))')")


@dataclass(frozen=True, kw_only=True)
class ChatConfig:
    local: bool = True
    """Offer the local chat box on the dashboard (works without any credentials)."""
    twitch: bool = False
    """Connect the chat bot to Twitch (needs the credentials below)."""
    channel: str = ""
    """Twitch channel (broadcaster login) the bot joins."""
    client_id: str = ""
    """Twitch application client id (public)."""
    client_secret: str = field(default="", repr=False, metadata={"secret_env": "TWITCH_CLIENT_SECRET"})
    """Twitch application client secret. Secret: from the environment only."""
    bot_token: str = field(default="", repr=False, metadata={"secret_env": "TWITCH_BOT_TOKEN"})
    """OAuth user token of the bot account. Secret: from the environment only."""
    bot_refresh_token: str = field(default="", repr=False, metadata={"secret_env": "TWITCH_BOT_REFRESH_TOKEN"})
    """Refresh token of the bot's user token: twitchio renews the token with it (user tokens last about 4 h).
    Secret: from the environment only."""
    user_cooldown_s: Annotated[float, Interval(ge=0, le=3600)] = 2.0
    """A viewer's commands closer together than this are ignored."""
    commands_per_s: Annotated[float, Interval(gt=0, le=10_000)] = 20.0
    """Commands acted on per second from all viewers together (a raid cannot flood the app)."""
    replies_per_30s: Annotated[int, Interval(ge=0, le=100)] = 15
    """Bot replies per 30 s (Twitch allows a bot 20 per 30 s in a channel where it is not a moderator)."""
    reply_cooldown_s: Annotated[float, Interval(ge=0, le=3600)] = 30.0
    """A viewer gets at most one bot reply per this many seconds (moderators: no limit)."""
    dream_cooldown_s: Annotated[float, Interval(ge=0, le=3600)] = 15.0
    """Seconds between two dream refreshes asked for with !dream."""
    poll_s: Annotated[float, Interval(ge=10, le=3600)] = 60.0
    """Default length of a moderator's !poll."""
    reset_poll_s: Annotated[float, Interval(ge=5, le=600)] = 30.0
    """Length of the vote that !reset starts."""
    reset_min_votes: Annotated[int, Interval(ge=1, le=100_000)] = 3
    """Yes votes needed (and a majority) before a chat vote restarts the game."""
    reset_cooldown_s: Annotated[float, Interval(ge=0, le=86_400)] = 300.0
    """Seconds before chat can start another reset vote."""
    disabled_commands: tuple[str, ...] = ()
    """Chat commands nobody can use, e.g. [reset, dream] (help, commands, stats, dream, vote, reset, poll, endpoll)."""
    ignore_users: tuple[str, ...] = ()
    """Twitch logins whose messages are ignored: other bots, a viewer who abuses the commands. Their commands do
    nothing and their lines stay off the stream and the dashboard (a Twitch ban or timeout works too)."""

    def __post_init__(self) -> None:
        if self.twitch:
            missing = [name for name, value in (("chat.channel", self.channel), ("chat.client_id", self.client_id),
                                                ("TWITCH_CLIENT_SECRET", self.client_secret),
                                                ("TWITCH_BOT_TOKEN", self.bot_token),
                                                ("TWITCH_BOT_REFRESH_TOKEN", self.bot_refresh_token)) if not value]
            if missing:
                raise ValueError(f"chat.twitch = true needs {', '.join(missing)}")
        from app.chat.core import COMMANDS

        unknown = [c for c in self.disabled_commands if c.lower().lstrip("!") not in COMMANDS]
        if unknown:
            raise ValueError(f"chat.disabled_commands: unknown command {unknown[0]!r}; the commands are "
                             f"{', '.join(COMMANDS)}")
        off = {c.lower().lstrip("!") for c in self.disabled_commands}
        if "vote" in off and not {"reset", "poll"} <= off:
            raise ValueError("chat.disabled_commands: without vote, disable reset and poll too (their "
                             "announcements ask viewers to !vote)")
        bad = [u for u in self.ignore_users if not re.fullmatch(r"@?[A-Za-z0-9_]{1,25}", u)]
        if bad:
            raise ValueError(f"chat.ignore_users: {bad[0]!r} is not a Twitch login (letters, digits and _, at most "
                             "25; the login, not the display name)")

    def rules(self):
        """The chat core's rules from these settings."""
        from app.chat.core import ChatRules, clean_login

        return ChatRules(user_cooldown_s=self.user_cooldown_s, commands_per_s=self.commands_per_s,
                         replies_per_30s=self.replies_per_30s, reply_cooldown_s=self.reply_cooldown_s,
                         dream_cooldown_s=self.dream_cooldown_s,
                         poll_s=self.poll_s, reset_poll_s=self.reset_poll_s, reset_min_votes=self.reset_min_votes,
                         reset_cooldown_s=self.reset_cooldown_s,
                         disabled=frozenset(c.lower().lstrip("!") for c in self.disabled_commands),
                         ignored=frozenset(clean_login(u.lstrip("@")) for u in self.ignore_users))


@dataclass(frozen=True, kw_only=True)
class SchedulerConfig:
    save_interval_s: Annotated[float, Interval(ge=1, le=86_400)] = 30.0
    """Seconds between saves of the run state (counters)."""
    checkpoint_interval_min: Annotated[float, Interval(gt=0, le=10_080)] = 15.0
    """Minutes between checkpoints of the agent (one is also written at every clean stop)."""
    keep_checkpoints: Annotated[int, Interval(ge=1, le=1000)] = 3
    """Newest checkpoints kept on disk (the best one by score is kept besides)."""
    eval_episodes: Annotated[int, Interval(ge=0, le=1000)] = 10
    """Evaluation episodes played with each checkpoint's parameters on a second env before it is saved; their
    mean return ranks it. 0 (or an env with a single instance, such as a screen): rank by the mean of the
    last 100 training episodes instead."""
    eval_timeout_min: Annotated[float, Interval(ge=0, le=10_080)] = 60.0
    """Minutes an evaluation may take; past them it stops and the checkpoint is saved unscored (an env without an
    episode limit, or a hung one, would otherwise hold every later checkpoint and the operator's rollback).
    0: no limit."""
    rollback_after: Annotated[int, Interval(ge=0, le=1000)] = 3
    """Roll the agent back to the best checkpoint after this many checkpoints in a row scored clearly below
    it (0: never roll back automatically; the dashboard can still do it)."""
    rollback_z: Annotated[float, Interval(gt=0, le=10)] = 2.0
    """'Clearly below': the score is lower than the best's by more than this many combined standard errors."""
    elo_ladder: bool = True
    """Chess: play the evaluation games against the calibrated ladder rungs nearest the agent's rating (real
    Stockfish among them) and rank checkpoints by the fitted Elo (Stockfish 15.1 engine scale)."""
    elo_rungs: Annotated[int, Interval(ge=1, le=9)] = 3
    """Chess with elo_ladder: the number of rungs the evaluation games are spread over."""
    curriculum: bool = True
    """Chess with elo_ladder: once the agent is expected to score 75 % against its training opponent (a ladder
    rung), training continues against the next rung (kept in state.json across restarts)."""


@dataclass(frozen=True, kw_only=True)
class StorageConfig:
    database: str = "dreamstream.db"
    """SQLite file for runs and match history, relative to the run dir unless absolute (an absolute file can be
    shared by several run dirs: each run is then its own row, named by its run dir's full path)."""
    metrics_tensorboard: bool = True
    """Also write metrics as TensorBoard event files (metrics.jsonl is always written)."""
    keep_train_details_days: Annotated[float, Interval(ge=0, le=36_500)] = 14.0
    """Training episodes' details (a chess game's PGN, Crafter's achievements) older than this many days are
    emptied by an hourly job; their score, result, opponent and length stay, and evaluation games keep theirs (0:
    keep everything). A chess run stores ~2.5 KB per game, 1-2.5 GB in four weeks without it."""
    min_free_gb: Annotated[float, Interval(ge=0)] = 5.0
    """Warn (log, event, dashboard) when the run dir's disk has less free space than this, checked every minute:
    checkpoints, replay chunks and recordings would soon fail to be written (0: never warn)."""
