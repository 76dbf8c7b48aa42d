"""The `dreamstream` command line: run, train, eval, db, config, envs.

Errors the user can fix (config, run dir, missing binaries) print one line and exit non-zero without a
traceback: status 2 for bad config or arguments, 1 for anything else that stops the start-up.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from app import __version__
from app.config import (
    Config,
    changed_keys,
    describe,
    diff_on_resume,
    load_blocks,
    parse_overrides,
    resolve,
    secret_envs,
    secret_values,
    session_only_keys,
    to_dict,
    upgrade_saved,
)
from app.errors import DREAMSTREAM_ERRORS, ConfigError, StorageError
from app.logs import console, output, setup_logging
from app.rundir import RunDir, atomic_write_text, default_logdir

__all__ = ["main", "prepare_run"]

log = logging.getLogger("dreamstream")

EXAMPLES = {
    "run": """\
        examples:
          dreamstream run                                   # everything, embedded: no credentials needed
          dreamstream run --logdir runs/default             # resume that run where it stopped
          dreamstream run --configs crafter tiny --run.duration_s 60
          TWITCH_STREAM_KEY=... dreamstream run --configs twitch   # go live on Twitch""",
    "train": """\
        examples:
          dreamstream train --configs crafter               # headless: no stream, no dashboard
          dreamstream train --configs crafter size1m --run.train_ratio 32
          dreamstream train --configs crafter tiny --run.steps 5000 --logdir runs/smoke
          dreamstream train --configs chess size12m --dry-run   # parameter counts, nothing is run""",
    "eval": """\
        examples:
          dreamstream eval --logdir runs/default --episodes 10""",
    "db": """\
        examples:
          dreamstream db upgrade --logdir runs/default      # migrate that run's SQLite database
          dreamstream db upgrade --database /data/dreamstream.db""",
    "history": """\
        examples:
          dreamstream history --logdir runs/chess > history.csv          # every match, oldest first
          dreamstream history --logdir runs/chess --mode eval --format jsonl --out evals.jsonl""",
    "config": """\
        examples:
          dreamstream config show --configs crafter tiny --trainer.batch_size 4
          dreamstream config keys                           # every key with type, default and meaning""",
    "envs": """\
        examples:
          dreamstream envs""",
    "render-overlay": """\
        examples:
          dreamstream render-overlay --out frame.png                      # sample data around a real game
          dreamstream render-overlay --out frame.png --logdir runs/default # that run's curves and results
          dreamstream render-overlay --width 1920 --height 1080 --out frame1080.png""",
    "stream": """\
        examples:
          dreamstream stream test --target local --seconds 10     # to a local nginx-rtmp, read back and checked
          TWITCH_STREAM_KEY=... dreamstream stream test --target twitch --stream.twitch_bandwidth_test true""",
}


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--configs", nargs="*", default=[], metavar="BLOCK",
                   help="config blocks from configs/*.yaml (or your own .yaml files), merged in order")
    p.add_argument("--logdir", type=Path, default=None,
                   help="run directory; an existing one is resumed (default: runs/<timestamp>)")
    p.add_argument("--env-file", type=Path, default=None,
                   help="file of KEY=value secrets (default: ./.env when present); the environment wins")


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="dreamstream", formatter_class=formatter, allow_abbrev=False,
        description="Train a DreamerV3 agent from pixels and broadcast its play, dreams and learning curves.",
        epilog=textwrap.dedent("""\
            Any config key can be overridden after the options: --section.key value
            (e.g. --trainer.batch_size 16). `dreamstream config keys` lists them.

            examples:
              dreamstream run
              dreamstream train --configs crafter tiny --run.steps 2000
              dreamstream config keys"""))
    parser.add_argument("--version", action="version", version=f"dreamstream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, formatter_class=formatter,
                              epilog=textwrap.dedent(EXAMPLES[name]), allow_abbrev=False)

    _add_run_options(add("run", "Run everything: play, (train), overlay, stream, dashboard, chat, storage."))
    tr = add("train", "Train headless: no stream and no dashboard; metrics and checkpoints only.")
    _add_run_options(tr)
    tr.add_argument("--dry-run", action="store_true",
                    help="print the resolved model's parameter count and those of every size block, then exit")
    ev = add("eval", "Play evaluation episodes with the run's agent and store them as eval matches.")
    _add_run_options(ev)
    ev.add_argument("--episodes", type=int, default=5, help="episodes to play (default 5)")
    db = add("db", "Database maintenance.")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = db_sub.add_parser("upgrade", help="migrate the database to the newest schema",
                           description="Migrate the database to the newest schema (idempotent).",
                           formatter_class=formatter, epilog=textwrap.dedent(EXAMPLES["db"]))
    where = up.add_mutually_exclusive_group(required=True)
    where.add_argument("--logdir", type=Path, help="run directory whose database to migrate")
    where.add_argument("--database", type=Path, help="path of an SQLite file to migrate")
    hi = add("history", "Export the match history (every episode of a run dir's database) as CSV or JSON lines.")
    hi.add_argument("--logdir", type=Path, required=True, help="the run directory (it may be running)")
    hi.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    hi.add_argument("--mode", choices=("train", "eval"), default=None, help="only training or evaluation episodes")
    hi.add_argument("--out", type=Path, default=None, help="write to this file (default: standard output)")
    cf = add("config", "Show the resolved config or every key.")
    cf_sub = cf.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = cf_sub.add_parser("show", help="print the resolved config (secrets as ***)", formatter_class=formatter,
                             epilog=textwrap.dedent(EXAMPLES["config"]), allow_abbrev=False)
    _add_run_options(show)
    cf_sub.add_parser("keys", help="list every key with its type, default and meaning")
    add("envs", "List the registered games.")
    ro = add("render-overlay", "Write one composed broadcast frame to a PNG, to look at the overlay.")
    ro.add_argument("--out", type=Path, default=Path("frame.png"), help="PNG to write (default frame.png)")
    ro.add_argument("--width", type=int, default=1280)
    ro.add_argument("--height", type=int, default=720)
    ro.add_argument("--logdir", type=Path, default=None, help="use this run's real curves and results")
    st = add("stream", "Check the broadcast setup.")
    st_sub = st.add_subparsers(dest="stream_command", metavar="ACTION", required=True)
    test = st_sub.add_parser("test", help="stream a test card and report what was sent and received",
                             description="Stream a test card (colour bars, a moving marker, a clock) to the "
                             "target; exits 1 if the target refused or dropped it.", formatter_class=formatter,
                             epilog=textwrap.dedent(EXAMPLES["stream"]), allow_abbrev=False)
    test.add_argument("--target", default="local",
                      help="'local' (a local nginx-rtmp, read back and checked), 'twitch', or an rtmp(s):// URL")
    test.add_argument("--seconds", type=float, default=10.0)
    test.add_argument("--configs", nargs="*", default=[], metavar="BLOCK")
    test.add_argument("--env-file", type=Path, default=None)
    return parser


