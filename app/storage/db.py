"""Opening the SQLite database, migrating it with Alembic, and the small queries the app needs.

Sessions are opened at the edge (`with sessions.begin() as session:`) and passed to these functions.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError as AlembicError
from sqlalchemy import Engine, String, cast, create_engine, event, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from app.errors import StorageError
from app.storage.models import Episode, Event, Run

__all__ = [
    "HISTORY_COLUMNS",
    "add_episode",
    "add_event",
    "current_revision",
    "ensure_run",
    "head_revision",
    "history_rows",
    "open_database",
    "prune_details",
    "recent_episodes",
    "recent_events",
    "record_episode",
    "upgrade",
]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (dashboard) never block the writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def open_database(path: Path) -> tuple[Engine, sessionmaker[Session]]:
    """Return an engine and the app's one sessionmaker for the SQLite file at `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the folder of database {path}: {exc.strerror}") from None
    engine = create_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine, sessionmaker(engine, expire_on_commit=False)


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _transactional_ddl(engine: Engine) -> Engine:
    """An engine on the same file whose transactions also cover CREATE/ALTER: Python's sqlite3 driver commits
    before DDL by itself, so a migration cut short (a crash, a full disk) would leave half a schema that every
    later start trips over. This is SQLAlchemy's documented recipe; it is used for migrations only."""
    ddl = create_engine(engine.url, poolclass=NullPool)
    event.listen(ddl, "connect", _sqlite_pragmas)

    @event.listens_for(ddl, "connect")
    def _driver_autocommit(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # the driver issues no BEGIN/COMMIT of its own...

    @event.listens_for(ddl, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # ...this one covers the whole migration

    return ddl


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate the database to the newest schema, all or nothing; return (revision before, revision after)."""
    cfg = _alembic_config()
    try:
        before = current_revision(engine)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot migrate database {engine.url.database}: {exc.__class__.__name__}: "
                           f"{exc.args[0] if exc.args else exc}") from None
    if before is not None and before == head_revision():
        return before, before  # nothing to do: no write lock taken (a running app may hold it)
    ddl = _transactional_ddl(engine)
    try:
        with ddl.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        after = current_revision(engine) or ""
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot migrate database {engine.url.database}: {exc.__class__.__name__}: "
                           f"{exc.args[0] if exc.args else exc}") from None
    except AlembicError as exc:  # e.g. a revision this version does not have: a newer DreamStream migrated it
        raise StorageError(f"cannot migrate database {engine.url.database}: {exc}. A newer DreamStream version "
                           "probably wrote it: run that version on this run dir, or use another run dir; "
                           "nothing was changed") from None
    finally:
        ddl.dispose()
    if before != after:
        log.info("database %s migrated %s -> %s", engine.url.database, before or "empty", after)
    return before, after


def ensure_run(session: Session, name: str, env_id: str, agent: str) -> Run:
    """Return the run row named `name`, creating it on first use."""
    run = session.scalar(select(Run).where(Run.name == name))
    if run is None:
        run = Run(name=name, env_id=env_id, agent=agent)
        session.add(run)
        session.flush()
    return run


def add_episode(session: Session, run_id: int, *, env_id: str, score: float, length: int, env_step: int,
                mode: str = "train", opponent: str | None = None, result: str | None = None,
                details: dict[str, Any] | None = None) -> Episode:
    ep = Episode(run_id=run_id, env_id=env_id, score=score, length=length, env_step=env_step, mode=mode,
                 opponent=opponent, result=result, details=details or {})
    session.add(ep)
    return ep


def record_episode(session: Session, run_id: int, *, env_id: str, episode: dict[str, Any], env_step: int,
                   mode: str = "train", checkpoint: int | None = None) -> Episode:
    """Store an env's end-of-episode report (`info['episode']`: length, return, result, opponent, extras);
    `checkpoint`: the checkpoint (update step) whose parameters played it, kept in the details."""
    known = ("length", "return", "result", "opponent")
    details = {k: v for k, v in episode.items() if k not in known}
    if checkpoint is not None:
        details["checkpoint"] = checkpoint
    return add_episode(session, run_id, env_id=env_id, score=float(episode["return"]), length=int(episode["length"]),
                       env_step=env_step, mode=mode, result=episode.get("result"), opponent=episode.get("opponent"),
                       details=details)


def add_event(session: Session, run_id: int, kind: str, message: str = "", env_step: int = 0) -> Event:
    ev = Event(run_id=run_id, kind=kind, message=message, env_step=env_step)
    session.add(ev)
    return ev


def recent_episodes(session: Session, run_id: int, limit: int = 20, *, before_id: int | None = None,
                    mode: str | None = None) -> list[Episode]:
    """The run's episodes newest first; `before_id` pages back (ids below it), `mode` keeps 'train' or 'eval'."""
    query = select(Episode).where(Episode.run_id == run_id)
    if before_id is not None:
        query = query.where(Episode.id < before_id)
    if mode is not None:
        query = query.where(Episode.mode == mode)
    return list(session.scalars(query.order_by(Episode.id.desc()).limit(limit)))


def prune_details(session: Session, older_than: datetime, *, run_id: int, mode: str = "train",
                  batch: int = 2000) -> int:
    """Empty the `details` (a chess game's PGN, achievements) of run `run_id`'s `mode` episodes that ended before
    `older_than` (a database shared by several run dirs holds other runs, with their own settings);
    their score, result, opponent and length stay. At most `batch` rows per call (short write transactions beside
    a running app); returns how many were emptied. SQLite reuses the freed pages, so the file stops growing."""
    ids = list(session.scalars(select(Episode.id).where(Episode.run_id == run_id, Episode.mode == mode,
                                                        Episode.ended_at < older_than,
                                                        func.length(cast(Episode.details, String)) > 2)
                               .order_by(Episode.id).limit(batch)))
    if ids:
        session.execute(update(Episode).where(Episode.id.in_(ids)).values(details={}))
    return len(ids)


HISTORY_COLUMNS = ("id", "run", "ended_at", "mode", "env_id", "opponent", "result", "score", "length", "env_step",
                   "checkpoint", "details")
"""The columns of an exported match history (`details`: the game's extras as JSON, e.g. a chess game's PGN)."""


def history_rows(session: Session, *, run_id: int | None = None, mode: str | None = None, batch: int = 1000):
    """Yield every episode of run `run_id` (None: of every run in the database), oldest first, as plain dicts
    with HISTORY_COLUMNS (read in batches: a weeks-long run has hundreds of thousands)."""
    runs = {run.id: run.name for run in session.scalars(select(Run))}
    last = 0
    while True:
        query = select(Episode).where(Episode.id > last)
        if run_id is not None:
            query = query.where(Episode.run_id == run_id)
        if mode is not None:
            query = query.where(Episode.mode == mode)
        page = list(session.scalars(query.order_by(Episode.id).limit(batch)))
        if not page:
            return
        for e in page:
            details = dict(e.details or {})
            yield {"id": e.id, "run": runs.get(e.run_id, ""), "ended_at": e.ended_at.isoformat(), "mode": e.mode,
                   "env_id": e.env_id, "opponent": e.opponent, "result": e.result, "score": e.score,
                   "length": e.length, "env_step": e.env_step, "checkpoint": details.pop("checkpoint", None),
                   "details": details}
        last = page[-1].id
        session.expunge_all()


def recent_events(session: Session, run_id: int, limit: int = 20) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.run_id == run_id).order_by(Event.id.desc()).limit(limit)))
