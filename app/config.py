"""Config loading: YAML blocks merged in order, dotted overrides, secrets from the environment, validation.

Each package owns a frozen dataclass of its settings; `Config` gathers them under one section each. The
dataclasses are the single source of defaults. YAML blocks in `configs/` only change values, the
`defaults` block first, then the blocks named by `--configs`, then `--section.key value` overrides.
Every problem becomes a `ConfigError` that names the key, the value and what would be valid.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import itertools
import math
import os
import sys
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types as at
import yaml

from app.errors import ConfigError
from app.settings import ChatConfig, DashboardConfig, RunConfig, SchedulerConfig, StorageConfig
from envs.config import EnvConfig
from overlays.config import OverlayConfig
from stream.config import StreamConfig
from stream.obs import ObsConfig
from trainer.config import TrainerConfig

__all__ = [
    "RENAMED_KEYS",
    "Config",
    "config_dir",
    "diff_on_resume",
    "field_docs",
    "load_blocks",
    "parse_overrides",
    "resolve",
    "secret_envs",
    "to_dict",
    "upgrade_saved",
    "valid_keys",
]

SECRET_MASK = "***"


@dataclass(frozen=True, kw_only=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    """The run: length, pacing, logging."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """The game the agent plays."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """The agent and its learner."""
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    """The broadcast frame."""
    stream: StreamConfig = field(default_factory=StreamConfig)
    """The broadcast output."""
    obs: ObsConfig = field(default_factory=ObsConfig)
    """OBS mode: drive a running OBS Studio over its WebSocket (optional; the ffmpeg path is the default)."""
    chat: ChatConfig = field(default_factory=ChatConfig)
    """Viewer chat: local box and Twitch bot."""
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    """The operator's web dashboard."""
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    """Periodic jobs: saves, checkpoints, evals."""
    storage: StorageConfig = field(default_factory=StorageConfig)
    """Database and metrics files."""


# ---------------------------------------------------------------------------------------------------------
# Blocks


def config_dir() -> Path:
    """Return the folder holding the YAML blocks: the checkout's `configs/`, else the installed copy."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "dreamstream" / "configs"


def load_blocks(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """Return every named block of every `*.yaml` file in the config folder."""
    directory = directory or config_dir()
    blocks: dict[str, dict[str, Any]] = {}
    origin: dict[str, Path] = {}
    for path in sorted(directory.glob("*.yaml")):
        for name, block in _read_yaml(path).items():
            if name in blocks:
                raise ConfigError(f"block {name!r} is defined twice: in {origin[name].name} and {path.name}")
            if block is None:
                block = {}
            if not isinstance(block, dict):
                raise ConfigError(f"block {name!r} in {path.name} must be a mapping, got {_kind(block)}")
            blocks[name] = block
            origin[name] = path
    return blocks


class _Int(int):
    """An int read from YAML that remembers its text: a text setting given as `0123` or `2024_01` is that text,
    not the number YAML 1.1 makes of it (83, 202401)."""

    text: str


class _Float(float):
    text: str


class _Loader(yaml.SafeLoader):
    """yaml.safe_load, but numbers keep the text they were written as (see `_Int`)."""


def _number(kind: type, base: Any) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        value = kind(base(loader, node))
        value.text = node.value
        return value
    return construct


_Loader.add_constructor("tag:yaml.org,2002:int", _number(_Int, yaml.SafeLoader.construct_yaml_int))
_Loader.add_constructor("tag:yaml.org,2002:float", _number(_Float, yaml.SafeLoader.construct_yaml_float))


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass


def _kind(value: Any) -> str:
    return "int" if isinstance(value, _Int) else "float" if isinstance(value, _Float) else type(value).__name__


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = _load_yaml(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold named blocks (a mapping), got {_kind(data)}")
    return data


def _block(name: str, blocks: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    if name in blocks:
        return blocks[name]
    if name.endswith((".yaml", ".yml")):
        # A user's own file holds one partial config (sections at the top level), not named blocks.
        return _read_yaml(Path(name))
    names = sorted(n for n in blocks if n != "defaults")
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; valid blocks: {', '.join(names)}"
    raise ConfigError(f"unknown config block {name!r}{hint}")


# ---------------------------------------------------------------------------------------------------------
# Keys


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def valid_keys(cls: type = Config, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Return every settable dotted key of `cls` with its dataclass field (nested dataclasses flattened)."""
    keys: dict[str, dataclasses.Field] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if _is_section(hints[f.name]):
            keys.update(valid_keys(hints[f.name], key + "."))
        else:
            keys[key] = f
    return keys


