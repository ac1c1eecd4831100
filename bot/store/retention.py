"""Retention: old entries pruned down to a compact hash of their key, old sent messages deleted."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import aiosqlite

from .database import Database, Repository

KEPT_PER_FEED: Final = 200  # each feed's newest entries stay whatever their age
SENT_KEPT_FOR: Final = 7 * 86400.0  # seconds a sent message's row stays
_BATCH: Final = 500  # entries pruned per transaction, so that polls are not held up long
_HASHES_PER_QUERY: Final = 500  # SQLite builds may cap bound parameters at 999

Prune = Callable[[aiosqlite.Connection, float], Awaitable[int]]  # one batch; returns its rows


def key_hash(feed_id: int, key: str) -> bytes:
    """Return the 16 bytes that stand for a pruned entry's key."""
    return hashlib.sha256(f"{feed_id}\n{key}".encode()).digest()[:16]


async def forgotten_keys(conn: aiosqlite.Connection, feed_id: int, keys: Sequence[str]) -> set[str]:
    """Return which of these keys belong to a feed's pruned entries (caller's transaction)."""
    hashes = {key_hash(feed_id, key): key for key in keys}
    found: set[str] = set()
    wanted = list(hashes)
    for first in range(0, len(wanted), _HASHES_PER_QUERY):
        chunk = wanted[first : first + _HASHES_PER_QUERY]
        marks = ",".join("?" for _ in chunk)
        async with conn.execute(
            f"SELECT hash FROM pruned_keys WHERE hash IN ({marks})", chunk
        ) as cursor:
            found.update(hashes[bytes(row[0])] for row in await cursor.fetchall())
    return found


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one prune deleted."""

    entries: int  # entries whose key is now only a hash
    messages: int  # sent outbox rows
    events: int = 0  # one-off calendar events that started longer ago than retention


async def _forget(
    conn: aiosqlite.Connection,
    table: Literal["entries", "calendar_events"],
    rows: Iterable[aiosqlite.Row],
) -> int:
    """Delete these (id, feed_id, key) rows, keeping a hash of each key; return how many."""
    pruned = list(rows)
    await conn.executemany(
        "INSERT OR IGNORE INTO pruned_keys (hash) VALUES (?)",
        [(key_hash(feed_id, key),) for _, feed_id, key in pruned],
    )
    await conn.executemany(f"DELETE FROM {table} WHERE id = ?", [(row[0],) for row in pruned])
    return len(pruned)


def _entries_of(feed_id: int) -> Prune:
    """Return the prune of one feed's entries (one feed at a time: each batch reads an index)."""

    async def prune(conn: aiosqlite.Connection, before: float) -> int:
        return await _prune_entries(conn, feed_id, before)

    return prune


async def _prune_entries(conn: aiosqlite.Connection, feed_id: int, before: float) -> int:
    """Prune one batch of a feed's old entries, keeping their keys as hashes; return how many."""
    # An entry with a message still owed keeps its row: the message needs its title and link.
    async with conn.execute(
        """SELECT id, feed_id, key FROM entries e
           WHERE feed_id = ? AND first_seen < ? AND id NOT IN (
               SELECT id FROM entries WHERE feed_id = ?
               ORDER BY first_seen DESC, id DESC LIMIT ?)
             AND NOT EXISTS (
               SELECT 1 FROM outbox o WHERE o.entry_id = e.id AND o.sent_at IS NULL)
           LIMIT ?""",
        (feed_id, before, feed_id, KEPT_PER_FEED, _BATCH),
    ) as cursor:
        return await _forget(conn, "entries", await cursor.fetchall())


async def _prune_events(conn: aiosqlite.Connection, before: float) -> int:
    """Prune one batch of one-off calendar events that started long ago; return how many."""
    # A series keeps its row whatever its first date: its later occurrences are still to come.
    async with conn.execute(
        """SELECT id, feed_id, key FROM calendar_events c
           WHERE series = 0 AND starts < ? AND NOT EXISTS (
               SELECT 1 FROM outbox o WHERE o.calendar_event = c.id AND o.sent_at IS NULL)
           LIMIT ?""",
        (before, _BATCH),
    ) as cursor:
        # Their announcements and changes go with them (ON DELETE CASCADE).
        return await _forget(conn, "calendar_events", await cursor.fetchall())


async def _in_batches(db: Database, prune: Prune, before: float) -> int:
    """Run a prune batch after batch, each in its own transaction; return the rows pruned."""
    total = 0
    while True:
        async with db.transaction() as conn:
            batch = await prune(conn, before)
        total += batch
        if batch < _BATCH:
            return total


class Retention(Repository):
    """What the database forgets with time."""

    async def prune(self, *, now: float, retention: float) -> Pruned:
        """Delete entries and past events older than `retention`, and old sent rows."""
        entries = 0
        for feed in await self._db.fetchall("SELECT id FROM feeds ORDER BY id"):
            entries += await _in_batches(self._db, _entries_of(feed["id"]), now - retention)
        events = await _in_batches(self._db, _prune_events, now - retention)
        # A calendar's announcement stays while its event does: a change is a reply to it.
        messages = await self._db.write(
            """DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?
               AND calendar_event IS NULL""",
            (now - SENT_KEPT_FOR,),
        )
        return Pruned(entries=entries, messages=messages, events=events)
