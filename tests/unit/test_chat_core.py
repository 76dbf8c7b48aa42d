"""Chat core: commands, polls, the reset vote, rate limits, and hostile input (no transport, injected clock)."""

from __future__ import annotations

import threading

from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.chat import ChatCore, ChatHub, ChatRules, Message, Reply, Show, Steer
from app.chat.core import MAX_USERS, clean_login, clean_text

RULES = ChatRules(user_cooldown_s=2.0, commands_per_s=20, replies_per_30s=15, reset_min_votes=2)


def msg(text: str, user: str = "1", login: str = "alice", roles: frozenset[str] = frozenset(),
        mid: str = "m") -> Message:
    return Message(user_id=user, login=login, text=text, roles=roles, message_id=mid)


def replies(effects) -> list[str]:
    return [e.text for e in effects if isinstance(e, Reply)]


def test_plain_chat_and_unknown_commands_get_no_reply() -> None:
    core = ChatCore(RULES)
    assert core.handle(msg("hello there"), 0) == []
    assert core.handle(msg("!nosuchcommand", user="2"), 0) == []
    assert core.handle(msg("!", user="3"), 0) == []


def test_help_and_stats_reply_to_the_message() -> None:
    core = ChatCore(RULES, stats=lambda: {"game": "crafter", "env_steps": 12345, "updates": 67, "episodes": 8,
                                          "mean_score": 2.345, "uptime": "01:02:03"})
    (help_reply,) = core.handle(msg("!help", mid="abc"), 0)
    assert help_reply.reply_to == "abc" and "!vote" in help_reply.text and "!poll" not in help_reply.text
    assert "!poll" in core.handle(msg("!HELP", user="mod", roles=frozenset({"moderator"})), 0)[0].text
    (stats,) = core.handle(msg("!stats", user="2"), 0)
    assert stats.text == "crafter · env step 12,345 · 67 updates · 8 episodes · mean score 2.35 (last 100) · " \
                         "uptime 01:02:03"
    core = ChatCore(RULES, stats=lambda: {"game": "chess", "last_eval": "Elo 812 ± 190 (checkpoint 4,000)"})
    assert core.handle(msg("!stats", user="3"), 0)[0].text == "chess · last eval Elo 812 ± 190 (checkpoint 4,000)"


def test_a_viewer_is_held_to_one_command_per_cooldown_and_one_reply_per_30_s() -> None:
    core = ChatCore(RULES)
    assert core.handle(msg("!help"), 0.0)
    assert core.handle(msg("!help"), 1.9) == []  # dropped silently
    assert core.handle(msg("!stats"), 2.0) == []  # a command again, but no second reply so soon
    assert Show("alice", "!dream") in core.handle(msg("!dream"), 4.0)  # commands without a reply still work
    assert core.handle(msg("!help"), 30.0)
    assert core.dropped == 2


def test_moderators_pass_a_raid_and_announcements_pass_a_spent_reply_budget() -> None:
    core = ChatCore(RULES)
    for i in range(40):  # a raid: the global limit and the reply budget are spent
        core.handle(msg("!help", user=str(i)), 0.5)
    mod = frozenset({"moderator"})
    assert replies(core.handle(msg("!poll 30 q | a | b", user="m", roles=mod), 0.5)) == [
        "poll: q 1 = a, 2 = b (!vote N, 30 s)"]
    assert core.handle(msg("!vote 1", user="late"), 0.5) == []  # viewers wait for the rate to refill
    assert replies(core.handle(msg("!endpoll", user="m2", roles=mod), 0.5)) == ["poll closed without votes: q"]


def test_digits_only_ascii_and_a_repeated_vote_is_not_shown_again() -> None:
    core = ChatCore(RULES)
    core.handle(msg("!poll 30 q | a | b", user="m", roles=frozenset({"operator"})), 0)
    assert replies(core.handle(msg("!vote \u2776"), 1)) == ["vote with a number: 1 = a, 2 = b"]  # ❶
    assert core.handle(msg("!poll \u1369 q | a | b", user="m", roles=frozenset({"operator"})), 3) == [
        Reply("a poll is running; !endpoll ends it", "m")]
    assert core.handle(msg("!vote 2", user="v"), 5) == [Show("alice", "!vote 2 (b)")]
    assert core.handle(msg("!vote 2", user="v"), 8) == []
    assert core.poll_view(9).votes == {"1. a": 0, "2. b": 1}