def secret_envs(cls: type = Config) -> dict[str, str]:
    """Return {dotted key: environment variable} for every secret field."""
    return {k: f.metadata["secret_env"] for k, f in valid_keys(cls).items() if "secret_env" in f.metadata}


RENAMED_KEYS: dict[str, str] = {}
"""Keys renamed between versions, old dotted key -> new one: a run dir's saved config is read through this table,
so an upgrade does not strand a run made by an older version."""


def upgrade_saved(saved: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Return a saved config as a flat {dotted key: value} this version accepts, and a note per change: renamed
    keys are moved, and keys this version does not know (removed, or from a newer version) are dropped. Secrets
    and session-only keys are dropped silently (never saved by this version; an older one kept the latter)."""
    keys, secrets, session = valid_keys(), secret_envs(), session_only_keys()
    sections = {k.split(".", 1)[0] for k in keys}
    given = _flatten(saved)
    flat: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in given.items():
        if value == {} or (value is None and key in sections):
            continue  # an empty section (`storage:` reads as null)
        if key in RENAMED_KEYS:
            new = RENAMED_KEYS[key]
            if new in given:  # both names: the new one is the newer value
                notes.append(f"{key} was renamed {new}, which is set too; {key} = {_show(value)} dropped")
                continue
            notes.append(f"{key} is now {new}")
            key = new
        if key in secrets or key in session:
            continue
        if key not in keys:
            notes.append(f"{key} = {_show(value)} is not a key of this version; dropped{_suggest(key, keys)}")
            continue
        flat[key] = value
    return flat, notes


def session_only_keys(cls: type = Config) -> set[str]:
    """Return the dotted keys that apply to the session that sets them and are not saved in the run dir."""
    return {k for k, f in valid_keys(cls).items() if f.metadata.get("session_only")}


def secret_values(cfg: Config) -> list[str]:
    """Return the values of the secrets set in `cfg` (for masking them in logs and error texts)."""
    values = []
    for key in secret_envs():
        section, name = key.split(".", 1)
        values.append(getattr(getattr(cfg, section), name))
    return [v for v in values if v]


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        key = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def _suggest(key: str, keys: Iterable[str]) -> str:
    keys = list(keys)
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if not close:
        # A misspelt section: match the last part against every key's last part.
        leaf = key.rsplit(".", 1)[-1]
        close = [k for k in keys if k.rsplit(".", 1)[-1] == leaf][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(flat: Mapping[str, Any], where: str) -> None:
    keys = valid_keys()
    secrets = secret_envs()
    for key in flat:
        if key in secrets:
            raise ConfigError(f"{key} is a secret: set the environment variable {secrets[key]} "
                              f"(or put it in an env file), not {where or 'on the command line'}")
        if key not in keys:
            sections = {k.split(".", 1)[0] for k in keys}
            if key in sections:
                raise ConfigError(f"{key!r} is a section, not a key; give a key such as {key}.<name>")
            in_where = f" {where}" if where else ""
            raise ConfigError(f"unknown key {key!r}{in_where}{_suggest(key, keys)}")


# ---------------------------------------------------------------------------------------------------------
# Values


def _show(value: Any) -> str:
    """Return a value as it would be typed in YAML (strings quoted)."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _bounds_text(meta: Sequence[Any]) -> tuple[list[str], list[Any]]:
    """Return human words for the bound markers and the markers that are bounds."""
    lo = hi = None
    lo_open = hi_open = False
    bounds = []
    for m in meta:
        if isinstance(m, at.Interval):
            bounds.append(m)
            lo, lo_open = (m.gt, True) if m.gt is not None else (m.ge, False) if m.ge is not None else (lo, lo_open)
            hi, hi_open = (m.lt, True) if m.lt is not None else (m.le, False) if m.le is not None else (hi, hi_open)
        elif isinstance(m, at.Gt | at.Ge | at.Lt | at.Le):
            bounds.append(m)
            if isinstance(m, at.Gt):
                lo, lo_open = m.gt, True
            elif isinstance(m, at.Ge):
                lo, lo_open = m.ge, False
            elif isinstance(m, at.Lt):
                hi, hi_open = m.lt, True
            else:
                hi, hi_open = m.le, False
    if lo is not None and hi is not None and not lo_open and not hi_open:
        words = [f"between {lo} and {hi}"]
    else:
        words = []
        if lo is not None:
            words.append(f"{'>' if lo_open else '>='} {lo}")
        if hi is not None:
            words.append(f"{'<' if hi_open else '<='} {hi}")
    return words, bounds


def _in_bounds(value: Any, bounds: Sequence[Any]) -> bool:
    for m in bounds:
        for attr, ok in (("gt", lambda v, b: v > b), ("ge", lambda v, b: v >= b),
                         ("lt", lambda v, b: v < b), ("le", lambda v, b: v <= b)):
            bound = getattr(m, attr, None)
            if bound is not None and not ok(value, bound):
                return False
    return True


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Return `value` converted to type `tp`, or raise ConfigError naming key, value and what is valid."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        out = _coerce(key, value, base)
        words, bounds = _bounds_text(meta)
        if bounds and not _in_bounds(out, bounds):
            raise ConfigError(f"{key} = {_show(value)}: must be {' and '.join(words)}")
        return out
    if origin is Literal:
        choices = get_args(tp)
        if value in choices and not (isinstance(value, bool) and True in choices):
            return choices[choices.index(value)]  # the plain value, not a number that remembers its text
        raise ConfigError(f"{key} = {_show(value)}: must be one of {', '.join(_show(c) for c in choices)}")
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(key, value, inner[0])
        raise TypeError(f"unsupported config type {tp} for {key}")
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} = {_show(value)}: must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key} = {_show(list(value))}: must be a list of {len(args)} values")
        return tuple(_coerce(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} = {_show(value)}: must be true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} = {_show(value)}: must be an integer")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            out = float(value)
        elif isinstance(value, str):
            # YAML 1.1 reads '4e-5' as a string; accept what Python reads as a number.
            try:
                out = float(value)
            except ValueError:
                raise ConfigError(f"{key} = {_show(value)}: must be a number") from None
        else:
            raise ConfigError(f"{key} = {_show(value)}: must be a number")
        if not math.isfinite(out):
            raise ConfigError(f"{key} = {_show(value)}: must be a finite number")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return getattr(value, "text", str(value))  # as written: `0123` stays 0123
        raise ConfigError(f"{key} = {_show(value)}: must be a string")
    raise TypeError(f"unsupported config type {tp} for {key}")


