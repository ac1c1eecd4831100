"""Feed rows: which feeds are polled, where, their HTTP validators, health and next poll."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import aiosqlite

from .database import Repository

# Most polls end here: written in batches, see Database.write_batched.
_NOT_MODIFIED = """UPDATE feeds SET error_count = 0, last_error = NULL,
       last_attempt = :now, last_success = :now, next_poll = :next,
       etag = COALESCE(:etag, etag),
       last_modified = COALESCE(:lm, last_modified),
       url = COALESCE(:url, url)
   WHERE id = :id"""


# A feed the configuration still names: its row, moved URL and validators included, is kept.
_KEEP = """INSERT INTO feeds (organisation, region, config_url, url, kind) VALUES (?, ?, ?, ?, ?)
   ON CONFLICT (config_url) DO UPDATE SET organisation = excluded.organisation, active = 1,
       room_source = 0, region = excluded.region, kind = excluded.kind"""
# A feed named again (or for the first time): fetched from its configured URL; the validators
# of another URL do not apply to it.
_RETURN = """INSERT INTO feeds (organisation, region, config_url, url, kind) VALUES (?, ?, ?, ?, ?)
   ON CONFLICT (config_url) DO UPDATE SET organisation = excluded.organisation, active = 1,
       room_source = 0, region = excluded.region, kind = excluded.kind, url = excluded.url,
       etag = CASE WHEN feeds.url = excluded.url THEN feeds.etag END,
       last_modified = CASE WHEN feeds.url = excluded.url THEN feeds.last_modified END"""

SourceKind = Literal["feed", "calendar"]


@dataclass(frozen=True, slots=True)
class FeedState:
    """A feed row: where it lives, its HTTP validators and its health."""

    id: int
    organisation: str
    config_url: str  # as written in the configuration; the feed's identity
    url: str  # where it is fetched now (moved by permanent redirects)
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    initialised: bool  # False until a first successful fetch seeded its entries
    error_count: int  # consecutive failures; 0 after a success
    last_error: str | None
    last_attempt: float | None  # epoch seconds
    last_success: float | None
    next_poll: float
    room_source: bool = False  # polled because rooms follow it, not because it is configured
    title: str | None = None  # the feed's own title, shown for a room source
    site_url: str | None = None  # the site a room source's digest links to
    kind: SourceKind = "feed"  # an RSS/Atom feed, or an iCalendar export
    region: str = ""  # a region's calendar: the region (it has no organisation)

    @property
    def name(self) -> str:
        """Return how people know a room source: its title, else its URL."""
        return self.title or self.url


async def mark_polled(
    conn: aiosqlite.Connection,
    feed_id: int,
    *,
    now: float,
    next_poll: float,
    etag: str | None,
    last_modified: str | None,
    body_hash: str | None,
    new_url: str | None,
) -> None:
    """Record, inside the caller's transaction, a successful poll that read a new body."""
    await conn.execute(
        """UPDATE feeds SET initialised = 1, error_count = 0, last_error = NULL,
               last_attempt = :now, last_success = :now, next_poll = :next,
               etag = :etag, last_modified = :lm, body_hash = :hash,
               url = COALESCE(:url, url)
           WHERE id = :id""",
        {
            "now": now,
            "next": next_poll,
            "etag": etag,
            "lm": last_modified,
            "hash": body_hash,
            "url": new_url,
            "id": feed_id,
        },
    )