def test_a_raid_cannot_exceed_the_global_command_rate_or_the_reply_budget() -> None:
    core = ChatCore(RULES)
    answered = [core.handle(msg("!help", user=str(i)), 0.5) for i in range(100)]
    assert sum(bool(a) for a in answered) == 15  # 20 admitted in that second, 15 replies in 30 s
    later = [core.handle(msg("!help", user=f"x{i}"), 10.0) for i in range(5)]
    assert not any(later)  # the reply budget is spent until 30 s after the first replies
    assert core.handle(msg("!help", user="y"), 30.6)


def test_the_global_rate_holds_for_fractions_and_refills_over_time() -> None:
    core = ChatCore(ChatRules(commands_per_s=0.5, reply_cooldown_s=0))
    admitted = [t for t in range(10) if core.handle(msg("!help", user=str(t)), float(t))]
    assert admitted == [0, 2, 4, 6, 8]  # one command per 2 s, not one per second
    core = ChatCore(ChatRules(commands_per_s=3, replies_per_30s=100, reply_cooldown_s=0))
    burst = [bool(core.handle(msg("!help", user=f"a{i}"), 0.0)) for i in range(6)]
    assert burst == [True] * 3 + [False] * 3  # a burst of at most 3
    assert bool(core.handle(msg("!help", user="b"), 1 / 3 + 1e-9))  # one token back after a third of a second
    assert not core.handle(msg("!help", user="c"), 0.4)


def test_a_command_after_a_reply_mention_counts() -> None:
    core = ChatCore(RULES)
    assert replies(core.handle(msg("@DreamBot !stats"), 0))  # Twitch's reply: "@login " first
    assert core.handle(msg("@someone hello !stats", user="2"), 0) == []  # a command must follow the mention
    assert core.handle(msg("@ !stats", user="3"), 0) == []  # an empty mention is not one


def test_dream_steers_once_per_cooldown_and_shows_a_canonical_line() -> None:
    core = ChatCore(RULES)
    effects = core.handle(msg("!dream please show me \u202eevil", login="Bob\u200b!"), 0)
    assert effects == [Show("bob", "!dream"), Steer("dream", "asked by bob")]
    assert core.handle(msg("!dream", user="2"), 5) == []
    assert Steer("dream", "asked by alice") in core.handle(msg("!dream", user="2"), 16)


def test_poll_needs_a_moderator_and_counts_one_vote_per_viewer() -> None:
    core = ChatCore(RULES)
    assert core.handle(msg("!poll next? | a | b"), 0) == []  # viewers cannot start polls
    mod = msg("!poll 20 Next opponent? | stockfish | greedy | random", user="mod", roles=frozenset({"moderator"}))
    assert replies(core.handle(mod, 0)) == [
        "poll: Next opponent? 1 = stockfish, 2 = greedy, 3 = random (!vote N, 20 s)"]
    assert core.handle(msg("!vote 2", user="a", login="ann"), 1) == [Show("ann", "!vote 2 (greedy)")]
    assert core.handle(msg("!vote stockfish", user="b"), 1) == [Show("alice", "!vote 1 (stockfish)")]
    assert core.handle(msg("!vote 1", user="a", login="ann"), 5) == [Show("ann", "!vote 1 (stockfish)")]  # changed
    assert replies(core.handle(msg("!vote 9", user="c"), 5)) == [
        "vote with a number: 1 = stockfish, 2 = greedy, 3 = random"]
    view = core.poll_view(10)
    assert view.question == "Next opponent?" and view.seconds_left == 10
    assert view.votes == {"1. stockfish": 2, "2. greedy": 0, "3. random": 0}
    assert core.tick(19) == []
    assert replies(core.tick(20)) == ["poll closed: Next opponent? stockfish (2 of 2)"]
    assert core.poll_view(21).seconds_left == 0  # the result stays visible a while
    assert replies(core.handle(msg("!vote 1", user="d"), 22)) == ["no poll is running"]
    core.tick(20 + RULES.show_closed_poll_s)
    assert core.poll_view(40) is None


def test_bad_poll_commands_get_the_usage() -> None:
    core = ChatCore(RULES)
    op = frozenset({"operator"})
    assert "usage" in replies(core.handle(msg("!poll only a question", roles=op), 0))[0]
    assert "usage" in replies(core.handle(msg("!poll q | one", user="2", roles=op), 0))[0]
    assert core.poll is None


