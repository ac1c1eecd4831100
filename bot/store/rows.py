"""Conversions between the model's values and SQLite's columns."""

from __future__ import annotations

from datetime import UTC, datetime

import aiosqlite

from ..model import Entry


def epoch(value: datetime | None) -> float | None:
    """Return a datetime as epoch seconds, the way the tables keep time."""
    return value.timestamp() if value is not None else None


def entry_from_row(row: aiosqlite.Row) -> Entry:
    """Return the entry of a row holding the entries table's columns."""
    published = row["published"]
    return Entry(
        key=row["key"],
        title=row["title"],
        link=row["link"],
        published=datetime.fromtimestamp(published, UTC) if published is not None else None,
        summary_html=row["summary_html"],
    )
