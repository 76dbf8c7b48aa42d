"""The match history as CSV or JSON lines: every episode of a run dir's database (`dreamstream history`, and the
dashboard's download)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from app.storage import HISTORY_COLUMNS

__all__ = ["as_csv", "as_jsonl"]


def as_csv(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """CSV text, a header then a line per episode (`details` as a JSON string), streamed."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "details": json.dumps(row["details"], separators=(",", ":"))})
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def as_jsonl(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, separators=(",", ":")) + "\n"