def test_reset_vote_passes_with_enough_yes_votes_and_then_cools_down() -> None:
    core = ChatCore(RULES)
    start = core.handle(msg("!reset", user="a", login="ann"), 0)
    assert Show("ann", "!reset") in start and "ann wants to restart the game" in replies(start)[0]
    core.handle(msg("!reset", user="b", login="bea"), 1)  # asking again is a yes vote
    core.handle(msg("!vote 2", user="c"), 1)
    effects = core.tick(RULES.reset_poll_s)
    assert Steer("reset_episode", "chat vote 2 of 3") in effects
    core.tick(RULES.reset_poll_s + RULES.show_closed_poll_s)
    assert "again in" in replies(core.handle(msg("!reset", user="d"), 100))[0]


def test_reset_vote_fails_without_the_minimum_or_on_a_tie() -> None:
    core = ChatCore(RULES)
    core.handle(msg("!reset", user="a"), 0)
    effects = core.tick(RULES.reset_poll_s)
    assert not any(isinstance(e, Steer) for e in effects)
    assert replies(effects) == ["poll closed: Restart the game? yes, but 2 votes are needed"]
    core = ChatCore(RULES)
    core.handle(msg("!reset", user="a"), 0)
    core.handle(msg("!vote 2", user="b"), 1)
    effects = core.tick(RULES.reset_poll_s)
    assert replies(effects) == ["poll closed: Restart the game? a tie"]
    assert not any(isinstance(e, Steer) for e in effects)


def test_memory_for_viewers_is_bounded() -> None:
    core = ChatCore(ChatRules(commands_per_s=10**9, replies_per_30s=10**9))
    for i in range(MAX_USERS + 10):
        core.handle(msg("!stats", user=str(i)), float(i))
    assert len(core._last_command) == MAX_USERS


def test_text_cleaning_drops_invisible_and_control_characters() -> None:
    assert clean_text("  !vote\u200b  1\x00\n\u202e ", 50) == "!vote 1"
    assert clean_text("ｆｕｌｌｗｉｄｔｈ", 50) == "fullwidth"  # NFKC
    assert clean_text("x" * 10_000, 500) == "x" * 500
    assert clean_login("Ann-Marie\u200b<script>") == "annmariescript" and clean_login("\u202e") == "viewer"


@example("vote \u2776", "x", frozenset(), 0.0)
@example("poll \u1369 q | a | b", "x", frozenset({"moderator"}), 0.0)
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600), st.text(max_size=40), st.frozensets(st.sampled_from(
    ["broadcaster", "moderator", "vip", "operator", "x"])), st.floats(0, 1e6, allow_nan=False))
def test_no_message_can_crash_the_core_or_put_raw_text_on_the_overlay(text, login, roles, now) -> None:
    core = ChatCore(RULES)
    core.handle(msg("!poll q | yes | no", roles=frozenset({"operator"})), now)
    for effects in (core.handle(Message(user_id="v", login=login, text=text, roles=roles), now),
                    core.handle(Message(user_id="w", login=login, text="!" + text, roles=roles), now + 3),
                    core.tick(now + 1e5)):
        for effect in effects:
            assert isinstance(effect, Reply | Show | Steer)
            if isinstance(effect, Show):
                assert effect.user == clean_login(login)
                assert effect.text in ("!dream", "!reset") or effect.text.startswith("!vote ")
            if isinstance(effect, Reply):
                assert len(effect.text) <= 500 and "\u202e" not in effect.text


