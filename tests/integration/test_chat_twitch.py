"""Twitch chat through the real twitchio 3 code paths against a local fake of Twitch (OAuth, Helix, EventSub
WebSocket): commands in, threaded replies out, moderator polls, the reset vote, hostile input, a bad token."""

from __future__ import annotations

import threading
import time

import pytest

from app.chat import ChatCore, ChatHub, ChatRules
from app.chat.twitch import TwitchChat
from app.settings import ChatConfig
from tests.conftest import wait_for
from tests.helpers.fake_twitch import FakeTwitch

pytestmark = pytest.mark.integration

MOD = [{"set_id": "moderator", "id": "1", "info": ""}]


@pytest.fixture
def fake(monkeypatch):
    import twitchio.http

    server = FakeTwitch().start()
    server.patch(monkeypatch)
    assert twitchio.http.Route.BASE.startswith("http://127.0.0.1:")  # nothing in this test can reach Twitch
    yield server
    server.stop()


def config(token: str = FakeTwitch.BOT_TOKEN, refresh: str = "refresh-1001") -> ChatConfig:
    return ChatConfig(twitch=True, channel=FakeTwitch.OWNER_LOGIN, client_id=FakeTwitch.CLIENT_ID,
                      client_secret=FakeTwitch.CLIENT_SECRET, bot_token=token, bot_refresh_token=refresh)


class Bot:
    """The app's chat side: a hub and the Twitch component in its own thread, as the supervisor runs it."""

    def __init__(self, cfg: ChatConfig, rules: ChatRules) -> None:
        self.steered: list = []
        self.hub = ChatHub(ChatCore(rules, stats=lambda: {"game": "crafter", "env_steps": 42}),
                           on_steer=self.steered.append)
        self.twitch = TwitchChat(cfg, self.hub)
        self.stop = threading.Event()
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.twitch.run(self.stop)
        except BaseException as exc:
            self.error.append(exc)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture
def bot(fake):
    b = Bot(config(), ChatRules(user_cooldown_s=0, reset_min_votes=2, reset_poll_s=5, poll_s=10))
    fake.wait_subscribed()
    wait_for(lambda: b.twitch.connected, "the bot to join the channel")
    yield b
    b.close()


def test_a_command_gets_a_threaded_reply_from_the_bot(fake, bot) -> None:
    assert bot.twitch.connected
    mid = fake.send_chat("!stats")
    sent = fake.wait_sent(lambda body: body.get("reply_parent_message_id") == mid)
    assert sent["message"] == "crafter · env step 42"
    assert sent["broadcaster_id"] == FakeTwitch.OWNER_ID and sent["sender_id"] == FakeTwitch.BOT_ID
    fake.send_chat("hello everyone")  # plain chat: no reply
    fake.send_chat("!stats", user_id=FakeTwitch.BOT_ID, login=FakeTwitch.BOT_LOGIN)  # the bot's own message
    last = fake.send_chat("!help", user_id="3004")
    fake.wait_sent(lambda body: body.get("reply_parent_message_id") == last)
    assert len(fake.sent) == 2 and bot.twitch.stats()["received"] == 3


def test_a_reply_in_a_thread_and_a_shared_chat_message_from_this_channel_are_commands(fake, bot) -> None:
    first = fake.send_chat("!stats", user_id="41", login="ann")
    answer = fake.wait_sent(lambda body: body.get("reply_parent_message_id") == first)
    # Twitch's reply button: the text starts with "@parent_login " (here a reply to the bot's answer).
    bot_message = next(m for m, (uid, _, text) in fake._messages.items()
                       if uid == FakeTwitch.BOT_ID and text == answer["message"])
    again = fake.send_chat(f"@{FakeTwitch.BOT_LOGIN} !help", user_id="42", login="bea", reply_to=bot_message)
    fake.wait_sent(lambda body: body.get("reply_parent_message_id") == again)
    # A shared chat session: this channel's own messages may carry its id as their source; other channels' not.
    fake.send_chat("!dream", user_id="43", login="other", source_broadcaster_id="9009")
    own = fake.send_chat("!help", user_id="44", source_broadcaster_id=FakeTwitch.OWNER_ID)
    fake.wait_sent(lambda body: body.get("reply_parent_message_id") == own)
    assert not bot.steered  # the other channel's !dream was not acted on
    assert bot.twitch.stats()["received"] == 3  # the bot's own messages, echoed back by Twitch, are not counted


