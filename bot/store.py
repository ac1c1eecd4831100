"""SQLite store: feeds and their HTTP state, entries, follows, outbox, key-value; all the SQL."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import aiosqlite

from .errors import StoreError
from .migrations import check_version, migrate
from .model import Delivery, Entry

log = logging.getLogger(__name__)

FollowKind = Literal["region", "organisation"]
_CONFIG_FOLLOWS = "config.follows"  # the room → region pairs of the last configuration applied

# SQLite's answers when the database file cannot be used at all, in words an operator acts on.
# Everything else (a constraint, a bug in our SQL) stays an sqlite3 error.
_UNUSABLE: Final = {
    "SQLITE_FULL": "the disk is full; free some space, then start Crieur again",
    "SQLITE_READONLY": "it is read-only; let Crieur's user write the file and its directory",
    "SQLITE_CANTOPEN": "it cannot be opened; check the path, and that Crieur's user may write "
    "the file and its directory",
    "SQLITE_PERM": "access is denied",
    "SQLITE_IOERR": "reading or writing the disk failed",
    "SQLITE_NOTADB": "the file is not an SQLite database",
    "SQLITE_CORRUPT": "the file is damaged; restore a backup",
}


@contextlib.contextmanager
def _translated(name: str) -> Iterator[None]:
    """Turn SQLite's "cannot use this file" errors into a StoreError that says what to do."""
    try:
        yield
    except sqlite3.Error as error:
        code = getattr(error, "sqlite_errorname", None) or ""
        advice = _UNUSABLE.get("_".join(code.split("_")[:2]))  # SQLITE_IOERR_WRITE → IOERR
        if advice is None:
            raise
        raise StoreError(f"cannot use the database {name}: {advice} ({error})") from error


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


@dataclass(frozen=True, slots=True)
class PollRecord:
    """What a successful poll wrote."""

    new_entries: tuple[Entry, ...]  # unseen entries, oldest first
    seeded: bool  # first fetch of the feed: recorded, nothing posted
    posted: tuple[Entry, ...]  # entries that got outbox rows
    too_old: int  # new entries older than max_age: recorded, not posted
    digested: int  # new entries beyond max_posts_per_poll, summed up in one line
    deliveries: int  # outbox rows added


@dataclass(frozen=True, slots=True)
class Subscriptions:
    """What one room follows and mutes."""

    regions: tuple[str, ...]
    organisations: tuple[str, ...]
    muted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoomState:
    """Why the dispatcher does not post to a room, if it does not."""

    room_id: str
    paused_reason: str | None
    paused_at: float | None
    left_at: float | None


@dataclass(frozen=True, slots=True)
class PostingPlan:
    """Which new entries a poll posts, and what it only records."""

    post: tuple[Entry, ...]
    digest: tuple[Entry, ...]
    too_old: tuple[Entry, ...]


def plan_posting(
    new_entries: Sequence[Entry], *, now: float, max_age: float, max_posts: int
) -> PostingPlan:
    """Split new entries (oldest first) into posted, digested and too old to post."""
    cutoff = now - max_age
    fresh: list[Entry] = []
    too_old: list[Entry] = []
    for entry in new_entries:
        if entry.published is not None and entry.published.timestamp() < cutoff:
            too_old.append(entry)
        else:
            fresh.append(entry)
    limit = max(max_posts, 0)
    return PostingPlan(tuple(fresh[:limit]), tuple(fresh[limit:]), tuple(too_old))


def transaction_id(room_id: str, feed_id: int, key: str) -> str:
    """Derive the Matrix transaction id of one message from its room and entry."""
    digest = hashlib.sha256(f"{room_id}\0{feed_id}\0{key}".encode()).hexdigest()
    return f"crieur.{digest[:40]}"


def _digest_key(entries: Sequence[Entry]) -> str:
    joined = "\0".join(entry.key for entry in entries)
    return "digest:" + hashlib.sha256(joined.encode()).hexdigest()


def _settle(
    waiters: Sequence[tuple[object, asyncio.Future[None]]], error: BaseException | None
) -> None:
    for _, committed in waiters:
        if committed.done():  # its caller was cancelled meanwhile
            continue
        if error is None:
            committed.set_result(None)
        else:
            committed.set_exception(error)


