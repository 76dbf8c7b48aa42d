"""The env registry: ids, one-line descriptions and lazy entry points, so `import envs` needs no game."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from envs.errors import EnvError

__all__ = ["EnvSpec", "make", "register", "spec", "specs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnvSpec:
    """A registered env: its id, a one-line description and where its class lives."""

    id: str
    entry_point: str
    """'module:Class', imported only when the env is made."""
    description: str


_REGISTRY: dict[str, EnvSpec] = {}


def register(id: str, entry_point: str, description: str) -> None:
    """Add an env to the registry; ids are unique."""
    if id in _REGISTRY:
        raise EnvError(f"env id {id!r} is registered twice")
    _REGISTRY[id] = EnvSpec(id=id, entry_point=entry_point, description=description)


def specs() -> list[EnvSpec]:
    """Return every registered env, sorted by id."""
    return sorted(_REGISTRY.values(), key=lambda s: s.id)


def spec(id: str) -> EnvSpec:
    """Return the spec of `id`, or raise EnvError listing the valid ids."""
    if id not in _REGISTRY:
        raise EnvError(f"unknown env id {id!r}; registered: {', '.join(sorted(_REGISTRY))} "
                       "(`dreamstream envs` describes them)")
    return _REGISTRY[id]


def make(id: str, **kwargs: Any) -> gym.Env:
    """Return a new instance of env `id`, built with `kwargs`."""
    entry = spec(id).entry_point
    module_name, class_name = entry.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EnvError(f"env {id!r} needs {exc.name or exc}, which is not installed; run `make setup`") from exc
    log.debug("making env %s(%s)", entry, kwargs)
    try:
        return getattr(module, class_name)(**kwargs)
    except TypeError as exc:
        raise EnvError(f"env {id!r}: {exc}") from None
