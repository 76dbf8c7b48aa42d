"""Storage on real SQLite files: migrations reach head, match the models, and the queries work."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from app.errors import StorageError
from app.storage import (
    Base,
    add_episode,
    add_event,
    current_revision,
    ensure_run,
    head_revision,
    open_database,
    recent_episodes,
    recent_events,
    upgrade,
)


def test_upgrade_creates_the_schema_and_is_idempotent(tmp_path) -> None:
    engine, _ = open_database(tmp_path / "db" / "dreamstream.db")
    assert upgrade(engine) == (None, head_revision())
    assert upgrade(engine) == (head_revision(), head_revision())
    assert current_revision(engine) == head_revision()
    holder = sqlite3.connect(tmp_path / "db" / "dreamstream.db")
    holder.execute("BEGIN IMMEDIATE")  # a running app in the middle of a write
    assert upgrade(engine) == (head_revision(), head_revision())  # at head: no write lock is waited for
    holder.rollback()
    holder.close()
    assert {"runs", "episodes", "events", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_migrations_match_the_models(tmp_path) -> None:
    engine, _ = open_database(tmp_path / "dreamstream.db")
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ; add a migration: {diff}"
    engine.dispose()


def test_episodes_and_events_round_trip(tmp_path) -> None:
    engine, sessions = open_database(tmp_path / "dreamstream.db")
    upgrade(engine)
    with sessions.begin() as session:
        run_id = ensure_run(session, "r1", "crafter", "random").id
        assert ensure_run(session, "r1", "crafter", "random").id == run_id
        add_episode(session, run_id, env_id="crafter", score=2.5, length=100, env_step=100,
                    details={"achievements": ["wake_up"]})
        add_episode(session, run_id, env_id="chess", score=-1, length=40, env_step=140, mode="eval",
                    opponent="stockfish", result="loss")
        add_event(session, run_id, "session_started", "session 1")
    with sessions() as session:
        eps = recent_episodes(session, run_id, limit=10)
        assert [(e.env_id, e.result, e.details) for e in eps] == [
            ("chess", "loss", {}), ("crafter", None, {"achievements": ["wake_up"]})]
        assert [e.kind for e in recent_events(session, run_id)] == ["session_started"]
        # SQLite keeps no zone: the times come back as the UTC times they were, zone attached.
        assert all(e.ended_at.tzinfo is not None and e.ended_at.utcoffset().total_seconds() == 0 for e in eps)
        assert abs((datetime.now(UTC) - eps[0].ended_at).total_seconds()) < 600
    engine.dispose()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "dreamstream.db"
    path.write_bytes(b"this is not sqlite" * 100)
    engine, _ = open_database(path)
    with pytest.raises(StorageError, match="cannot migrate database .*dreamstream.db: DatabaseError"):
        upgrade(engine)


def test_a_migration_cut_short_leaves_nothing_behind(tmp_path) -> None:
    """sqlite3 commits before each CREATE by itself; the migration must still be all or nothing."""
    engine, _ = open_database(tmp_path / "dreamstream.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE events (x INTEGER)"))  # the migration creates runs, then fails here
    with pytest.raises(StorageError, match="cannot migrate database"):
        upgrade(engine)
    assert set(inspect(engine).get_table_names()) == {"events"}  # no half schema: not even runs
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE events"))
    assert upgrade(engine) == (None, head_revision())  # and the next start migrates cleanly
    engine.dispose()


def test_a_database_of_a_newer_version_is_a_clear_error(tmp_path) -> None:
    engine, _ = open_database(tmp_path / "dreamstream.db")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with pytest.raises(StorageError, match="9999_from_the_future.*newer DreamStream version"):
        upgrade(engine)
    engine.dispose()


def test_old_training_details_are_emptied_and_evaluation_games_keep_theirs(tmp_path) -> None:
    from datetime import timedelta

    from app.storage import Episode, add_episode, ensure_run, open_database, prune_details, upgrade

    engine, sessions = open_database(tmp_path / "d.db")
    upgrade(engine)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        run_id = ensure_run(session, "r", "chess", "DreamerV3").id
        for i in range(50):
            for mode in ("train", "eval"):
                ep = add_episode(session, run_id, env_id="chess", score=1.0, length=40, env_step=i, mode=mode,
                                 result="win", opponent="random", details={"pgn": "1. e4 e5 " * 50})
                ep.ended_at = now - timedelta(days=30 if i < 30 else 1)
    with sessions.begin() as session:
        other = ensure_run(session, "other", "chess", "DreamerV3").id  # a database shared with another run dir
        ep = add_episode(session, other, env_id="chess", score=1.0, length=40, env_step=99, details={"pgn": "x"})
        ep.ended_at = now - timedelta(days=30)
    with sessions.begin() as session:
        assert prune_details(session, now - timedelta(days=14), run_id=run_id, batch=20) == 20  # short batches
    with sessions.begin() as session:
        assert prune_details(session, now - timedelta(days=14), run_id=run_id, batch=20) == 10
        assert prune_details(session, now - timedelta(days=14), run_id=run_id, batch=20) == 0
    with sessions() as session:
        rows = [(e.mode, e.env_step, e.details, e.result, e.score)
                for e in session.query(Episode).filter(Episode.run_id == run_id)]
        assert session.query(Episode).filter(Episode.run_id == other).one().details == {"pgn": "x"}  # not ours
    emptied = [(mode, step) for mode, step, details, _, _ in rows if details == {}]
    assert sorted(emptied) == [("train", i) for i in range(30)]  # this run's old training games only
    assert all(result == "win" and score == 1.0 for _, _, _, result, score in rows)  # the match history stays
    engine.dispose()