# ---------------------------------------------------------------------------------------------------------


def _environ(env_file: Path | None) -> dict[str, str]:
    """Return the process environment over the env file's values (the environment wins)."""
    path = env_file if env_file is not None else Path(".env")
    values: dict[str, str] = {}
    if env_file is not None and not path.is_file():
        raise ConfigError(f"--env-file {path}: no such file")
    if path.is_file():
        values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    return {**values, **os.environ}


def prepare_run(names: Sequence[str], overrides: Sequence[tuple[str, Any]], logdir: Path | None,
                environ: dict[str, str], *, save: bool = True) -> tuple[Config, RunDir, list[str]]:
    """Resolve the config against the run dir: a new run saves it; a resumed one must stay compatible and,
    with `save`, keeps the changes (`eval` does not: its overrides are for that evaluation only).

    Returns the config, the locked run dir and the list of changed keys (for the log).
    """
    rundir = RunDir(logdir if logdir is not None else default_logdir())
    changes: list[str] = []
    if rundir.config_path.exists():
        saved_dict, notes = _read_saved(rundir.config_path)
        # The saved config is checked without the secrets it needed (a placeholder each): a run dir that once
        # streamed to Twitch must restart with `--stream.target file` when the key is gone.
        saved = resolve(environ=_PLACEHOLDER_SECRETS, base=saved_dict)
        cfg = resolve(names, overrides, environ=environ, base=saved_dict)
        incompatible = diff_on_resume(saved, cfg)
        if incompatible:
            raise ConfigError(f"run dir {rundir.root} was made with another config; these keys cannot change "
                              f"on resume: {'; '.join(incompatible)} (use a new --logdir)")
        session = session_only_keys()
        changes = [line + (" (this session only)" if line.split(":", 1)[0] in session else "")
                   for line in changed_keys(saved, cfg)]
    else:
        cfg, notes = resolve(names, overrides, environ=environ), []
    rundir.create()
    rundir.lock()
    if notes and save:  # (after the lock: a refused second start must leave nothing behind)
        kept = rundir.config_path.with_name(f"config.yaml.before-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(rundir.config_path, kept)
        notes.append(f"the file as it was is kept as {kept.name}")
    changes += [f"{SAVED_CONFIG_NOTE}{note}" for note in notes]
    if save or not rundir.config_path.exists():
        header = f"# Resolved DreamStream config (secrets left out). dreamstream {__version__}\n"
        atomic_write_text(rundir.config_path,
                          header + yaml.safe_dump(to_dict(cfg, session=False), sort_keys=False))
    return cfg, rundir, changes


SAVED_CONFIG_NOTE = "saved config: "
"""Lines of prepare_run's `changes` that start so are about the run dir's file itself (logged as warnings)."""


def _read_saved(path: Path) -> tuple[dict[str, Any], list[str]]:
    """Return a run dir's saved config as flat data this version accepts, with a note per key it had to move or
    drop (see app.config.upgrade_saved) and one when another version wrote the file."""
    try:
        text = path.read_text()
        saved = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc}); fix it or use a new --logdir") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path} does not hold a config (a mapping of sections); fix it or use a new --logdir")
    flat, notes = upgrade_saved(saved)
    written_by = re.search(r"^# .*dreamstream (\S+)$", text.split("\n", 1)[0])
    if written_by and written_by.group(1) != __version__:
        notes.insert(0, f"written by dreamstream {written_by.group(1)}, read by {__version__}")
    return flat, notes


