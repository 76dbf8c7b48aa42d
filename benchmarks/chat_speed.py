"""Measure the chat layer: commands per second through the hub (the rules engine, as a raid would hit it)
and the round trip of a command through real twitchio 3 against the local fake Twitch. Prints one JSON
line. Not a test.

    .venv/bin/python benchmarks/chat_speed.py
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.chat import ChatCore, ChatHub, ChatRules, Message
from app.chat.twitch import TwitchChat
from app.settings import ChatConfig
from tests.helpers.fake_twitch import FakeTwitch

UNLIMITED = ChatRules(replies_per_30s=10**9, reply_cooldown_s=0, user_cooldown_s=0, commands_per_s=10**9)


def hub_rate(rules: ChatRules, n: int = 200_000) -> float:
    """Messages per second through ChatHub.submit: distinct viewers voting, asking, dreaming, chatting."""
    hub = ChatHub(ChatCore(rules, stats=lambda: {"env_steps": 1}))
    hub.submit(Message(user_id="op", login="op", text="!poll 3600 q | a | b", roles=frozenset({"operator"})), "b")
    texts = ["!vote 1", "!vote 2", "hello", "!stats", "!dream", "!nosuch"]
    t0 = time.perf_counter()
    for i in range(n):
        hub.submit(Message(user_id=str(i % 50_000), login=f"v{i}", text=texts[i % len(texts)]), "bench")
    return n / (time.perf_counter() - t0)


def twitch_round_trip(count: int = 50) -> list[float]:
    """Seconds from a chat notification pushed by the fake to the bot's reply reaching its Helix endpoint."""
    import pytest

    fake = FakeTwitch().start()
    patch = pytest.MonkeyPatch()
    fake.patch(patch)
    hub = ChatHub(ChatCore(UNLIMITED,
                           stats=lambda: {"env_steps": 1}))
    cfg = ChatConfig(twitch=True, channel=FakeTwitch.OWNER_LOGIN, client_id=FakeTwitch.CLIENT_ID,
                     client_secret=FakeTwitch.CLIENT_SECRET, bot_token=FakeTwitch.BOT_TOKEN,
                     bot_refresh_token="refresh-1001")
    twitch, stop = TwitchChat(cfg, hub), threading.Event()
    thread = threading.Thread(target=twitch.run, args=(stop,), daemon=True)
    thread.start()
    try:
        fake.wait_subscribed()
        while not twitch.connected:
            time.sleep(0.01)
        times = []
        for i in range(count):
            t0 = time.perf_counter()
            mid = fake.send_chat("!stats", user_id=str(100 + i))
            fake.wait_sent(lambda body, mid=mid: body.get("reply_parent_message_id") == mid)
            times.append(time.perf_counter() - t0)
        return times
    finally:
        stop.set()
        thread.join(timeout=30)
        fake.stop()
        patch.undo()


def main() -> None:
    raid = hub_rate(ChatRules())  # the default limits: most of a raid is refused at once
    admitted = hub_rate(UNLIMITED)  # every command acted on
    trips = twitch_round_trip()
    print(json.dumps({"hub_messages_per_s_default_limits": round(raid), "hub_messages_per_s_no_limits": round(admitted),
                      "twitch_round_trip_ms_median": round(
        1000 * statistics.median(trips), 2), "twitch_round_trip_ms_max": round(1000 * max(trips), 2),
        "round_trips": len(trips)}))


if __name__ == "__main__":
    main()
