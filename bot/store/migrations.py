"""Versioned schema: one function per step, applied with its version bump in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import aiosqlite

from ..errors import StoreError

log = logging.getLogger(__name__)

Step = Callable[[aiosqlite.Connection], Awaitable[None]]


async def _execute_all(conn: aiosqlite.Connection, statements: Sequence[str]) -> None:
    # executescript() would COMMIT first and break the one-transaction-per-step rule.
    for statement in statements:
        await conn.execute(statement)


async def create_base_tables(conn: aiosqlite.Connection) -> None:
    """Create feeds, entries, follows, mutes, outbox and the key-value table."""
    await _execute_all(
        conn,
        [
            """CREATE TABLE feeds (
                id INTEGER PRIMARY KEY,
                organisation TEXT NOT NULL,
                config_url TEXT NOT NULL UNIQUE,
                url TEXT NOT NULL,
                etag TEXT,
                last_modified TEXT,
                body_hash TEXT,
                initialised INTEGER NOT NULL DEFAULT 0,
                error_count INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                last_attempt REAL,
                last_success REAL,
                next_poll REAL NOT NULL DEFAULT 0,
                active INTEGER NOT NULL DEFAULT 1
            )""",
            """CREATE TABLE entries (
                id INTEGER PRIMARY KEY,
                feed_id INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
                key TEXT NOT NULL,
                title TEXT NOT NULL,
                link TEXT,
                published REAL,
                summary_html TEXT NOT NULL DEFAULT '',
                first_seen REAL NOT NULL,
                UNIQUE (feed_id, key)
            )""",
            """CREATE TABLE follows (
                room_id TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('region', 'organisation')),
                slug TEXT NOT NULL,
                origin TEXT NOT NULL CHECK (origin IN ('config', 'command')),
                created REAL NOT NULL,
                PRIMARY KEY (room_id, kind, slug)
            )""",
            """CREATE TABLE mutes (
                room_id TEXT NOT NULL,
                organisation TEXT NOT NULL,
                created REAL NOT NULL,
                PRIMARY KEY (room_id, organisation)
            )""",
            """CREATE TABLE outbox (
                id INTEGER PRIMARY KEY,
                room_id TEXT NOT NULL,
                organisation TEXT NOT NULL,
                entry_id INTEGER REFERENCES entries(id) ON DELETE CASCADE,
                digest_count INTEGER NOT NULL DEFAULT 0,
                txn_id TEXT NOT NULL UNIQUE,
                created REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_try REAL NOT NULL DEFAULT 0,
                last_error TEXT,
                sent_at REAL,
                event_id TEXT
            )""",
            "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ],
    )


async def add_room_state(conn: aiosqlite.Connection) -> None:
    """Track rooms the bot left or cannot post to, and index what the dispatcher reads."""
    await _execute_all(
        conn,
        [
            """CREATE TABLE rooms (
                room_id TEXT PRIMARY KEY,
                paused_reason TEXT,
                paused_at REAL,
                left_at REAL
            )""",
            "CREATE INDEX outbox_pending ON outbox (next_try, id) WHERE sent_at IS NULL",
            "CREATE INDEX entries_by_feed ON entries (feed_id, published, id)",
        ],
    )


async def add_room_sources(conn: aiosqlite.Connection) -> None:
    """Let rooms follow feeds of their own: the feed's title and site, and who follows it."""
    await _execute_all(
        conn,
        [
            # A room source's feed row: organisation '', room_source 1; its title is shown
            # where an organisation's name would be, its site is what a digest links to.
            "ALTER TABLE feeds ADD COLUMN room_source INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE feeds ADD COLUMN title TEXT",
            "ALTER TABLE feeds ADD COLUMN site_url TEXT",
            """CREATE TABLE room_sources (
                room_id TEXT NOT NULL,
                feed_id INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
                typed_url TEXT NOT NULL,
                created REAL NOT NULL,
                PRIMARY KEY (room_id, feed_id)
            )""",
            "CREATE INDEX room_sources_by_feed ON room_sources (feed_id)",
            # Which feed a message comes from: a digest row has no entry to tell it.
            "ALTER TABLE outbox ADD COLUMN feed_id INTEGER",
        ],
    )


