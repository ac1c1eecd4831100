"""Calendars' events: a parsed poll recorded with its announcements in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from ..calendar import Event, starts_at
from ..event_posting import (
    AnnouncementPlan,
    Change,
    Pending,
    change_key,
    change_of,
    event_message_key,
    events_digest_key,
    first_state,
    plan_announcements,
)
from ..posting import target_rooms, transaction_id
from .database import Repository
from .entries import PollRecord
from .event_rows import event_from_json, event_to_json
from .feeds import FeedState, mark_polled
from .retention import forgotten_keys
from .rooms import audience
from .rows import known_keys


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as `!events` lists it, with whose calendar it comes from."""

    event: Event
    organisation: str  # '' for a region's calendar
    region: str  # the region of a region's calendar; '' for an organisation's
    starts: float  # epoch seconds of its (next) start


async def _add_message(
    conn: aiosqlite.Connection,
    feed: FeedState,
    room_id: str,
    key: str,
    now: float,
    **columns: object,
) -> int:
    """Add one outbox row unless its transaction id is there already; return 1 or 0."""
    values = {
        "room_id": room_id,
        "organisation": feed.organisation,
        "txn_id": transaction_id(room_id, feed.id, key),
        "created": now,
        "feed_id": feed.id,
        **columns,  # names written in this module only, never from outside
    }
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    cursor = await conn.execute(
        f"INSERT INTO outbox ({names}) VALUES ({marks}) ON CONFLICT (txn_id) DO NOTHING",
        tuple(values.values()),
    )
    added = max(cursor.rowcount, 0)
    await cursor.close()
    return added


async def _queue(
    conn: aiosqlite.Connection,
    feed: FeedState,
    rooms: Sequence[str],
    plan: AnnouncementPlan,
    now: float,
) -> int:
    """Add the plan's outbox rows for these rooms; return how many."""
    # (room, transaction key, event row or None for "… and N more", how many that line counts)
    messages: list[tuple[str, str, int | None, int]] = [
        (room_id, event_message_key(event.key), event.id, 0)
        for room_id in rooms
        for event in plan.post
    ]
    if plan.digest:
        key = events_digest_key([event.key for event in plan.digest])
        messages += [(room_id, key, None, len(plan.digest)) for room_id in rooms]
    added = 0
    for room_id, key, event_row, count in messages:
        added += await _add_message(
            conn, feed, room_id, key, now, calendar_event=event_row, digest_count=count
        )
    return added


async def announce_due(
    conn: aiosqlite.Connection,
    feed: FeedState,
    region: str,
    *,
    now: float,
    within: float,
    max_posts: int,
) -> tuple[AnnouncementPlan, int]:
    """Queue, inside the caller's transaction, what a calendar owes rooms now."""
    async with conn.execute(
        """SELECT id, key, starts, cancelled FROM calendar_events
           WHERE feed_id = ? AND state = 'pending' AND starts > ?""",
        (feed.id, now),
    ) as cursor:
        pending = [Pending(row[0], row[1], row[2], bool(row[3])) for row in await cursor.fetchall()]
    plan = plan_announcements(pending, now=now, within=within, max_posts=max_posts)
    if not plan.post and not plan.digest:
        return plan, 0
    rooms = target_rooms(await audience(conn, feed.organisation, region))
    deliveries = await _queue(conn, feed, rooms, plan, now)
    for state, events in (("announced", plan.post), ("digested", plan.digest)):
        await conn.executemany(
            "UPDATE calendar_events SET state = ? WHERE id = ?",
            [(state, event.id) for event in events],
        )
    return plan, deliveries


async def _announced_ahead(
    conn: aiosqlite.Connection, feed_id: int, now: float
) -> dict[str, tuple[int, Event]]:
    """Return the announced events that have not started: key → (row id, event)."""
    async with conn.execute(
        """SELECT id, key, data FROM calendar_events
           WHERE feed_id = ? AND state = 'announced' AND starts > ?""",
        (feed_id, now),
    ) as cursor:
        return {row[1]: (row[0], event_from_json(row[2])) for row in await cursor.fetchall()}


async def _queue_change(
    conn: aiosqlite.Connection,
    feed: FeedState,
    row_id: int,
    event: Event,
    change: Change,
    now: float,
) -> int:
    """Queue one reply per room that got the event's announcement; return how many rows."""
    async with conn.execute(
        """SELECT id, room_id FROM outbox
           WHERE calendar_event = ? AND event_change IS NULL AND digest_count = 0""",
        (row_id,),
    ) as cursor:
        announcements = list(await cursor.fetchall())
    key = change_key(event, change)
    added = 0
    for announcement_id, room_id in announcements:
        added += await _add_message(
            conn, feed, room_id, key, now,
            calendar_event=row_id, event_change=change, reply_to=announcement_id,
        )  # fmt: skip
    return added


async def _queue_changes(
    conn: aiosqlite.Connection,
    feed: FeedState,
    before: dict[str, tuple[int, Event]],
    events: Sequence[Event],
    *,
    zone: str,
    now: float,
) -> int:
    """Queue the replies owed for announced events whose start or place changed, or cancelled."""
    added = 0
    for event in events:
        if event.key not in before:
            continue
        row_id, old = before[event.key]
        change = change_of(old, event)
        starts = starts_at(event, zone=zone)
        if change == "changed" and (starts is None or starts.timestamp() <= now):
            continue  # moved into the past: nothing left to come to
        if change is not None:
            added += await _queue_change(conn, feed, row_id, event, change, now)
    return added