def _build(cls: type, flat: Mapping[str, Any], prefix: str = "") -> Any:
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if _is_section(tp):
            kwargs[f.name] = _build(tp, flat, key + ".")
        elif key in flat:
            kwargs[f.name] = _coerce(key, flat[key], tp)
    try:
        built = cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if cls is Config:
        _check_across_sections(built)
    return built


def _check_across_sections(cfg: Config) -> None:
    """Checks that involve more than one section."""
    if cfg.obs.enabled and not cfg.obs.game_url and cfg.stream.target != "local":
        raise ConfigError(f"obs.enabled needs stream.target = 'local' (OBS plays the app's local RTMP stream) or "
                          f"obs.game_url; got stream.target = {cfg.stream.target!r}")


# ---------------------------------------------------------------------------------------------------------
# Resolution


def parse_overrides(args: Sequence[str]) -> list[tuple[str, Any]]:
    """Return (dotted key, value) pairs from `--section.key value` / `--section.key=value` arguments."""
    pairs: list[tuple[str, Any]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            raise ConfigError(f"unexpected argument {arg!r}: overrides look like --section.key value "
                              "(e.g. --trainer.batch_size 16)")
        if "=" in arg:
            key, text = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"{arg} needs a value (e.g. {arg} 16)")
            key, text = arg[2:], args[i + 1]
            i += 2
        pairs.append((key, _parse_value(key, text)))
    return pairs


