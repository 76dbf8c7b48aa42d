"""Config system: block merge order, overrides, validation messages, secrets, resume compatibility."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
import yaml

from app.config import (
    Config,
    changed_keys,
    describe,
    diff_on_resume,
    field_docs,
    load_blocks,
    parse_overrides,
    resolve,
    secret_envs,
    to_dict,
    valid_keys,
)
from app.errors import ConfigError

BLOCKS = {
    "defaults": {"env": {"id": "crafter"}},
    "small": {"trainer": {"batch_size": 4, "batch_length": 8}, "stream": {"fps": 15}},
    "bigger": {"trainer": {"batch_size": 32}},
    "typo": {"trainer": {"batchsize": 3}},
}


def test_blocks_merge_in_order_then_overrides() -> None:
    cfg = resolve(["small", "bigger"], [("stream.fps", 60)], environ={}, blocks=BLOCKS)
    assert cfg.trainer.batch_size == 32  # the later block wins
    assert cfg.trainer.batch_length == 8  # earlier block keys survive
    assert cfg.stream.fps == 60  # the override wins over every block
    assert cfg.stream.bitrate_kbps == 4500  # untouched keys keep the dataclass default


def test_default_config_needs_no_credentials() -> None:
    cfg = resolve(environ={}, blocks=load_blocks())
    assert cfg.stream.target == "file" and not cfg.chat.twitch and cfg.dashboard.host == "127.0.0.1"


@pytest.mark.parametrize(("names", "overrides", "message"), [
    pytest.param(["nonsense"], [], "unknown config block 'nonsense'; valid blocks: bigger, small, typo",
                 id="unknown-block"),
    pytest.param(["smal"], [], "unknown config block 'smal' (did you mean 'small'?)", id="block-typo"),
    pytest.param([], [("trainer.batchsize", 3)],
                 "unknown key 'trainer.batchsize' (did you mean 'trainer.batch_size'?)", id="unknown-key"),
    pytest.param(["typo"], [], "unknown key 'trainer.batchsize' in block 'typo' (did you mean "
                 "'trainer.batch_size'?)", id="unknown-key-in-block"),
    pytest.param([], [("strem.fps", 3)], "unknown key 'strem.fps' (did you mean 'stream.fps'?)",
                 id="section-typo"),
    pytest.param([], [("stream.fps", 0)], "stream.fps = 0: must be between 1 and 120", id="range"),
    pytest.param([], [("run.steps", -1)], "run.steps = -1: must be >= 0", id="lower-bound"),
    pytest.param([], [("stream.keyframe_interval_s", 0)], "stream.keyframe_interval_s = 0: must be > 0 and <= 10",
                 id="open-bound"),
    pytest.param([], [("trainer.batch_size", "abc")], "trainer.batch_size = 'abc': must be an integer",
                 id="not-int"),
    pytest.param([], [("trainer.batch_size", True)], "trainer.batch_size = true: must be an integer",
                 id="bool-is-not-int"),
    pytest.param([], [("stream.enabled", "yes please")], "stream.enabled = 'yes please': must be true or false",
                 id="not-bool"),
    pytest.param([], [("stream.preset", "slowest")], "stream.preset = 'slowest': must be one of 'ultrafast', "
                 "'superfast', 'veryfast', 'faster', 'fast', 'medium'", id="not-a-choice"),
    pytest.param([], [("run.duration_s", "nan")], "run.duration_s = 'nan': must be a finite number", id="nan"),
    pytest.param([], [("stream", 3)], "'stream' is a section, not a key; give a key such as stream.<name>",
                 id="section-as-key"),
    pytest.param([], [("stream.width", 641)], "stream.width x stream.height = 641x720: must both be even "
                 "(yuv420p needs even sizes)", id="cross-field"),
    pytest.param([], [("stream.target", "http://x")], "stream.target = 'http://x': must be 'file', 'local', "
                 "'twitch' or an rtmp(s):// URL", id="bad-target"),
    pytest.param([], [("stream.stream_key", "live_123")], "stream.stream_key is a secret: set the environment "
                 "variable TWITCH_STREAM_KEY (or put it in an env file), not on the command line",
                 id="secret-on-command-line"),
    pytest.param([], [("dashboard.host", "0.0.0.0")], "dashboard.host = '0.0.0.0': binding beyond loopback "
                 "needs a token; set DREAMSTREAM_DASHBOARD_TOKEN", id="open-dashboard-needs-token"),
    pytest.param([], [("stream.target", "twitch")], "stream.target = 'twitch' needs the stream key: set "
                 "TWITCH_STREAM_KEY in the environment or an env file", id="twitch-needs-key"),
])
def test_invalid_config_names_key_value_and_what_is_valid(names, overrides, message) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(names, overrides, environ={}, blocks=BLOCKS)
    assert str(info.value) == message


def test_secret_in_yaml_block_is_refused() -> None:
    blocks = {**BLOCKS, "leaky": {"stream": {"stream_key": "live_123"}}}
    with pytest.raises(ConfigError, match="not in block 'leaky'"):
        resolve(["leaky"], environ={}, blocks=blocks)


@pytest.mark.parametrize(("text", "value"), [
    pytest.param("16", 16, id="int"), pytest.param("4e-5", "4e-5", id="yaml-1.1-float-string"),
    pytest.param("true", True, id="bool"), pytest.param("[1, 2]", [1, 2], id="list"),
    pytest.param("rtmp://a/b", "rtmp://a/b", id="url"), pytest.param("", "", id="empty"),
])
def test_override_values_are_parsed_as_yaml(text, value) -> None:
    assert parse_overrides(["--x.y", text]) == [("x.y", value)]
    assert parse_overrides([f"--x.y={text}"]) == [("x.y", value)]


def test_float_fields_accept_yaml_1_1_exponent_strings() -> None:
    cfg = resolve([], parse_overrides(["--run.duration_s", "1e2"]), environ={}, blocks=BLOCKS)
    assert cfg.run.duration_s == 100.0


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--stream.fps"], "--stream.fps needs a value (e.g. --stream.fps 16)", id="missing-value"),
    pytest.param(["--verbose"], "unexpected argument '--verbose': overrides look like --section.key value "
                 "(e.g. --trainer.batch_size 16)", id="not-dotted"),
    pytest.param(["stream.fps", "3"], "unexpected argument 'stream.fps': overrides look like --section.key value "
                 "(e.g. --trainer.batch_size 16)", id="no-dashes"),
])
def test_bad_override_syntax(args, message) -> None:
    with pytest.raises(ConfigError) as info:
        parse_overrides(args)
    assert str(info.value) == message


def test_secrets_come_from_the_environment_and_never_show() -> None:
    env = {"TWITCH_STREAM_KEY": "live_secret_123", "DREAMSTREAM_DASHBOARD_TOKEN": "tok-456"}
    cfg = resolve([], [("stream.target", "twitch")], environ=env, blocks=BLOCKS)
    assert cfg.stream.stream_key == "live_secret_123"
    assert "live_secret_123" not in repr(cfg) and "tok-456" not in repr(cfg)
    saved = to_dict(cfg)
    assert "stream_key" not in saved["stream"] and "token" not in saved["dashboard"]
    masked = to_dict(cfg, secrets="mask")
    assert masked["stream"]["stream_key"] == "***" and masked["chat"]["bot_token"] == ""
    assert "live_secret_123" not in str(saved) + str(masked)


def test_every_secret_names_its_environment_variable() -> None:
    assert secret_envs() == {
        "stream.stream_key": "TWITCH_STREAM_KEY",
        "chat.client_secret": "TWITCH_CLIENT_SECRET",
        "chat.bot_token": "TWITCH_BOT_TOKEN",
        "chat.bot_refresh_token": "TWITCH_BOT_REFRESH_TOKEN",
        "dashboard.token": "DREAMSTREAM_DASHBOARD_TOKEN",
        "obs.password": "OBS_WEBSOCKET_PASSWORD",
        "obs.stream_key": "TWITCH_STREAM_KEY",
    }


def test_saved_config_round_trips() -> None:
    cfg = resolve(["small"], [("run.name", "demo")], environ={}, blocks=BLOCKS)
    again = resolve(environ={}, blocks=BLOCKS, base=to_dict(cfg))
    assert again == cfg


def test_resume_names_every_incompatible_key() -> None:
    saved = resolve([], [], environ={}, blocks=BLOCKS)
    now = resolve([], [("env.id", "chess"), ("env.image_size", 96), ("stream.fps", 60)], environ={}, blocks=BLOCKS)
    assert diff_on_resume(saved, now) == ["env.id: 'crafter' -> 'chess'", "env.image_size: 64 -> 96"]
    assert changed_keys(saved, now) == ["env.id: 'crafter' -> 'chess'", "env.image_size: 64 -> 96",
                                        "stream.fps: 30 -> 60"]


def test_compatible_change_on_resume_is_allowed() -> None:
    saved = resolve([], [], environ={}, blocks=BLOCKS)
    now = resolve([], [("stream.bitrate_kbps", 3000)], environ={}, blocks=BLOCKS)
    assert diff_on_resume(saved, now) == []


def test_configs_are_frozen_and_hashable() -> None:
    cfg = resolve([], [], environ={}, blocks=BLOCKS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.stream.fps = 3  # type: ignore[misc]
    assert hash(cfg.trainer) == hash(resolve([], [], environ={}, blocks=BLOCKS).trainer)


def _dataclasses(cls: type, prefix: str = "") -> list[tuple[str, type]]:
    found = [(prefix.rstrip("."), cls)]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            found += _dataclasses(hints[f.name], f"{prefix}{f.name}.")
    return found


def test_every_field_has_a_default_and_a_docstring() -> None:
    missing = []
    for prefix, cls in _dataclasses(Config):
        docs = field_docs(cls)
        missing += [f"{prefix}.{f.name}".lstrip(".") for f in dataclasses.fields(cls) if not docs.get(f.name)]
        cls()  # constructible with defaults only
    assert not missing, f"fields without a docstring: {missing}"
    assert [row[0] for row in describe()] == list(valid_keys())


def test_shipped_blocks_are_valid(tmp_path: Path) -> None:
    blocks = load_blocks()
    assert {"defaults", "tiny", "crafter", "twitch"} <= set(blocks)
    env = {"TWITCH_STREAM_KEY": "k"}
    for name in blocks:
        resolve([name], environ=env, blocks=blocks)


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("a: [1, 2\n", "invalid YAML", id="broken-yaml"),
    pytest.param("- 1\n- 2\n", "must hold named blocks (a mapping), got list", id="not-a-mapping"),
    pytest.param("a: 3\n", "block 'a' in bad.yaml must be a mapping, got int", id="block-not-mapping"),
])
def test_broken_config_files_are_reported(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_blocks(tmp_path)


def test_duplicate_block_names_across_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("x: {}\n")
    (tmp_path / "b.yaml").write_text("x: {}\n")
    with pytest.raises(ConfigError, match=re.escape("block 'x' is defined twice: in a.yaml and b.yaml")):
        load_blocks(tmp_path)


def test_a_users_own_yaml_file_is_a_block(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("stream:\n  fps: 24\n")
    assert resolve([str(mine)], environ={}, blocks=BLOCKS).stream.fps == 24



def test_text_settings_keep_numbers_as_written(tmp_path: Path) -> None:
    """YAML 1.1 reads 0123 as octal 83, 2024_01 as 202401 and 1:20 as 80; a text setting is what was typed."""
    cfg = resolve([], parse_overrides(["--chat.channel", "0123", "--run.name", "2024_01"]), environ={}, blocks=BLOCKS)
    assert (cfg.chat.channel, cfg.run.name) == ("0123", "2024_01")
    mine = tmp_path / "mine.yaml"
    mine.write_text("chat:\n  channel: 1:20\nrun:\n  name: 1e3\nstream:\n  fps: 24\n")
    cfg = resolve([str(mine)], environ={}, blocks=BLOCKS)
    assert (cfg.chat.channel, cfg.run.name, cfg.stream.fps) == ("1:20", "1e3", 24)
    assert type(cfg.stream.fps) is int and yaml.safe_load(yaml.safe_dump(to_dict(cfg)))["chat"]["channel"] == "1:20"


def test_obs_mode_needs_the_local_stream_or_a_game_url() -> None:
    with pytest.raises(ConfigError) as info:
        resolve([], [("obs.enabled", True)], environ={}, blocks=BLOCKS)
    assert str(info.value) == ("obs.enabled needs stream.target = 'local' (OBS plays the app's local RTMP stream) "
                               "or obs.game_url; got stream.target = 'file'")
    cfg = resolve([], [("obs.enabled", True), ("stream.target", "local")], environ={}, blocks=BLOCKS)
    assert cfg.obs.enabled


def test_distributed_settings_reach_jax_distributed(monkeypatch) -> None:
    """The join and heartbeat timeouts are passed on (a dead process then stops the others within the
    heartbeat timeout: 13 s at 10 s by hand with two `dreamstream train` processes and a kill -9)."""
    import jax

    from trainer.distributed import initialize

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(jax.config, "update", lambda *args: None)  # the gloo switch would outlive this test
    cfg = resolve(["tiny"], [("trainer.distributed.coordinator", "10.0.0.1:1234"),
                             ("trainer.distributed.num_processes", 2), ("trainer.distributed.process_id", 1),
                             ("trainer.distributed.heartbeat_timeout_s", 10)], environ={}, blocks=load_blocks())
    initialize(cfg.trainer.distributed)
    assert calls == [{"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1,
                      "initialization_timeout": 300, "heartbeat_timeout_seconds": 10}]
