"""SQLAlchemy models of what a run keeps: the run, its lifecycle events, and every episode or match."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = ["Base", "Episode", "Event", "Run"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A UTC time that comes back timezone-aware: SQLite keeps no zone, so a plain DateTime(timezone=True)
    returns naive times, which a browser reads as its local time (shifted by the operator's UTC offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class Run(Base):
    """One run directory's training run; a resumed run keeps its row."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    env_id: Mapped[str] = mapped_column(String(100))
    agent: Mapped[str] = mapped_column(String(100))
    episodes: Mapped[list[Episode]] = relationship(back_populates="run")


class Episode(Base):
    """One finished episode or match, as the match history shows it."""

    __tablename__ = "episodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    env_id: Mapped[str] = mapped_column(String(100))
    mode: Mapped[str] = mapped_column(String(20), default="train")
    """'train' (the acting policy while learning) or 'eval'."""
    opponent: Mapped[str | None] = mapped_column(String(100))
    result: Mapped[str | None] = mapped_column(String(10))
    """'win', 'loss', 'draw' for matches; null for single-player games."""
    score: Mapped[float] = mapped_column(Float)
    """Undiscounted episode return."""
    length: Mapped[int] = mapped_column(Integer)
    env_step: Mapped[int] = mapped_column(Integer, index=True)
    """The run's total env steps when the episode ended."""
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Game-specific extras: achievements, PGN, ..."""
    run: Mapped[Run] = relationship(back_populates="episodes")


class Event(Base):
    """A lifecycle event an operator may look for: start, stop, restarts, rollbacks."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(50))
    message: Mapped[str] = mapped_column(Text, default="")
    env_step: Mapped[int] = mapped_column(Integer, default=0)