def _existing_path(path: Path) -> Path | None:
    return path.resolve() if path.exists() else None


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _datetime(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def _entry(row: aiosqlite.Row) -> Entry:
    return Entry(
        key=row["key"],
        title=row["title"],
        link=row["link"],
        published=_datetime(row["published"]),
        summary_html=row["summary_html"],
    )


def _feed(row: aiosqlite.Row) -> FeedState:
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
    )


class Store:
    """The bot's SQLite database; one connection, one writer at a time."""

    def __init__(self, conn: aiosqlite.Connection, name: str = ":memory:") -> None:
        self._conn = conn
        self._name = name  # the file, for error messages
        # One connection is shared by every task: a lock keeps one task's statements
        # from landing inside another task's transaction.
        self._lock = asyncio.Lock()
        self._unchanged: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path | str) -> Store:
        """Open (creating if needed) and migrate the database at `path` (or ':memory:')."""
        if str(path) != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(f"cannot create the directory of {path}: {error}") from error
        with _translated(str(path)):
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            with _translated(str(path)):
                conn.row_factory = aiosqlite.Row
                # Before anything writes (journal mode included): a newer database stays as is.
                await check_version(conn)
                await cls._configure(conn, wal=str(path) != ":memory:")
                await migrate(conn)
                # A read-only file opens and reads fine; find out now, not at the first poll.
                await conn.execute("BEGIN IMMEDIATE")
                await conn.execute("ROLLBACK")
        except BaseException:
            await conn.close()
            raise
        return cls(conn, str(path))

    @classmethod
    async def open_copy(cls, path: Path | str) -> Store:
        """Open an in-memory copy of the database at `path`, so nothing touches the file."""
        memory = await aiosqlite.connect(":memory:", isolation_level=None)
        try:
            memory.row_factory = aiosqlite.Row
            source_path = await asyncio.to_thread(_existing_path, Path(path))
            if source_path is not None:
                source = await aiosqlite.connect(f"file:{source_path}?mode=ro", uri=True)
                try:
                    await source.backup(memory)
                finally:
                    await source.close()
            await cls._configure(memory, wal=False)
            await migrate(memory)
        except BaseException:
            await memory.close()
            raise
        return cls(memory)

    @staticmethod
    async def _configure(conn: aiosqlite.Connection, *, wal: bool) -> None:
        if wal:
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA busy_timeout = 5000")

    async def close(self) -> None:
        """Write what is pending and close the connection."""
        if self._flusher is not None:
            with contextlib.suppress(Exception):  # its callers were told
                await self._flusher
        await self._conn.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            with _translated(self._name):
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    # SQLite rolls back by itself on some errors (a full disk): then there is
                    # nothing left to roll back, and trying would hide the error.
                    if self._conn.in_transaction:
                        await self._conn.execute("ROLLBACK")
                    raise
                await self._conn.execute("COMMIT")

    async def _write(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        """Run one statement on its own (atomic by itself); return the rows it changed."""
        async with self._lock:
            with _translated(self._name):
                cursor = await self._conn.execute(sql, params)
                changed = cursor.rowcount
                await cursor.close()
        return max(changed, 0)

    async def _fetchall(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[Any]:
        async with self._lock:
            with _translated(self._name):
                async with self._conn.execute(sql, params) as cursor:
                    return list(await cursor.fetchall())

    async def _fetchone(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    # -- feeds ------------------------------------------------------------------------------

    async def sync_feeds(self, feeds: Iterable[tuple[str, str]]) -> None:
        """Make the feed rows match the configuration's (organisation, url) pairs."""
        wanted = list(feeds)
        async with self._transaction() as conn:
            await conn.execute("UPDATE feeds SET active = 0")
            for organisation, url in wanted:
                await conn.execute(
                    """INSERT INTO feeds (organisation, config_url, url) VALUES (?, ?, ?)
                       ON CONFLICT (config_url)
                       DO UPDATE SET organisation = excluded.organisation, active = 1""",
                    (organisation, url, url),
                )

    async def feeds(self, organisations: Sequence[str] | None = None) -> list[FeedState]:
        """Return the active feeds, of the given organisations if any."""
        rows = await self._fetchall("SELECT * FROM feeds WHERE active = 1 ORDER BY id")
        states = [_feed(row) for row in rows]
        if organisations is None:
            return states
        wanted = set(organisations)
        return [state for state in states if state.organisation in wanted]

    async def feed(self, feed_id: int) -> FeedState | None:
        """Return one feed by id."""
        row = await self._fetchone("SELECT * FROM feeds WHERE id = ?", (feed_id,))
        return _feed(row) if row else None

    async def feeds_due(self, now: float) -> list[FeedState]:
        """Return active feeds whose next poll time has come, most overdue first."""
        rows = await self._fetchall(
            "SELECT * FROM feeds WHERE active = 1 AND next_poll <= ? ORDER BY next_poll, id",
            (now,),
        )
        return [_feed(row) for row in rows]

    async def next_poll_time(self, after: float) -> float | None:
        """Return when the next active feed falls due, strictly after `after`."""
        row = await self._fetchone(
            "SELECT MIN(next_poll) AS t FROM feeds WHERE active = 1 AND next_poll > ?", (after,)
        )
        return float(row["t"]) if row and row["t"] is not None else None

    async def schedule_feed(self, feed_id: int, next_poll: float) -> None:
        """Set when a feed is polled next."""
        await self._write("UPDATE feeds SET next_poll = ? WHERE id = ?", (next_poll, feed_id))

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
        # Most polls end here: they are written in batches, one transaction for all the polls
        # that finish while the previous batch is being written, and each caller waits for its
        # own row to be committed.
        params = {
            "now": now,
            "next": next_poll,
            "etag": etag,
            "lm": last_modified,
            "url": new_url,
            "id": feed_id,
        }
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unchanged.append((params, committed))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._write_unchanged(), name="store-unchanged")
        await committed

    async def _write_unchanged(self) -> None:
        batch: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        try:
            while self._unchanged:
                batch, self._unchanged = self._unchanged, []
                try:
                    async with self._transaction() as conn:
                        await conn.executemany(
                            """UPDATE feeds SET error_count = 0, last_error = NULL,
                                   last_attempt = :now, last_success = :now, next_poll = :next,
                                   etag = COALESCE(:etag, etag),
                                   last_modified = COALESCE(:lm, last_modified),
                                   url = COALESCE(:url, url)
                               WHERE id = :id""",
                            [params for params, _ in batch],
                        )
                except Exception as error:
                    # This batch's callers learn of it; rows queued meanwhile get their own try.
                    _settle(batch, error)
                else:
                    _settle(batch, None)
        except BaseException:
            _settle([*batch, *self._unchanged], asyncio.CancelledError())
            self._unchanged = []
            raise
        finally:
            self._flusher = None

    async def record_failure(
        self, feed_id: int, *, now: float, error: str, next_poll: float
    ) -> int:
        """Record a failed poll; return the feed's count of consecutive failures."""
        async with self._transaction() as conn:
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

    async def unseen_entries(self, feed_id: int, entries: Sequence[Entry]) -> list[Entry]:
        """Return the entries of this list that the feed has not recorded yet."""
        seen = {
            row["key"]
            for row in await self._fetchall("SELECT key FROM entries WHERE feed_id = ?", (feed_id,))
        }
        return [entry for entry in entries if entry.key not in seen]

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
        async with self._transaction() as conn:
            async with conn.execute(
                "SELECT initialised FROM feeds WHERE id = ?", (feed.id,)
            ) as cursor:
                row = await cursor.fetchone()
            seeded = not (row and row[0])
            new_entries = await self._insert_unseen(conn, feed.id, entries, now)
            plan = (
                PostingPlan((), (), ())
                if seeded
                else plan_posting(new_entries, now=now, max_age=max_age, max_posts=max_posts)
            )
            deliveries = 0
            if plan.post or plan.digest:
                rooms = await self._target_rooms(conn, feed.organisation, region)
                deliveries = await self._insert_deliveries(conn, feed, rooms, plan, now)
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
                    "id": feed.id,
                },
            )
        return PollRecord(
            new_entries=tuple(new_entries),
            seeded=seeded,
            posted=plan.post,
            too_old=len(plan.too_old),
            digested=len(plan.digest),
            deliveries=deliveries,
        )

    async def _insert_unseen(
        self, conn: aiosqlite.Connection, feed_id: int, entries: Sequence[Entry], now: float
    ) -> list[Entry]:
        seen: set[str] = set()
        keys = [entry.key for entry in entries]
        # Chunked: SQLite builds may cap bound parameters at 999.
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" for _ in chunk)
            async with conn.execute(
                f"SELECT key FROM entries WHERE feed_id = ? AND key IN ({marks})",
                (feed_id, *chunk),
            ) as cursor:
                seen.update(row[0] for row in await cursor.fetchall())
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
                    _epoch(entry.published),
                    entry.summary_html,
                    now,
                )
                for entry in new
            ],
        )
        return new

    async def _target_rooms(
        self, conn: aiosqlite.Connection, organisation: str, region: str
    ) -> list[str]:
        async with conn.execute(
            """SELECT DISTINCT f.room_id FROM follows f
               LEFT JOIN rooms r ON r.room_id = f.room_id
               WHERE ((f.kind = 'region' AND f.slug = :region)
                      OR (f.kind = 'organisation' AND f.slug = :org))
                 AND r.left_at IS NULL
                 AND NOT EXISTS (SELECT 1 FROM mutes m
                                 WHERE m.room_id = f.room_id AND m.organisation = :org)
               ORDER BY f.room_id""",
            {"region": region, "org": organisation},
        ) as cursor:
            return [row[0] for row in await cursor.fetchall()]

    async def _insert_deliveries(
        self,
        conn: aiosqlite.Connection,
        feed: FeedState,
        rooms: Sequence[str],
        plan: PostingPlan,
        now: float,
    ) -> int:
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
                """INSERT INTO outbox (room_id, organisation, entry_id, txn_id, created)
                   SELECT ?, ?, id, ?, ? FROM entries WHERE feed_id = ? AND key = ?
                   ON CONFLICT (txn_id) DO NOTHING""",
                entry_rows,
            )
            added += max(cursor.rowcount, 0)
            await cursor.close()
        if plan.digest:
            digest_key = _digest_key(plan.digest)
            cursor = await conn.executemany(
                """INSERT INTO outbox (room_id, organisation, digest_count, txn_id, created)
                   VALUES (?, ?, ?, ?, ?) ON CONFLICT (txn_id) DO NOTHING""",
                [
                    (
                        room_id,
                        feed.organisation,
                        len(plan.digest),
                        transaction_id(room_id, feed.id, digest_key),
                        now,
                    )
                    for room_id in rooms
                ],
            )
            added += max(cursor.rowcount, 0)
            await cursor.close()
        return added

    async def latest_entries(
        self, organisations: Sequence[str], limit: int
    ) -> list[tuple[str, Entry]]:
        """Return the newest entries of these organisations as (organisation, entry) pairs."""
        if not organisations:
            return []
        marks = ",".join("?" for _ in organisations)
        rows = await self._fetchall(
            f"""SELECT f.organisation, e.* FROM entries e JOIN feeds f ON f.id = e.feed_id
                WHERE f.organisation IN ({marks})
                ORDER BY COALESCE(e.published, e.first_seen) DESC, e.id DESC LIMIT ?""",
            (*organisations, limit),
        )
        return [(row["organisation"], _entry(row)) for row in rows]

    async def entry_count(self) -> int:
        """Return how many entries are recorded in all."""
        row = await self._fetchone("SELECT COUNT(*) AS n FROM entries")
        return int(row["n"])

    # -- rooms: follows, mutes, state -------------------------------------------------------

    async def follow(
        self,
        room_id: str,
        kind: FollowKind,
        slug: str,
        *,
        now: float,
        origin: Literal["config", "command"] = "command",
    ) -> bool:
        """Make a room follow a region or organisation; False if it already did."""
        changed = await self._write(
            """INSERT INTO follows (room_id, kind, slug, origin, created)
               VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (room_id, kind, slug, origin, now),
        )
        return changed == 1

    async def unfollow(self, room_id: str, kind: FollowKind, slug: str) -> bool:
        """Stop a room following a region or organisation; False if it did not."""
        changed = await self._write(
            "DELETE FROM follows WHERE room_id = ? AND kind = ? AND slug = ?",
            (room_id, kind, slug),
        )
        return changed > 0

    async def mute(self, room_id: str, organisation: str, *, now: float) -> bool:
        """Mute an organisation in a room; False if it already was."""
        changed = await self._write(
            "INSERT INTO mutes (room_id, organisation, created) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (room_id, organisation, now),
        )
        return changed == 1

    async def unmute(self, room_id: str, organisation: str) -> bool:
        """Lift a mute; False if there was none."""
        changed = await self._write(
            "DELETE FROM mutes WHERE room_id = ? AND organisation = ?", (room_id, organisation)
        )
        return changed > 0

    async def subscriptions(self, room_id: str) -> Subscriptions:
        """Return what a room follows and mutes."""
        follows = await self._fetchall(
            "SELECT kind, slug FROM follows WHERE room_id = ? ORDER BY slug", (room_id,)
        )
        muted = await self._fetchall(
            "SELECT organisation FROM mutes WHERE room_id = ? ORDER BY organisation", (room_id,)
        )
        return Subscriptions(
            regions=tuple(row["slug"] for row in follows if row["kind"] == "region"),
            organisations=tuple(row["slug"] for row in follows if row["kind"] == "organisation"),
            muted=tuple(row["organisation"] for row in muted),
        )

    async def sync_config_follows(
        self, follows: Mapping[str, Iterable[str]], *, now: float
    ) -> None:
        """Apply changes of the configuration's room → regions follows since the last start.

        Only pairs that appeared in or left the configuration are touched, so a moderator's
        `!unsubscribe` of a configured region lasts until the configuration itself changes.
        """
        wanted = {(room, region) for room, regions in follows.items() for region in regions}
        async with self._transaction() as conn:
            async with conn.execute(
                "SELECT value FROM kv WHERE key = ?", (_CONFIG_FOLLOWS,)
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                applied = {(room, region) for room, region in json.loads(row[0])}
            else:  # databases from before this record: the config rows are what was applied
                async with conn.execute(
                    "SELECT room_id, slug FROM follows WHERE origin = 'config'"
                ) as cursor:
                    applied = {(r[0], r[1]) for r in await cursor.fetchall()}
            for room_id, region in applied - wanted:
                await conn.execute(
                    "DELETE FROM follows WHERE room_id = ? AND kind = 'region' AND slug = ?"
                    " AND origin = 'config'",
                    (room_id, region),
                )
            for room_id, region in sorted(wanted - applied):
                await conn.execute(
                    """INSERT INTO follows (room_id, kind, slug, origin, created)
                       VALUES (?, 'region', ?, 'config', ?) ON CONFLICT DO NOTHING""",
                    (room_id, region, now),
                )
            await conn.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_CONFIG_FOLLOWS, json.dumps(sorted(wanted))),
            )

    async def followed_rooms(self) -> list[str]:
        """Return every room that follows something."""
        rows = await self._fetchall("SELECT DISTINCT room_id FROM follows ORDER BY room_id")
        return [row["room_id"] for row in rows]

    async def move_room(self, old_room_id: str, new_room_id: str) -> None:
        """Carry a room's follows, mutes and pending messages over to its replacement."""
        async with self._transaction() as conn:
            for table in ("follows", "mutes"):
                await conn.execute(
                    f"UPDATE OR IGNORE {table} SET room_id = ? WHERE room_id = ?",
                    (new_room_id, old_room_id),
                )
                await conn.execute(f"DELETE FROM {table} WHERE room_id = ?", (old_room_id,))
            # Pending messages follow the room, unless the new room already has that entry.
            await conn.execute(
                """UPDATE outbox SET room_id = :new
                   WHERE room_id = :old AND sent_at IS NULL
                     AND (entry_id IS NULL OR entry_id NOT IN
                          (SELECT entry_id FROM outbox
                           WHERE room_id = :new AND entry_id IS NOT NULL))""",
                {"new": new_room_id, "old": old_room_id},
            )
            await conn.execute(
                "DELETE FROM outbox WHERE room_id = ? AND sent_at IS NULL", (old_room_id,)
            )

    async def room_left(self, room_id: str, *, now: float, reason: str) -> int:
        """Stop delivering to a room the bot left; drop its pending rows and return how many."""
        async with self._transaction() as conn:
            await conn.execute(
                """INSERT INTO rooms (room_id, left_at, paused_reason, paused_at)
                   VALUES (?, ?, ?, ?)
                   ON CONFLICT (room_id) DO UPDATE SET left_at = excluded.left_at,
                       paused_reason = excluded.paused_reason, paused_at = excluded.paused_at""",
                (room_id, now, reason, now),
            )
            cursor = await conn.execute(
                "DELETE FROM outbox WHERE room_id = ? AND sent_at IS NULL", (room_id,)
            )
            dropped = max(cursor.rowcount, 0)
            await cursor.close()
        return dropped

    async def room_joined(self, room_id: str) -> None:
        """Deliver to a room again after (re)joining it."""
        await self._write("DELETE FROM rooms WHERE room_id = ?", (room_id,))

    async def pause_room(self, room_id: str, *, now: float, reason: str) -> None:
        """Hold a room's messages after a permanent error (kept, shown in !status)."""
        await self._write(
            """INSERT INTO rooms (room_id, paused_reason, paused_at) VALUES (?, ?, ?)
               ON CONFLICT (room_id) DO UPDATE SET paused_reason = excluded.paused_reason,
                   paused_at = excluded.paused_at""",
            (room_id, reason[:500], now),
        )

    async def resume_room(self, room_id: str) -> bool:
        """Lift a pause; False if the room was not paused."""
        changed = await self._write(
            "UPDATE rooms SET paused_reason = NULL, paused_at = NULL"
            " WHERE room_id = ? AND paused_reason IS NOT NULL AND left_at IS NULL",
            (room_id,),
        )
        return changed > 0

    async def room_state(self, room_id: str) -> RoomState | None:
        """Return a room's pause or departure, None if it is in good standing."""
        row = await self._fetchone("SELECT * FROM rooms WHERE room_id = ?", (room_id,))
        if row is None:
            return None
        return RoomState(row["room_id"], row["paused_reason"], row["paused_at"], row["left_at"])

    async def paused_rooms(self) -> list[RoomState]:
        """Return rooms on hold after a permanent error."""
        rows = await self._fetchall(
            "SELECT * FROM rooms WHERE paused_reason IS NOT NULL AND left_at IS NULL"
        )
        return [
            RoomState(row["room_id"], row["paused_reason"], row["paused_at"], row["left_at"])
            for row in rows
        ]

    # -- outbox -----------------------------------------------------------------------------

    async def pending_deliveries(self, now: float, limit: int = 50) -> list[Delivery]:
        """Return due outbox rows of rooms in good standing, oldest first."""
        rows = await self._fetchall(
            """SELECT o.id AS outbox_id, o.room_id, o.txn_id, o.organisation, o.digest_count,
                      o.attempts, e.key, e.title, e.link, e.published, e.summary_html
               FROM outbox o
               LEFT JOIN entries e ON e.id = o.entry_id
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
                entry=_entry(row) if row["key"] is not None else None,
                digest_count=row["digest_count"],
                attempts=row["attempts"],
            )
            for row in rows
        ]

    async def next_delivery_time(self) -> float | None:
        """Return when the earliest pending row of a room in good standing is due."""
        row = await self._fetchone(
            """SELECT MIN(o.next_try) AS t FROM outbox o LEFT JOIN rooms r ON r.room_id = o.room_id
               WHERE o.sent_at IS NULL AND r.paused_reason IS NULL AND r.left_at IS NULL"""
        )
        return float(row["t"]) if row and row["t"] is not None else None

    async def mark_sent(self, delivery_id: int, *, now: float, event_id: str | None) -> None:
        """Record that the homeserver accepted a message."""
        await self._write(
            "UPDATE outbox SET sent_at = ?, event_id = ?, attempts = attempts + 1 WHERE id = ?",
            (now, event_id, delivery_id),
        )

    async def defer_delivery(self, delivery_id: int, *, next_try: float, error: str) -> None:
        """Record a failed attempt and when to try again."""
        await self._write(
            "UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ? WHERE id = ?",
            (next_try, error[:500], delivery_id),
        )

    async def outbox_size(self, room_id: str | None = None) -> int:
        """Return how many messages wait to be sent (in one room, or in all)."""
        if room_id is None:
            row = await self._fetchone("SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL")
        else:
            row = await self._fetchone(
                "SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL AND room_id = ?",
                (room_id,),
            )
        return int(row["n"])

    async def sent_count(self, room_id: str) -> int:
        """Return how many messages were delivered to a room."""
        row = await self._fetchone(
            "SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NOT NULL AND room_id = ?",
            (room_id,),
        )
        return int(row["n"])

    # -- key-value --------------------------------------------------------------------------

    async def get_value(self, key: str) -> str | None:
        """Return a stored value (sync token, device id, access token…)."""
        row = await self._fetchone("SELECT value FROM kv WHERE key = ?", (key,))
        return str(row["value"]) if row else None

    async def set_value(self, key: str, value: str) -> None:
        """Store a value under a key."""
        await self._write(
            "INSERT INTO kv (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def delete_value(self, key: str) -> None:
        """Forget a stored value."""
        await self._write("DELETE FROM kv WHERE key = ?", (key,))
