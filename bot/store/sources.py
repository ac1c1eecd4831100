"""Room sources: feeds a room added itself, polled once however many rooms follow them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from ..model import Entry
from .database import Repository
from .entries import insert_unseen
from .feeds import FeedState, feed_from_row


@dataclass(frozen=True, slots=True)
class FoundSource:
    """A feed `!subscribe URL` found and read: where it is, what it is called, what it holds."""

    url: str  # where to poll it
    title: str  # plain text, short
    site_url: str | None  # the site it belongs to
    entries: Sequence[Entry]  # what the subscribe's own fetch read: recorded as seen


@dataclass(frozen=True, slots=True)
class RoomSource:
    """A feed one room follows, with the URL the room typed for it."""

    feed: FeedState
    typed_url: str


async def _feed_at(conn: aiosqlite.Connection, url: str) -> tuple[FeedState, bool] | None:
    """Return the feed row known by this URL and whether it is polled now."""
    # A configured feed known by this URL is the same feed: polled once, whoever follows it.
    async with conn.execute(
        "SELECT * FROM feeds WHERE config_url = :url OR url = :url"
        " ORDER BY active DESC, room_source, id LIMIT 1",
        {"url": url},
    ) as cursor:
        row = await cursor.fetchone()
    return (feed_from_row(row), bool(row["active"])) if row is not None else None


async def _start_polling(
    conn: aiosqlite.Connection,
    found: FoundSource,
    existing: FeedState | None,
    *,
    now: float,
    next_poll: float,
) -> int:
    """Make a feed nobody polls a room source, its entries recorded as seen; return its id."""
    params = {
        "url": found.url,
        "title": found.title,
        "site": found.site_url,
        "next": next_poll,
    }
    if existing is None:
        cursor = await conn.execute(
            """INSERT INTO feeds (organisation, config_url, url, room_source, title, site_url,
                   initialised, next_poll)
               VALUES ('', :url, :url, 1, :title, :site, 1, :next)""",
            params,
        )
        feed_id = cursor.lastrowid
        await cursor.close()
        if feed_id is None:  # pragma: no cover - SQLite always gives an INSERT's row id
            raise RuntimeError("no row id for the new feed")
    else:
        feed_id = existing.id
        # A dormant feed (no room followed it, or the configuration dropped it) starts over:
        # what it published meanwhile is history, not news.
        await conn.execute(
            """UPDATE feeds SET organisation = '', room_source = 1, active = 1, initialised = 1,
                   title = :title, site_url = :site, next_poll = :next,
                   error_count = 0, last_error = NULL
               WHERE id = :id""",
            {**params, "id": feed_id},
        )
    await insert_unseen(conn, feed_id, found.entries, now)
    return feed_id


class RoomSources(Repository):
    """Which feeds rooms added themselves, and the feeds polled for them."""

    async def room_sources(self, room_id: str) -> list[RoomSource]:
        """Return the feeds a room added, oldest first."""
        rows = await self._db.fetchall(
            """SELECT f.*, s.typed_url FROM room_sources s JOIN feeds f ON f.id = s.feed_id
               WHERE s.room_id = ? ORDER BY s.created, f.id""",
            (room_id,),
        )
        return [RoomSource(feed_from_row(row), row["typed_url"]) for row in rows]

    async def add_room_source(
        self, room_id: str, typed_url: str, found: FoundSource, *, now: float, next_poll: float
    ) -> tuple[RoomSource, bool]:
        """Make a room follow a feed; False with it when the room already did.

        A feed nobody polls yet is initialised with the entries the subscribe's fetch read, in
        the same transaction, so that only what the feed publishes from now on is posted. A
        feed already polled (for another room, or configured) is left as it is.
        """
        async with self._db.transaction() as conn:
            known = await _feed_at(conn, found.url)
            if known is not None and known[1]:
                feed_id = known[0].id
                await conn.execute(
                    "UPDATE feeds SET title = COALESCE(title, ?), site_url = COALESCE(site_url, ?)"
                    " WHERE id = ?",
                    (found.title, found.site_url, feed_id),
                )
            else:
                existing = known[0] if known is not None else None
                feed_id = await _start_polling(conn, found, existing, now=now, next_poll=next_poll)
            cursor = await conn.execute(
                """INSERT INTO room_sources (room_id, feed_id, typed_url, created)
                   VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                (room_id, feed_id, typed_url, now),
            )
            added = cursor.rowcount == 1
            await cursor.close()
            async with conn.execute(
                """SELECT f.*, s.typed_url FROM room_sources s JOIN feeds f ON f.id = s.feed_id
                   WHERE s.room_id = ? AND s.feed_id = ?""",
                (room_id, feed_id),
            ) as rows:
                row = await rows.fetchone()
        if row is None:  # pragma: no cover - written just above, in this transaction
            raise RuntimeError("the room source just written is missing")
        return RoomSource(feed_from_row(row), row["typed_url"]), added

    async def remove_room_source(self, room_id: str, feed_id: int) -> bool:
        """Stop a room following a feed it added; a feed no room follows stops being polled."""
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "DELETE FROM room_sources WHERE room_id = ? AND feed_id = ?", (room_id, feed_id)
            )
            removed = cursor.rowcount > 0
            await cursor.close()
            # Its filter in that room goes with it: it would filter nothing, yet count.
            await conn.execute(
                "DELETE FROM filters WHERE room_id = ? AND scope_kind = 'feed' AND scope = ?",
                (room_id, str(feed_id)),
            )
            # Its entries stay: they are what `!latest` shows if a room adds it again.
            await conn.execute(
                """UPDATE feeds SET active = 0 WHERE id = ? AND room_source = 1
                     AND NOT EXISTS (SELECT 1 FROM room_sources WHERE feed_id = feeds.id)""",
                (feed_id,),
            )
        return removed

    async def room_source_feeds(self) -> list[tuple[FeedState, int]]:
        """Return every polled room source with how many rooms follow it, by title."""
        rows = await self._db.fetchall(
            """SELECT f.*, COUNT(s.room_id) AS followers
               FROM feeds f JOIN room_sources s ON s.feed_id = f.id
               WHERE f.room_source = 1 AND f.active = 1
               GROUP BY f.id ORDER BY COALESCE(f.title, f.url), f.id"""
        )
        return [(feed_from_row(row), int(row["followers"])) for row in rows]