_PLACEHOLDER = "saved-config-placeholder"
_PLACEHOLDER_SECRETS = {env: _PLACEHOLDER for env in secret_envs().values()}


def _install_signal_handlers(runner) -> None:
    def handle(signum, _frame) -> None:
        if runner.stop_event.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            raise KeyboardInterrupt
        runner.request_stop(f"received {signal.Signals(signum).name}")

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    # A closed terminal or SSH session (a foreground `make run`): stop cleanly too, with the last checkpoint and
    # state saved, instead of the default of dying at once. Under `nohup` (SIGHUP ignored) it keeps running.
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, handle)


def _cmd_run(args: argparse.Namespace, overrides: list[tuple[str, Any]], mode: str) -> int:
    cfg, rundir, changes = prepare_run(args.configs, overrides, args.logdir, _environ(args.env_file))
    try:
        from app.runner import Runner  # heavy imports only once the config is known to be good

        setup_logging(cfg.run.log_level, rundir.log_path, secret_values(cfg))
        for line in changes:
            if line.startswith(SAVED_CONFIG_NOTE):
                log.warning("%s", line)
            else:
                log.info("config changed on resume: %s", line)
        if cfg.trainer.distributed.num_processes > 1:
            if mode != "train":
                raise ConfigError("trainer.distributed: training over several processes runs with `dreamstream "
                                  "train` (one per process, each with its own --logdir); `dreamstream run` trains "
                                  "in one process")
            from trainer.distributed import initialize

            initialize(cfg.trainer.distributed)  # before anything else uses JAX
        runner = Runner(cfg, rundir, mode=mode)
        _install_signal_handlers(runner)
        with _progress(runner) as tick:
            return runner.run(on_tick=tick)
    finally:
        rundir.unlock()