async def add_filters(conn: aiosqlite.Connection) -> None:
    """Let rooms keep only the items they want: filter terms, and what they held back."""
    await _execute_all(
        conn,
        [
            # scope_kind 'room' (scope ''), 'region' or 'organisation' (a slug), 'feed' (its id).
            """CREATE TABLE filters (
                room_id TEXT NOT NULL,
                scope_kind TEXT NOT NULL
                    CHECK (scope_kind IN ('room', 'region', 'organisation', 'feed')),
                scope TEXT NOT NULL,
                term TEXT NOT NULL,
                shown TEXT NOT NULL,
                keep INTEGER NOT NULL,
                created REAL NOT NULL,
                PRIMARY KEY (room_id, scope_kind, scope, term)
            )""",
            "CREATE INDEX filters_by_scope ON filters (scope_kind, scope)",
            """CREATE TABLE filter_tallies (
                room_id TEXT PRIMARY KEY,
                held_back INTEGER NOT NULL DEFAULT 0
            )""",
        ],
    )


async def add_calendars(conn: aiosqlite.Connection) -> None:
    """Let feed rows be calendars, and keep the events calendars brought."""
    await _execute_all(
        conn,
        [
            # A calendar is polled as a feed is; a region's calendar has region set and no
            # organisation, an organisation's has its organisation (its region is the config's).
            "ALTER TABLE feeds ADD COLUMN kind TEXT NOT NULL DEFAULT 'feed'",
            "ALTER TABLE feeds ADD COLUMN region TEXT NOT NULL DEFAULT ''",
            # state: seen (at the first fetch, or a modified occurrence of a known series),
            # pending (new, not announced yet), announced, digested ("… and N more").
            """CREATE TABLE calendar_events (
                id INTEGER PRIMARY KEY,
                feed_id INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
                key TEXT NOT NULL,
                data TEXT NOT NULL,
                starts REAL,
                series INTEGER NOT NULL DEFAULT 0,
                cancelled INTEGER NOT NULL DEFAULT 0,
                state TEXT NOT NULL
                    CHECK (state IN ('seen', 'pending', 'announced', 'digested')),
                first_seen REAL NOT NULL,
                UNIQUE (feed_id, key)
            )""",
            "CREATE INDEX calendar_events_by_start ON calendar_events (starts)",
            "ALTER TABLE outbox ADD COLUMN calendar_event INTEGER "
            "REFERENCES calendar_events(id) ON DELETE CASCADE",
            # A change or cancellation of an announced event: a reply to the announcement's row.
            "ALTER TABLE outbox ADD COLUMN event_change TEXT",
            "ALTER TABLE outbox ADD COLUMN reply_to INTEGER",
        ],
    )


async def add_pruned_keys(conn: aiosqlite.Connection) -> None:
    """Keep the keys of pruned rows as 16-byte hashes, so that none is posted again."""
    await _execute_all(
        conn,
        [
            # The hash covers the feed's id and the entry's key; no rowid: the hash is the row.
            "CREATE TABLE pruned_keys (hash BLOB PRIMARY KEY) WITHOUT ROWID",
            # Retention picks entries by age within each feed.
            "CREATE INDEX entries_by_age ON entries (feed_id, first_seen, id)",
            # Deleting an entry or an event deletes its outbox rows: found by index, not by scan.
            "CREATE INDEX outbox_by_entry ON outbox (entry_id) WHERE entry_id IS NOT NULL",
            "CREATE INDEX outbox_by_event ON outbox (calendar_event) "
            "WHERE calendar_event IS NOT NULL",
        ],
    )


MIGRATIONS: tuple[Step, ...] = (
    create_base_tables,
    add_room_state,
    add_room_sources,
    add_filters,
    add_calendars,
    add_pruned_keys,
)
SCHEMA_VERSION = len(MIGRATIONS)


async def schema_version(conn: aiosqlite.Connection) -> int:
    """Return the database's schema version (0 for a new database)."""
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def check_version(conn: aiosqlite.Connection) -> int:
    """Return the schema version; raise StoreError if it is newer than this code."""
    current = await schema_version(conn)
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the database has schema version {current}, newer than this Crieur knows "
            f"({SCHEMA_VERSION}): upgrade Crieur or restore a backup made with this version"
        )
    return current


async def migrate(conn: aiosqlite.Connection, target: int = SCHEMA_VERSION) -> None:
    """Bring the schema up to `target`, refusing a database newer than this code."""
    current = await check_version(conn)
    for version in range(current, target):
        step = MIGRATIONS[version]
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await step(conn)
            # PRAGMA user_version lives in the header and is part of the transaction.
            await conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
        log.info("database schema upgraded to version %d (%s)", version + 1, step.__name__)
