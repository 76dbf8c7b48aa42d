"""The env registry: ids, one-line descriptions and lazy entry points, so `import envs` needs no game.

An id is either plain (`crafter`) or a family with a task after a slash (`atari/pong`, `dmc/cartpole_swingup`,
`gym/CartPole-v1`); a family's constructor receives the task as `task=`.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from envs.errors import EnvError

__all__ = ["EnvSpec", "make", "parse_id", "register", "spec", "specs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnvSpec:
    """A registered env: its id, a one-line description and where its class lives."""

    id: str
    entry_point: str
    """'module:Class', imported only when the env is made."""
    description: str
    default_task: str | None = None
    """For a family: the task used when the id has no '/task' part; None for plain ids."""
    options: str | None = None
    """Name of the EnvConfig section whose fields are passed as keyword arguments (e.g. 'chess')."""
    needs_display: bool = False
    """True when the env drives a real X display (started on demand); such envs are tested with Xvfb."""
    single_instance: bool = False
    """True when only one instance can run at a time (it plays through one screen or emulator): the app then
    has no second copy to run evaluations on."""

    @property
    def is_family(self) -> bool:
        return self.default_task is not None


_REGISTRY: dict[str, EnvSpec] = {}


def register(id: str, entry_point: str, description: str, *, default_task: str | None = None,
             options: str | None = None, needs_display: bool = False, single_instance: bool = False) -> None:
    """Add an env (or a family of tasks, when `default_task` is given) to the registry; ids are unique."""
    if id in _REGISTRY:
        raise EnvError(f"env id {id!r} is registered twice")
    if "/" in id:
        raise EnvError(f"env id {id!r} must not contain '/': that separates a family from its task")
    _REGISTRY[id] = EnvSpec(id=id, entry_point=entry_point, description=description, default_task=default_task,
                            options=options, needs_display=needs_display, single_instance=single_instance)


def specs() -> list[EnvSpec]:
    """Return every registered env, sorted by id."""
    return sorted(_REGISTRY.values(), key=lambda s: s.id)


def parse_id(id: str) -> tuple[EnvSpec, str | None]:
    """Return the spec and the task of an id like 'crafter' or 'atari/pong'."""
    base, _, task = id.partition("/")
    if base not in _REGISTRY:
        raise EnvError(f"unknown env id {id!r}; registered: {', '.join(sorted(_REGISTRY))} "
                       "(`dreamstream envs` describes them)")
    found = _REGISTRY[base]
    if task and not found.is_family:
        raise EnvError(f"env {base!r} has no tasks; use the plain id {base!r}")
    return found, (task or found.default_task) if found.is_family else None


def spec(id: str) -> EnvSpec:
    """Return the spec of `id`, or raise EnvError listing the valid ids."""
    return parse_id(id)[0]


def make(id: str, **kwargs: Any) -> gym.Env:
    """Return a new instance of env `id`, built with `kwargs` (a family's task is passed as `task=`)."""
    found, task = parse_id(id)
    if task is not None:
        kwargs = {"task": task, **kwargs}
    module_name, class_name = found.entry_point.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EnvError(f"env {id!r} needs {exc.name or exc}, which is not installed; run `make setup`") from exc
    log.debug("making env %s(%s)", found.entry_point, kwargs)
    try:
        return getattr(module, class_name)(**kwargs)
    except TypeError as exc:
        raise EnvError(f"env {id!r}: {exc}") from None


def options_of(found: EnvSpec, config: Any) -> dict[str, Any]:
    """Return the keyword arguments an EnvConfig holds for this env (its options section, if any)."""
    if found.options is None:
        return {}
    return dataclasses.asdict(getattr(config, found.options))