def _parse_value(key: str, text: str) -> Any:
    try:
        return _load_yaml(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def resolve(
    names: Sequence[str] = (),
    overrides: Sequence[tuple[str, Any]] = (),
    *,
    environ: Mapping[str, str] | None = None,
    blocks: Mapping[str, dict[str, Any]] | None = None,
    base: Mapping[str, Any] | None = None,
) -> Config:
    """Return the validated config: `base` (or the defaults block), then the named blocks, then overrides.

    Secrets come from `environ` (default `os.environ`) only.
    """
    blocks = load_blocks() if blocks is None else blocks
    environ = os.environ if environ is None else environ
    flat: dict[str, Any] = {}
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if base is not None:
        layers.append(("in the saved config", base))
    else:
        layers.append(("in block 'defaults'", blocks.get("defaults") or {}))
    for name in names:
        layers.append((f"in block {name!r}" if name in blocks else f"in {name}", _block(name, blocks)))
    for where, layer in layers:
        layer_flat = _flatten(layer)
        _check_keys(layer_flat, where)
        flat.update(layer_flat)
    for key, value in overrides:
        _check_keys({key: value}, "")
        flat[key] = value
    for key, env in secret_envs().items():
        if environ.get(env):
            flat[key] = environ[env]
    return _build(Config, flat)


def to_dict(config: Any, *, secrets: Literal["omit", "mask"] = "omit", session: bool = True) -> dict[str, Any]:
    """Return the config as nested plain data; secrets are left out or shown as `***`. With `session=False`,
    the keys meant for one session only (`session_only` in their metadata) are left out too (what a run dir keeps).
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value, secrets=secrets, session=session)
        elif not session and f.metadata.get("session_only"):
            continue
        elif "secret_env" in f.metadata:
            if secrets == "mask":
                out[f.name] = SECRET_MASK if value else ""
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def diff_on_resume(saved: Any, now: Any, prefix: str = "") -> list[str]:
    """Return the keys that define spaces or model shapes and differ, as `key: saved -> now` lines.

    Each dataclass names such keys in its `FIXED_ON_RESUME`; nested sections are searched too.
    """
    lines = []
    fixed = getattr(type(saved), "FIXED_ON_RESUME", ())
    for f in dataclasses.fields(saved):
        old, new = getattr(saved, f.name), getattr(now, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(old):
            lines += diff_on_resume(old, new, key + ".")
        elif f.name in fixed and old != new:
            lines.append(f"{key}: {_show(old)} -> {_show(new)}")
    return lines


def changed_keys(saved: Config, now: Config) -> list[str]:
    """Return every non-secret key whose value differs, as `key: saved -> now` lines."""
    a, b = _flatten(to_dict(saved)), _flatten(to_dict(now))
    return [f"{k}: {_show(a.get(k))} -> {_show(b.get(k))}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def field_docs(cls: type) -> dict[str, str]:
    """Return the attribute docstring (the string literal under each field) of a dataclass."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Return (key, type, default, doc) for every settable key, for `dreamstream config keys`."""
    rows = []
    docs = field_docs(cls)
    hints = _hints(cls)
    default = cls() if prefix else None
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if _is_section(tp):
            rows += describe(tp, key + ".")
            continue
        if get_origin(tp) is Annotated:
            base, *meta = get_args(tp)
            words, _ = _bounds_text(meta)
            type_text = _type_name(base) + (f" ({' and '.join(words)})" if words else "")
        else:
            type_text = _type_name(tp)
        shown = (f"env {f.metadata['secret_env']}" if "secret_env" in f.metadata
                 else _show(getattr(default, f.name)))
        rows.append((key, type_text, shown, docs.get(f.name, "")))
    return rows


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(_show(c) for c in get_args(tp))
    if get_origin(tp) is tuple:
        args = get_args(tp)
        inner = f"{_type_name(args[0])}, ..." if len(args) == 2 and args[1] is Ellipsis else \
            ", ".join(_type_name(a) for a in args)
        return f"[{inner}]"
    return getattr(tp, "__name__", str(tp))