class _progress:
    """A rich progress line (steps, episodes, FPS) on a terminal; nothing otherwise (status lines are logged)."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self.progress = None

    def __enter__(self):
        if not console.is_terminal:
            return None
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        total = self.runner.cfg.run.steps or None
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 TextColumn("{task.completed:,} env steps"), TextColumn("{task.fields[extra]}"),
                                 TimeElapsedColumn(), console=console, transient=True)
        self.task = self.progress.add_task(self.runner.run_name, total=total, extra="",
                                           completed=self.runner.counters.env_step)
        self.progress.start()
        return self._tick

    def _tick(self, runner) -> None:
        s = runner.status()["counters"]
        self.progress.update(self.task, completed=s["env_steps"],
                             extra=f"{s['episodes']} episodes · {s['env_fps']:.1f} steps/s · {s['updates']} updates")

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


def _cmd_dry_run(args: argparse.Namespace, overrides: list[tuple[str, Any]]) -> int:
    """Print parameter counts (from shapes only: nothing is allocated, trained or written)."""
    import dataclasses

    import jax

    # Shapes only, on the CPU: a dry run beside a live run on a GPU must not claim GPU memory (JAX takes 75 % of
    # it when its GPU backend starts).
    jax.config.update("jax_platforms", "cpu")

    import envs
    from trainer.agent import act_space_of
    from trainer.model import count_parameters

    cfg = resolve(args.configs, overrides, environ=_environ(args.env_file))
    probe = envs.make_from_config(cfg.env)
    image_shape = tuple(probe.observation_space["image"].shape)
    act = act_space_of(probe.action_space, probe.observation_space)
    probe.close()
    print(f"env {cfg.env.id}: image {image_shape}, {'discrete' if act.discrete else 'continuous'} "
                 f"actions ({act.n})")
    print(f"resolved model: {count_parameters(cfg.trainer, act, image_shape):,} parameters "
                 f"(deter {cfg.trainer.deter}, hidden {cfg.trainer.hidden}, classes {cfg.trainer.classes}, "
                 f"depth {cfg.trainer.depth}, units {cfg.trainer.units})")
    for name, block in load_blocks().items():
        if name.startswith("size"):
            sized = dataclasses.replace(cfg.trainer, **block["trainer"])
            print(f"  {name:>9}: {count_parameters(sized, act, image_shape):>13,} parameters")
    return 0


def _cmd_eval(args: argparse.Namespace, overrides: list[tuple[str, Any]]) -> int:
    from app.evaluate import evaluate

    cfg, rundir, _ = prepare_run(args.configs, overrides, args.logdir, _environ(args.env_file), save=False)
    try:
        setup_logging(cfg.run.log_level, rundir.log_path, secret_values(cfg))
        return evaluate(cfg, rundir, episodes=args.episodes)
    finally:
        rundir.unlock()


def _cmd_db(args: argparse.Namespace) -> int:
    from app.storage import open_database, upgrade

    path = RunDir(args.logdir).database_path(_saved_database(args.logdir)) if args.logdir else args.database
    engine, _ = open_database(path)
    before, after = upgrade(engine)
    engine.dispose()
    output.print(f"{path}: schema {before or 'empty'} -> {after}" if before != after
                  else f"{path}: schema already at {after}")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from app.history import as_csv, as_jsonl
    from app.storage import history_rows, open_database

    path = RunDir(args.logdir).database_path(_saved_database(args.logdir))
    if not path.is_file():
        raise ConfigError(f"--logdir {args.logdir}: no database at {path} (no episode was played there yet?)")
    engine, sessions = open_database(path)
    try:
        out = open(args.out, "w", newline="", encoding="utf-8") if args.out is not None else sys.stdout  # noqa: SIM115
    except OSError as exc:
        engine.dispose()
        raise ConfigError(f"--out {args.out}: cannot write it ({exc.strerror})") from None
    try:
        with sessions() as session:
            chunks = (as_csv if args.format == "csv" else as_jsonl)(history_rows(session, mode=args.mode))
            for chunk in chunks:
                out.write(chunk)
            out.flush()
    except BrokenPipeError:  # `dreamstream history ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the match history from {path}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise StorageError(f"cannot write the match history to {args.out or 'standard output'}: {exc}") from None
    finally:
        if out is not sys.stdout:
            out.close()
        engine.dispose()
    return 0


def _saved_database(logdir: Path) -> str:
    rundir = RunDir(logdir)
    if not rundir.config_path.exists():
        if not rundir.root.is_dir():
            raise ConfigError(f"--logdir {logdir}: no such run dir")
        return Config().storage.database
    try:
        saved = yaml.safe_load(rundir.config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{rundir.config_path} is not valid YAML ({exc}); fix it, or name the database "
                          "with --database") from None
    storage = saved.get("storage") if isinstance(saved, dict) else None
    database = storage.get("database") if isinstance(storage, dict) else None
    return str(database) if database else Config().storage.database


def _cmd_config(args: argparse.Namespace, overrides: list[tuple[str, Any]]) -> int:
    if args.config_command == "keys":
        for key, type_text, default, doc in describe():
            print(f"{key}: {type_text} = {default}\n    {doc}")
        return 0
    base, environ = None, _environ(args.env_file)
    if args.logdir is not None:
        path = RunDir(args.logdir).config_path
        if path.exists():
            base, notes = _read_saved(path)  # read only: a running app keeps its lock
            for note in notes:
                print(f"{SAVED_CONFIG_NOTE}{note}", file=sys.stderr)
            # A run dir made for Twitch is shown also where its secrets are not set (shown as not set).
            environ = {**_PLACEHOLDER_SECRETS, **{k: v for k, v in environ.items() if v}}
        else:
            print(f"no run in {args.logdir} yet: this is the config a new run there would get", file=sys.stderr)
    cfg = resolve(args.configs, overrides, environ=environ, base=base)
    shown = to_dict(cfg, secrets="mask")
    for key in secret_envs():
        section, name = key.split(".", 1)
        if getattr(getattr(cfg, section), name) == _PLACEHOLDER:
            shown[section][name] = "(not set here)"
    print(yaml.safe_dump(shown, sort_keys=False), end="")
    return 0


def _cmd_envs() -> int:
    from rich.table import Table

    import envs

    table = Table("id", "description", "needs", box=None)
    for spec in envs.specs():
        shown = f"{spec.id}/<task> (e.g. {spec.id}/{spec.default_task})" if spec.is_family else spec.id
        table.add_row(shown, spec.description, "X display" if spec.needs_display else "")
    output.print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dreamstream` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    setup_logging("info")
    try:
        overrides = parse_overrides(rest)
        if (overrides and args.command not in ("run", "train", "eval", "config", "stream")) or \
                (args.command == "config" and args.config_command == "keys" and overrides):
            raise ConfigError(f"`dreamstream {args.command}` takes no config overrides ({rest[0]})")
        load_blocks()  # a broken YAML file is reported before anything starts
        if args.command == "train" and args.dry_run:
            return _cmd_dry_run(args, overrides)
        if args.command in ("run", "train"):
            return _cmd_run(args, overrides, args.command)
        if args.command == "eval":
            return _cmd_eval(args, overrides)
        if args.command == "db":
            return _cmd_db(args)
        if args.command == "config":
            return _cmd_config(args, overrides)
        if args.command == "history":
            return _cmd_history(args)
        if args.command == "envs":
            return _cmd_envs()
        if args.command == "render-overlay":
            from app.sample_overlay import render_sample

            render_sample(args.out, width=args.width, height=args.height, logdir=args.logdir)
            print(f"wrote {args.out}")
            return 0
        if args.command == "stream":
            from app.stream_check import run_stream_test

            cfg = resolve(args.configs, overrides, environ=_environ(args.env_file))
            if args.target not in ("local", "twitch") and not args.target.startswith(("rtmp://", "rtmps://")):
                raise ConfigError(f"--target {args.target!r}: must be 'local', 'twitch' or an rtmp(s):// URL")
            if args.target == "twitch" and not cfg.stream.stream_key:
                raise ConfigError("--target twitch needs the stream key: set TWITCH_STREAM_KEY in the environment "
                                  "or an env file")
            return run_stream_test(cfg, args.target, args.seconds)
    except ConfigError as exc:
        print(f"ConfigError: {exc}", file=sys.stderr)
        return 2
    except DREAMSTREAM_ERRORS as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