def feed_from_row(row: aiosqlite.Row) -> FeedState:
    """Return the feed of a row holding the feeds table's columns."""
    return FeedState(
        id=row["id"],
        organisation=row["organisation"],
        config_url=row["config_url"],
        url=row["url"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        body_hash=row["body_hash"],
        initialised=bool(row["initialised"]),
        error_count=row["error_count"],
        last_error=row["last_error"],
        last_attempt=row["last_attempt"],
        last_success=row["last_success"],
        next_poll=row["next_poll"],
        room_source=bool(row["room_source"]),
        title=row["title"],
        site_url=row["site_url"],
        kind="calendar" if row["kind"] == "calendar" else "feed",
        region=row["region"],
    )


class Feeds(Repository):
    """The configured feeds and how their polls went."""

    async def sync_feeds(
        self,
        feeds: Iterable[tuple[str, str]],
        calendars: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        """Make the feed rows match the configuration's (organisation, url) pairs.

        Calendars are (organisation, region, url): an organisation's has no region here (it
        is its organisation's), a region's has no organisation.

        Room sources are the rooms' own, not the configuration's: they stay as they are. A
        configured URL that rooms already follow becomes the organisation's feed, still
        reaching those rooms; a configured feed that rooms follow and the configuration drops
        goes on as their room source. A permanent redirect is followed for as long as the
        configuration names the feed it moved; a feed the configuration names again after
        leaving it out starts from the URL written there, not from where a redirect once sent
        it.
        """
        wanted = list(feeds)
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT config_url FROM feeds WHERE active = 1 AND room_source = 0"
            ) as cursor:
                kept = {row[0] for row in await cursor.fetchall()}
            await conn.execute("UPDATE feeds SET active = 0 WHERE room_source = 0")
            rows = [(organisation, "", url, "feed") for organisation, url in wanted]
            rows += [(org, region, url, "calendar") for org, region, url in calendars]
            for organisation, region, url, kind in rows:
                await conn.execute(
                    _KEEP if url in kept else _RETURN, (organisation, region, url, url, kind)
                )
            await conn.execute(
                """UPDATE feeds SET room_source = 1, organisation = '', active = 1
                   WHERE room_source = 0 AND active = 0 AND kind = 'feed'
                     AND id IN (SELECT feed_id FROM room_sources)"""
            )

    async def feeds(self, organisations: Sequence[str] | None = None) -> list[FeedState]:
        """Return the active feeds (room sources included), of the given organisations if any."""
        rows = await self._db.fetchall("SELECT * FROM feeds WHERE active = 1 ORDER BY id")
        states = [feed_from_row(row) for row in rows]
        if organisations is None:
            return states
        wanted = set(organisations)
        return [state for state in states if state.organisation in wanted]

    async def feeds_due(self, now: float) -> list[FeedState]:
        """Return active feeds whose next poll time has come, most overdue first."""
        rows = await self._db.fetchall(
            "SELECT * FROM feeds WHERE active = 1 AND next_poll <= ? ORDER BY next_poll, id",
            (now,),
        )
        return [feed_from_row(row) for row in rows]

    async def next_poll_time(self, after: float) -> float | None:
        """Return when the next active feed falls due, strictly after `after`."""
        row = await self._db.fetchone(
            "SELECT MIN(next_poll) AS t FROM feeds WHERE active = 1 AND next_poll > ?", (after,)
        )
        return float(row["t"]) if row and row["t"] is not None else None

    async def schedule_feed(self, feed_id: int, next_poll: float) -> None:
        """Set when a feed is polled next."""
        await self._db.write("UPDATE feeds SET next_poll = ? WHERE id = ?", (next_poll, feed_id))

    async def record_not_modified(
        self,
        feed_id: int,
        *,
        now: float,
        next_poll: float,
        etag: str | None = None,
        last_modified: str | None = None,
        new_url: str | None = None,
    ) -> None:
        """Record a successful poll that brought nothing new to parse (304 or same body)."""
        params = {
            "now": now,
            "next": next_poll,
            "etag": etag,
            "lm": last_modified,
            "url": new_url,
            "id": feed_id,
        }
        await self._db.write_batched(_NOT_MODIFIED, params)

    async def replace_feed_url(self, feed_id: int, url: str, *, next_poll: float) -> None:
        """Poll a feed at another URL from now on, due at once.

        Its first fetch there seeds it, as a new feed's does: a replacement's back catalogue is
        recorded as seen, not posted.
        """
        await self._db.write(
            """UPDATE feeds SET url = ?, etag = NULL, last_modified = NULL, body_hash = NULL,
                   initialised = 0, next_poll = ? WHERE id = ?""",
            (url, next_poll, feed_id),
        )

    async def record_failure(
        self, feed_id: int, *, now: float, error: str, next_poll: float
    ) -> int:
        """Record a failed poll; return the feed's count of consecutive failures."""
        async with self._db.transaction() as conn:
            await conn.execute(
                """UPDATE feeds SET error_count = error_count + 1, last_error = ?,
                       last_attempt = ?, next_poll = ? WHERE id = ?""",
                (error[:500], now, next_poll, feed_id),
            )
            async with conn.execute(
                "SELECT error_count FROM feeds WHERE id = ?", (feed_id,)
            ) as cursor:
                row = await cursor.fetchone()
        return int(row[0]) if row else 0