class Calendars(Repository):
    """The events calendars brought, and the polls that recorded them."""

    async def record_calendar(
        self,
        feed: FeedState,
        region: str,
        events: Sequence[Event],
        *,
        zone: str,
        now: float,
        next_poll: float,
        within: float,
        max_posts: int,
        etag: str | None,
        last_modified: str | None,
        body_hash: str | None,
        new_url: str | None = None,
    ) -> PollRecord:
        """Record a parsed calendar and queue its announcements, in one transaction.

        Events already known are updated (a changed time, place or status), keeping their
        state; events that left the export are kept as they were (exports cut their window).
        """
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT initialised FROM feeds WHERE id = ?", (feed.id,)
            ) as cursor:
                row = await cursor.fetchone()
            seeded = not (row and row[0])
            # A pruned past event that the export still carries stays forgotten.
            gone = await forgotten_keys(conn, feed.id, [event.key for event in events])
            events = [event for event in events if event.key not in gone]
            keys = [event.key for event in events]
            known = await known_keys(conn, "calendar_events", feed.id, keys)
            before = await _announced_ahead(conn, feed.id, now)
            series = {event.key for event in events if event.rule is not None}
            rows = []
            for event in events:
                starts = starts_at(event, zone=zone)
                state = first_state(event.key, seeded=seeded, series=series)
                rows.append(
                    (
                        feed.id,
                        event.key,
                        event_to_json(event),
                        starts.timestamp() if starts is not None else None,
                        int(event.rule is not None),
                        int(event.status == "cancelled"),
                        state,
                        now,
                    )
                )
            await conn.executemany(
                """INSERT INTO calendar_events
                       (feed_id, key, data, starts, series, cancelled, state, first_seen)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (feed_id, key) DO UPDATE SET data = excluded.data,
                       starts = excluded.starts, series = excluded.series,
                       cancelled = excluded.cancelled""",
                rows,
            )
            changes = await _queue_changes(conn, feed, before, events, zone=zone, now=now)
            plan, deliveries = await announce_due(
                conn, feed, region, now=now, within=within, max_posts=max_posts
            )
            await mark_polled(
                conn, feed.id, now=now, next_poll=next_poll, etag=etag,
                last_modified=last_modified, body_hash=body_hash, new_url=new_url,
            )  # fmt: skip
        return PollRecord(
            new_entries=(),
            seeded=seeded,
            posted=(),
            too_old=0,
            digested=len(plan.digest),
            deliveries=deliveries + changes,
            new_events=len(events) - len(known),
            announced=len(plan.post),
        )

    async def announce_due_events(
        self, feed: FeedState, region: str, *, now: float, within: float, max_posts: int
    ) -> int:
        """Queue the announcements of pending events that came within the window; count rows.

        For an export that did not change: a series whose next occurrence has started has
        another one to find, so the calendar's validators are forgotten and its next poll
        fetches and parses it anew.
        """
        async with self._db.transaction() as conn:
            _, deliveries = await announce_due(
                conn, feed, region, now=now, within=within, max_posts=max_posts
            )
            await conn.execute(
                """UPDATE feeds SET etag = NULL, last_modified = NULL, body_hash = NULL
                   WHERE id = ? AND EXISTS (SELECT 1 FROM calendar_events
                       WHERE feed_id = ? AND series = 1 AND starts <= ?)""",
                (feed.id, feed.id, now),
            )
        return deliveries

    async def upcoming_events(
        self, regions: Sequence[str], organisations: Sequence[str], *, now: float, limit: int
    ) -> list[StoredEvent]:
        """Return the next events of these regions' and organisations' calendars, soonest first.

        Cancelled events are left out, and so is a modified occurrence of a series the same
        calendar holds: a series shows once, at its next occurrence.
        """
        if not regions and not organisations:
            return []
        region_marks = ",".join("?" for _ in regions) or "NULL"
        org_marks = ",".join("?" for _ in organisations) or "NULL"
        rows = await self._db.fetchall(
            f"""SELECT e.data, e.starts, f.organisation, f.region
                FROM calendar_events e JOIN feeds f ON f.id = e.feed_id
                WHERE f.active = 1 AND f.kind = 'calendar'
                  AND (f.region IN ({region_marks}) OR f.organisation IN ({org_marks}))
                  AND e.cancelled = 0 AND e.starts > ?
                  AND NOT (instr(e.key, '#') > 0 AND EXISTS (
                      SELECT 1 FROM calendar_events s WHERE s.feed_id = e.feed_id
                        AND s.key = substr(e.key, 1, instr(e.key, '#') - 1)))
                ORDER BY e.starts, e.id LIMIT ?""",
            (*regions, *organisations, now, limit),
        )
        return [
            StoredEvent(
                event_from_json(row["data"]), row["organisation"], row["region"], row["starts"]
            )
            for row in rows
        ]