def test_hub_serialises_transports_and_announces_to_the_others() -> None:
    said, steered = [], []
    clock = {"now": 0.0}
    hub = ChatHub(ChatCore(RULES), on_steer=steered.append, clock=lambda: clock["now"])
    hub.add_announcer("twitch", said.append)
    out = hub.submit(msg("!poll 10 Which? | a | b", user="op", login="operator", roles=frozenset({"operator"})),
                     "local")
    assert [r.text for r in out] == ["poll: Which? 1 = a, 2 = b (!vote N, 10 s)"]
    assert said == ["poll: Which? 1 = a, 2 = b (!vote N, 10 s)"]  # the poll opened on the dashboard reaches Twitch
    threads = [threading.Thread(target=hub.submit, args=(msg("!vote 1", user=str(i)), "twitch")) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert hub.poll().votes["1. a"] == 20  # the global rate admitted 20 viewers' commands in that second
    clock["now"] = 10
    hub.tick()
    assert said[-1] == "poll closed: Which? a (20 of 20)"
    hub.submit(msg("!help", user="op", login="operator", roles=frozenset({"operator"})), "local")
    assert said[-1] == "poll closed: Which? a (20 of 20)"  # a reply to the operator is not said on Twitch
    assert hub.history(after=0)[0]["text"].startswith("!poll") and hub.errors == 0


def test_hub_survives_a_failing_steer_and_a_failing_transport(caplog) -> None:
    def boom(_):
        raise RuntimeError("boom")

    hub = ChatHub(ChatCore(RULES), on_steer=boom)
    hub.add_announcer("twitch", boom)
    assert hub.submit(msg("!dream"), "local") == []
    hub.submit(msg("!poll 10 q | a | b", user="op", roles=frozenset({"operator"})), "local")
    assert hub.errors == 2 and "steering dream failed" in caplog.text and "announcing to twitch failed" in caplog.text
    assert hub.lines() == [Show("alice", "!dream")]


def test_chat_settings_reach_the_rules() -> None:
    from app.settings import ChatConfig

    values = {"user_cooldown_s": 1.5, "commands_per_s": 7.0, "replies_per_30s": 9, "reply_cooldown_s": 11.0,
              "dream_cooldown_s": 13.0, "poll_s": 17.0, "reset_poll_s": 19.0, "reset_min_votes": 23,
              "reset_cooldown_s": 29.0}
    rules = ChatConfig(**values).rules()
    assert {k: getattr(rules, k) for k in values} == values


def test_disabled_commands_do_nothing_and_leave_help() -> None:
    from dataclasses import replace

    core = ChatCore(replace(RULES, disabled=frozenset({"reset", "poll"})))
    assert core.handle(msg("!reset", user="1"), 0) == [] and core.poll is None
    assert core.handle(msg("!poll 30 Q? | a | b", user="m", roles=frozenset({"moderator"})), 0) == []
    assert core.poll is None and core.dropped == 0  # not a rate limit: the command is off
    (help_reply,) = replies(core.handle(msg("!help", user="m", roles=frozenset({"moderator"})), 5))
    assert "!reset" not in help_reply and "!poll" not in help_reply and "!endpoll" in help_reply
    assert "!stats" in help_reply and "!vote N" in help_reply


def test_ignored_users_are_not_heard_and_stay_off_the_stream() -> None:
    from dataclasses import replace

    from app.settings import ChatConfig

    rules = ChatConfig(ignore_users=("@NightBot",), disabled_commands=("!dream",)).rules()
    assert rules.ignored == frozenset({"nightbot"}) and rules.disabled == frozenset({"dream"})
    hub = ChatHub(ChatCore(replace(RULES, ignored=rules.ignored)), on_steer=lambda _: None, clock=lambda: 0.0)
    assert hub.submit(msg("!stats", user="9", login="Nightbot"), "twitch") == []
    assert hub.history(after=0) == [] and hub.lines() == []
    assert hub.submit(msg("!stats", user="1", login="alice"), "twitch")  # everyone else is heard


def test_an_unknown_disabled_command_is_a_config_error() -> None:
    import pytest

    from app.config import resolve
    from app.errors import ConfigError

    with pytest.raises(ConfigError, match="chat.disabled_commands: unknown command 'rset'; the commands are help"):
        resolve(overrides=[("chat.disabled_commands", ["rset"])], environ={})


def test_moderation_settings_are_checked_and_never_mute_the_operator() -> None:
    import pytest

    from app.config import resolve
    from app.errors import ConfigError

    for value, words in ((["闇の王"], "is not a Twitch login"), ([""], "is not a Twitch login"),
                         (["@"], "is not a Twitch login")):
        with pytest.raises(ConfigError, match=words):  # a display name became 'viewer': everyone with no login
            resolve(overrides=[("chat.ignore_users", value)], environ={})
    with pytest.raises(ConfigError, match="without vote, disable reset and poll too"):
        resolve(overrides=[("chat.disabled_commands", ["vote"])], environ={})
    resolve(overrides=[("chat.disabled_commands", ["vote", "reset", "poll"])], environ={})
    with pytest.raises(ConfigError, match="storage.keep_train_details_days"):
        resolve(overrides=[("storage.keep_train_details_days", 1e6)], environ={})
    from dataclasses import replace

    core = ChatCore(replace(RULES, ignored=frozenset({"operator"})))
    op = msg("!stats", user="op", login="operator", roles=frozenset({"operator"}))
    assert not core.ignores(op) and core.handle(op, 0)  # the dashboard's own box is never muted