def test_a_bot_on_the_broadcasters_own_account_reads_the_broadcaster_but_not_its_own_replies(fake) -> None:
    b = Bot(config(token=f"user-{FakeTwitch.OWNER_ID}"), ChatRules(user_cooldown_s=0))
    try:
        fake.wait_subscribed()
        wait_for(lambda: b.twitch.connected, "the bot to join the channel")
        owner = [{"set_id": "broadcaster", "id": "1", "info": ""}]
        first = fake.send_chat("!help", user_id=FakeTwitch.OWNER_ID, login=FakeTwitch.OWNER_LOGIN, badges=owner)
        answer = fake.wait_sent(lambda body: body.get("reply_parent_message_id") == first)
        assert answer["sender_id"] == FakeTwitch.OWNER_ID and "mods: !poll" in answer["message"]
        fake.send_chat("!poll 30 q | a | b", user_id=FakeTwitch.OWNER_ID, login=FakeTwitch.OWNER_LOGIN, badges=owner)
        fake.wait_sent(lambda body: body["message"].startswith("poll: q"))
        last = fake.send_chat("!help", user_id="3004")
        fake.wait_sent(lambda body: body.get("reply_parent_message_id") == last)
        assert b.hub.poll().question == "q"
        assert b.twitch.stats()["received"] == 3 and len(fake.sent) == 3  # the echoed replies were not read
    finally:
        b.close()


def test_a_moderator_poll_is_voted_in_and_announced_when_it_closes(fake, bot) -> None:
    fake.send_chat("!poll 10 next game? | chess | crafter", user_id="7", login="moddy", badges=MOD)
    fake.wait_sent(lambda body: body["message"] == "poll: next game? 1 = chess, 2 = crafter (!vote N, 10 s)")
    fake.send_chat("!poll 10 not a mod | a | b", user_id="8")  # a viewer's poll is ignored
    for user in ("10", "11", "12"):
        fake.send_chat("!vote 2", user_id=user, login=f"v{user}")
    fake.send_chat("!vote chess", user_id="13")
    wait_for(lambda: (p := bot.hub.poll()) and sum(p.votes.values()) == 4, "the four votes")
    bot.hub.tick()  # as the chat component does twice a second
    assert bot.hub.poll().votes == {"1. chess": 1, "2. crafter": 3}
    deadline = time.monotonic() + 30
    while not any(b["message"].startswith("poll closed") for b in fake.sent) and time.monotonic() < deadline:
        bot.hub.tick()
        time.sleep(0.2)
    closed = fake.wait_sent(lambda body: body["message"].startswith("poll closed"))
    assert closed["message"] == "poll closed: next game? crafter (3 of 4)" and "reply_parent_message_id" not in {
        k for k, v in closed.items() if v}
    assert [line.text for line in bot.hub.lines()][-4:] == ["!vote 2 (crafter)"] * 3 + ["!vote 1 (chess)"]


def test_a_reset_vote_from_twitch_steers_the_app(fake, bot) -> None:
    fake.send_chat("!reset", user_id="21", login="ann")
    fake.wait_sent(lambda body: body["message"].startswith("ann wants to restart the game"))
    fake.send_chat("!vote 1", user_id="22", login="bea")
    wait_for(lambda: bot.hub.poll() and bot.hub.poll().votes["1. yes"] == 2, "the second yes vote")
    wait_for(lambda: bot.hub.tick() or bot.steered, "the vote to pass", timeout_s=60)
    assert [(s.action, s.reason) for s in bot.steered] == [("reset_episode", "chat vote 2 of 2")]


def test_hostile_messages_never_stop_the_bot(fake, bot) -> None:
    fake.send_raw("{this is not json")
    fake.send_chat("!" + "\u202e\u200b" * 30 + "dream " + "x\u202e" * 5000, user_id="31", login="Evil\u202eName")
    fake.send_chat("!poll 5 " + "|" * 400, user_id="32", badges=MOD)  # no options: the usage
    fake.send_chat("!poll 30 q " + "| " + "\U0001F600" * 400 + " | b", user_id="36", badges=MOD)
    fake.send_chat("!vote " + "9" * 400, user_id="33")
    fake.send_chat("!vote \u2776", user_id="37")  # a digit int() cannot read
    fake.send_chat("\x00\x01\x02!help", user_id="34")
    mid = fake.send_chat("!help", user_id="35")
    fake.wait_sent(lambda body: body.get("reply_parent_message_id") == mid)
    assert bot.thread.is_alive() and bot.hub.errors == 0 and not bot.error
    assert all(len(body["message"]) <= 500 for body in fake.sent)
    assert [(line.user, line.text) for line in bot.hub.lines()] == [("evilname", "!dream")]
    assert bot.steered[0].action == "dream"
    assert bot.hub.poll().question == "q" and len(next(iter(bot.hub.poll().votes))) <= 43  # "1. " + 40


def test_a_refused_bot_token_is_a_clear_error_that_never_quotes_a_secret(fake, caplog) -> None:
    bad = Bot(config(token="user-tok3n-not-valid", refresh="r3fresh-not-valid"), ChatRules())
    bad.thread.join(timeout=60)
    assert not bad.thread.is_alive() and bad.error
    message = str(bad.error[0])
    assert "Twitch refused the bot token (TWITCH_BOT_TOKEN): InvalidTokenException" in message
    assert "user:bot" in message
    for secret in ("tok3n", "r3fresh", FakeTwitch.CLIENT_SECRET):
        assert secret not in message and secret not in caplog.text


