"""Conversions between the model's values and SQLite's columns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, Literal

import aiosqlite

from ..model import Entry

_KEYS_PER_QUERY: Final = 500  # SQLite builds may cap bound parameters at 999


async def known_keys(
    conn: aiosqlite.Connection,
    table: Literal["entries", "calendar_events"],
    feed_id: int,
    keys: Sequence[str],
) -> set[str]:
    """Return which of these keys a feed or calendar already brought (caller's transaction)."""
    known: set[str] = set()
    for first in range(0, len(keys), _KEYS_PER_QUERY):
        chunk = keys[first : first + _KEYS_PER_QUERY]
        marks = ",".join("?" for _ in chunk)
        async with conn.execute(
            f"SELECT key FROM {table} WHERE feed_id = ? AND key IN ({marks})",
            (feed_id, *chunk),
        ) as cursor:
            known.update(row[0] for row in await cursor.fetchall())
    return known


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
