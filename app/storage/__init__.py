"""Storage: SQLAlchemy models on SQLite, Alembic migrations, and the queries the app uses."""

from app.storage.db import (
    add_episode,
    add_event,
    current_revision,
    ensure_run,
    head_revision,
    open_database,
    recent_episodes,
    recent_events,
    record_episode,
    upgrade,
)
from app.storage.models import Base, Episode, Event, Run

__all__ = ["Base", "Episode", "Event", "Run", "add_episode", "add_event", "current_revision", "ensure_run",
           "head_revision", "open_database", "recent_episodes", "recent_events", "record_episode", "upgrade"]