def test_a_short_lived_token_is_refreshed_at_start(monkeypatch) -> None:
    server = FakeTwitch(user_token_expires_s=600).start()  # twitchio refreshes tokens with under 1 h left
    server.patch(monkeypatch)
    try:
        b = Bot(config(), ChatRules())
        server.wait_subscribed()
        mid = server.send_chat("!help")
        server.wait_sent(lambda body: body.get("reply_parent_message_id") == mid)
        assert server.refreshes >= 1
        b.close()
    finally:
        server.stop()


def test_a_session_reconnect_keeps_the_bot_connected_and_reading(fake, bot, monkeypatch) -> None:
    """Twitch asks clients to reconnect before maintenance; twitchio opens the new socket, then closes the old
    one, whose close event marked the bot deaf: announcements were dropped, and it logged in again 60 s later."""
    import app.chat.twitch

    monkeypatch.setattr(app.chat.twitch, "DEAF_AFTER_S", 2.0)
    before = set(fake._sessions)
    fake.reconnect_sockets()
    wait_for(lambda: fake._sessions and not fake._sessions & before, "the bot to move to a new session")
    time.sleep(3.0)  # past DEAF_AFTER_S
    assert not bot.error and bot.twitch.connected and bot.twitch._client.deaf_since is None
    mid = fake.send_chat("!stats")
    assert fake.wait_sent(lambda body: body.get("reply_parent_message_id") == mid)["message"] == "crafter · env step 42"


def test_a_bot_that_twitch_stops_listening_to_logs_in_again(fake, bot, monkeypatch) -> None:
    import app.chat.twitch

    monkeypatch.setattr(app.chat.twitch, "DEAF_AFTER_S", 2.0)
    fake.close_sockets(4003)  # "connection unused": twitchio gives up on this socket for good
    bot.thread.join(timeout=60)
    assert bot.error and "no Twitch chat subscription for 2 s; logging in again" in str(bot.error[0])
    assert not bot.twitch.connected


def test_a_bot_whose_listener_dies_on_a_frame_without_metadata_logs_in_again(fake, bot, monkeypatch) -> None:
    import app.chat.twitch

    monkeypatch.setattr(app.chat.twitch, "DEAF_AFTER_S", 2.0)
    fake.send_raw('{"payload": {}}')  # valid JSON, no "metadata": twitchio's listener task ends with a KeyError
    bot.thread.join(timeout=60)
    assert bot.error and "no Twitch chat subscription for 2 s; logging in again" in str(bot.error[0])
    assert not bot.twitch.connected


def test_the_app_steers_from_twitch_chat_end_to_end(fake, app_factory, tmp_path) -> None:
    """`dreamstream run` with the Twitch bot on (twitchio pointed at the fake by a test-only sitecustomize)."""
    import json
    import os
    from pathlib import Path

    logdir = tmp_path / "run"
    secrets = {"TWITCH_CLIENT_SECRET": FakeTwitch.CLIENT_SECRET, "TWITCH_BOT_TOKEN": FakeTwitch.BOT_TOKEN,
               "TWITCH_BOT_REFRESH_TOKEN": "refresh-1001"}
    redirect = Path(__file__).resolve().parent.parent / "helpers" / "twitch_redirect"
    env = {**secrets, "FAKE_TWITCH_PORT": str(fake.port),
           "PYTHONPATH": os.pathsep.join([str(redirect), os.environ.get("PYTHONPATH", "")])}
    app = app_factory(["run", "--configs", "tiny", "--dashboard.port", "0", "--stream.enabled", "false",
                       "--chat.twitch", "true", "--chat.channel", FakeTwitch.OWNER_LOGIN,
                       "--chat.client_id", FakeTwitch.CLIENT_ID, "--chat.reset_min_votes", "2",
                       "--chat.reset_poll_s", "5"], logdir, env=env)
    fake.wait_subscribed(timeout_s=180)
    status = wait_for(lambda: (s := app.status())["chat"]["twitch"]["connected"] and s, "the bot to join")
    assert status["components"]["twitch_chat"]["state"] == "running"
    wait_for(lambda: app.status()["counters"]["env_steps"] > 0, "the agent to act")
    fake.send_chat("!reset", user_id="41", login="ann")
    fake.wait_sent(lambda body: body["message"].startswith("ann wants to restart the game"))
    fake.send_chat("!vote 1", user_id="42", login="bea")
    fake.wait_sent(lambda body: body["message"] == "poll closed: Restart the game? yes (2 of 2)")
    wait_for(lambda: [e for e in json.loads(app.get("api/episodes")) if e["result"] == "reset"],
             "the game to be reset")
    mid = fake.send_chat("!stats", user_id="43")
    reply = fake.wait_sent(lambda body: body.get("reply_parent_message_id") == mid)
    assert reply["message"].startswith("crafter · env step")
    assert app.stop() == 0
    for secret in secrets.values():
        leaks = [str(p) for p in logdir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert leaks == [] and secret not in app.output
