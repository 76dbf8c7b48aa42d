"""Storage: SQLAlchemy models on SQLite, Alembic migrations, and the queries the app uses."""

from app.storage.db import (
    HISTORY_COLUMNS,
    add_episode,
    add_event,
    current_revision,
    ensure_run,
    head_revision,
    history_rows,
    open_database,
    prune_details,
    recent_episodes,
    recent_events,
    record_episode,
    upgrade,
)
from app.storage.models import Base, Episode, Event, Run

__all__ = ["HISTORY_COLUMNS", "Base", "Episode", "Event", "Run", "add_episode", "add_event", "current_revision",
           "ensure_run", "head_revision", "history_rows", "open_database", "prune_details", "recent_episodes",
           "recent_events", "record_episode", "upgrade"]
