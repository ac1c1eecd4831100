"""The outbox: messages owed to rooms, queued with their entries and drained oldest first."""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from ..model import Delivery, Source
from ..posting import PostingPlan, digest_key, transaction_id
from .database import Repository
from .event_rows import event_from_json
from .feeds import FeedState
from .rows import entry_from_row


async def queue_deliveries(
    conn: aiosqlite.Connection, feed: FeedState, rooms: Sequence[str], plan: PostingPlan, now: float
) -> int:
    """Add a plan's rows for these rooms inside the caller's transaction; return how many."""
    # One statement per kind of row, run for every (room, entry): a region followed by
    # dozens of rooms would otherwise cost a round trip to SQLite's thread per message.
    added = 0
    entry_rows = [
        (
            room_id,
            feed.organisation,
            transaction_id(room_id, feed.id, entry.key),
            now,
            feed.id,
            entry.key,
        )
        for room_id in rooms
        for entry in plan.post
    ]
    if entry_rows:
        cursor = await conn.executemany(
            """INSERT INTO outbox (room_id, organisation, entry_id, txn_id, created, feed_id)
               SELECT ?, ?, id, ?, ?, feed_id FROM entries WHERE feed_id = ? AND key = ?
               ON CONFLICT (txn_id) DO NOTHING""",
            entry_rows,
        )
        added += max(cursor.rowcount, 0)
        await cursor.close()
    if plan.digest:
        key = digest_key(plan.digest)
        cursor = await conn.executemany(
            """INSERT INTO outbox (room_id, organisation, digest_count, txn_id, created, feed_id)
               VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (txn_id) DO NOTHING""",
            [
                (
                    room_id,
                    feed.organisation,
                    len(plan.digest),
                    transaction_id(room_id, feed.id, key),
                    now,
                    feed.id,
                )
                for room_id in rooms
            ],
        )
        added += max(cursor.rowcount, 0)
        await cursor.close()
    return added


def _source(row: aiosqlite.Row) -> Source | None:
    """Return the room source a row's message comes from; None for an organisation's."""
    if row["organisation"] or row["source_url"] is None or row["source_kind"] == "calendar":
        return None
    return Source(row["source_title"] or row["source_url"], row["source_site"])


class Outbox(Repository):
    """The messages owed to rooms and how their sending went."""

    async def pending_deliveries(self, now: float, limit: int = 50) -> list[Delivery]:
        """Return due outbox rows of rooms in good standing, oldest first."""
        rows = await self._db.fetchall(
            """SELECT o.id AS outbox_id, o.room_id, o.txn_id, o.organisation, o.digest_count,
                      o.attempts, e.key, e.title, e.link, e.published, e.summary_html,
                      s.title AS source_title, s.url AS source_url, s.site_url AS source_site,
                      s.kind AS source_kind, s.region AS source_region, c.data AS event,
                      o.event_change, a.event_id AS reply_event
               FROM outbox o
               LEFT JOIN outbox a ON a.id = o.reply_to
               LEFT JOIN entries e ON e.id = o.entry_id
               LEFT JOIN calendar_events c ON c.id = o.calendar_event
               LEFT JOIN feeds s ON s.id = o.feed_id
               LEFT JOIN rooms r ON r.room_id = o.room_id
               WHERE o.sent_at IS NULL AND o.next_try <= ?
                 AND r.paused_reason IS NULL AND r.left_at IS NULL
               ORDER BY o.id LIMIT ?""",
            (now, limit),
        )
        return [
            Delivery(
                id=row["outbox_id"],
                room_id=row["room_id"],
                txn_id=row["txn_id"],
                organisation=row["organisation"],
                entry=entry_from_row(row) if row["key"] is not None else None,
                digest_count=row["digest_count"],
                attempts=row["attempts"],
                source=_source(row),
                event=event_from_json(row["event"]) if row["event"] is not None else None,
                calendar=row["source_url"] if row["source_kind"] == "calendar" else None,
                region=row["source_region"] or "",
                change=row["event_change"],
                reply_to=row["reply_event"],
            )
            for row in rows
        ]

    async def next_delivery_time(self) -> float | None:
        """Return when the earliest pending row of a room in good standing is due."""
        row = await self._db.fetchone(
            """SELECT MIN(o.next_try) AS t FROM outbox o LEFT JOIN rooms r ON r.room_id = o.room_id
               WHERE o.sent_at IS NULL AND r.paused_reason IS NULL AND r.left_at IS NULL"""
        )
        return float(row["t"]) if row and row["t"] is not None else None

    async def mark_sent(self, delivery_id: int, *, now: float, event_id: str | None) -> None:
        """Record that the homeserver accepted a message."""
        await self._db.write(
            "UPDATE outbox SET sent_at = ?, event_id = ?, attempts = attempts + 1 WHERE id = ?",
            (now, event_id, delivery_id),
        )

    async def defer_delivery(self, delivery_id: int, *, next_try: float, error: str) -> None:
        """Record a failed attempt and when to try again."""
        await self._db.write(
            "UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ? WHERE id = ?",
            (next_try, error[:500], delivery_id),
        )

    async def outbox_size(self, room_id: str | None = None) -> int:
        """Return how many messages wait to be sent (in one room, or in all)."""
        if room_id is None:
            row = await self._db.fetchone("SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL")
        else:
            row = await self._db.fetchone(
                "SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL AND room_id = ?",
                (room_id,),
            )
        return int(row["n"])
