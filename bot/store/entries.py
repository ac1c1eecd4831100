"""Entries: a parsed poll recorded with its outbox rows in one transaction; the latest news."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import aiosqlite

from ..model import Entry
from ..posting import Audience, plan_posting, route, target_rooms
from .database import Repository
from .feeds import FeedState, mark_polled
from .filters import applying_filters, count_held_back
from .outbox import queue_deliveries
from .retention import forgotten_keys
from .rooms import audience, source_followers
from .rows import entry_from_row, epoch, known_keys


@dataclass(frozen=True, slots=True)
class PollRecord:
    """What a successful poll wrote."""

    new_entries: tuple[Entry, ...]  # unseen entries, oldest first
    seeded: bool  # first fetch of the feed: recorded, nothing posted
    posted: tuple[Entry, ...]  # entries that got outbox rows
    too_old: int  # new entries older than max_age: recorded, not posted
    digested: int  # new entries beyond max_posts_per_poll, summed up in one line
    deliveries: int  # outbox rows added
    held_back: int = 0  # (room, entry) pairs that rooms' filters kept out
    new_events: int = 0  # a calendar's poll: events it had not brought before
    announced: int = 0  # a calendar's poll: events that got outbox rows


async def insert_unseen(
    conn: aiosqlite.Connection, feed_id: int, entries: Sequence[Entry], now: float
) -> list[Entry]:
    """Record the entries a feed had not brought before, inside the caller's transaction."""
    keys = [entry.key for entry in entries]
    seen = await known_keys(conn, "entries", feed_id, keys)
    # A pruned entry lives on as a hash of its key: back in the feed, it is still not new.
    seen |= await forgotten_keys(conn, feed_id, [key for key in keys if key not in seen])
    new: list[Entry] = []
    for entry in entries:
        if entry.key not in seen:
            seen.add(entry.key)  # the parser dedups keys; this keeps the insert safe anyway
            new.append(entry)
    await conn.executemany(
        """INSERT INTO entries (feed_id, key, title, link, published, summary_html,
               first_seen) VALUES (?, ?, ?, ?, ?, ?, ?)""",
        [
            (
                feed_id,
                entry.key,
                entry.title,
                entry.link,
                epoch(entry.published),
                entry.summary_html,
                now,
            )
            for entry in new
        ],
    )
    return new


async def _audience(conn: aiosqlite.Connection, feed: FeedState, region: str) -> Audience:
    """Return who may hear of a feed's entries: its organisation's and its own followers."""
    # A room source belongs to no organisation: only the rooms that added it hear of it.
    heard = Audience() if feed.room_source else await audience(conn, feed.organisation, region)
    return replace(heard, source_followers=await source_followers(conn, feed.id))


class Entries(Repository):
    """The entries every feed brought, and the polls that recorded them."""

    async def record_poll(
        self,
        feed: FeedState,
        region: str,
        entries: Sequence[Entry],
        *,
        now: float,
        next_poll: float,
        max_age: float,
        max_posts: int,
        etag: str | None,
        last_modified: str | None,
        body_hash: str | None,
        new_url: str | None = None,
    ) -> PollRecord:
        """Record a parsed poll: new entries and their outbox rows, in one transaction."""
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT initialised FROM feeds WHERE id = ?", (feed.id,)
            ) as cursor:
                row = await cursor.fetchone()
            seeded = not (row and row[0])
            new_entries = await insert_unseen(conn, feed.id, entries, now)
            plan = plan_posting(
                new_entries, now=now, max_age=max_age, max_posts=max_posts, seeded=seeded
            )
            deliveries = 0
            held_back: dict[str, int] = {}
            if plan.post or plan.digest:
                rooms = target_rooms(await _audience(conn, feed, region))
                filters = await applying_filters(conn, feed, region, rooms)
                routing = route(plan, rooms, filters, max_posts=max_posts)
                for sharing, room_plan in routing.shares:
                    deliveries += await queue_deliveries(conn, feed, sharing, room_plan, now)
                held_back = dict(routing.held_back)
                await count_held_back(conn, held_back)
            await mark_polled(
                conn, feed.id, now=now, next_poll=next_poll, etag=etag,
                last_modified=last_modified, body_hash=body_hash, new_url=new_url,
            )  # fmt: skip
        return PollRecord(
            new_entries=tuple(new_entries),
            seeded=seeded,
            posted=plan.post,
            too_old=len(plan.too_old),
            digested=len(plan.digest),
            deliveries=deliveries,
            held_back=sum(held_back.values()),
        )

    async def latest_entries(
        self, organisations: Sequence[str], limit: int
    ) -> list[tuple[str, Entry]]:
        """Return the newest entries of these organisations as (organisation, entry) pairs."""
        if not organisations:
            return []
        marks = ",".join("?" for _ in organisations)
        rows = await self._db.fetchall(
            f"""SELECT f.organisation, e.* FROM entries e JOIN feeds f ON f.id = e.feed_id
                WHERE f.organisation IN ({marks})
                ORDER BY COALESCE(e.published, e.first_seen) DESC, e.id DESC LIMIT ?""",
            (*organisations, limit),
        )
        return [(row["organisation"], entry_from_row(row)) for row in rows]

    async def latest_feed_entries(self, feed_id: int, limit: int) -> list[Entry]:
        """Return the newest entries of one feed."""
        rows = await self._db.fetchall(
            """SELECT * FROM entries WHERE feed_id = ?
               ORDER BY COALESCE(published, first_seen) DESC, id DESC LIMIT ?""",
            (feed_id, limit),
        )
        return [entry_from_row(row) for row in rows]
