"""The one SQLite connection: opening, pragmas, transactions, error translation, key-value."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import aiosqlite

from ..errors import StoreError
from ..files import private_file
from .migrations import check_version, migrate

Params = Sequence[Any] | Mapping[str, Any]

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


async def _configure(conn: aiosqlite.Connection, *, wal: bool) -> None:
    if wal:
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
    await conn.execute("PRAGMA foreign_keys = ON")
    await conn.execute("PRAGMA busy_timeout = 5000")


class Database:
    """One connection shared by every repository; one writer at a time."""

    def __init__(self, conn: aiosqlite.Connection, name: str = ":memory:") -> None:
        self._conn = conn
        self._name = name  # the file, for error messages
        # One connection is shared by every task: a lock keeps one task's statements
        # from landing inside another task's transaction.
        self._lock = asyncio.Lock()
        self._batches: dict[str, _Batch] = {}

    @classmethod
    async def open(cls, path: Path | str) -> Database:
        """Open (creating if needed) and migrate the database at `path` (or ':memory:')."""
        if str(path) != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(f"cannot create the directory of {path}: {error}") from error
            try:
                private_file(Path(path))
            except OSError as error:
                advice = _UNUSABLE["SQLITE_CANTOPEN"]
                raise StoreError(f"cannot use the database {path}: {advice} ({error})") from error
        with _translated(str(path)):
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            with _translated(str(path)):
                conn.row_factory = aiosqlite.Row
                # Before anything writes (journal mode included): a newer database stays as is.
                await check_version(conn)
                await _configure(conn, wal=str(path) != ":memory:")
                await migrate(conn)
                # A read-only file opens and reads fine; find out now, not at the first poll.
                await conn.execute("BEGIN IMMEDIATE")
                await conn.execute("ROLLBACK")
        except BaseException:
            await conn.close()
            raise
        return cls(conn, str(path))

    @classmethod
    async def open_copy(cls, path: Path | str) -> Database:
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
            await _configure(memory, wal=False)
            await migrate(memory)
        except BaseException:
            await memory.close()
            raise
        return cls(memory)

    async def close(self) -> None:
        """Write what is pending and close the connection."""
        for batch in list(self._batches.values()):
            await batch.drain()
        await self._conn.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Run the statements of the block in one transaction, alone on the connection."""
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

    async def write(self, sql: str, params: Params = ()) -> int:
        """Run one statement on its own (atomic by itself); return the rows it changed."""
        async with self._lock:
            with _translated(self._name):
                cursor = await self._conn.execute(sql, params)
                changed = cursor.rowcount
                await cursor.close()
        return max(changed, 0)

    async def write_batched(self, sql: str, params: Mapping[str, Any]) -> None:
        """Run one statement in a transaction shared with other callers of the same statement."""
        batch = self._batches.get(sql)
        if batch is None:
            batch = self._batches[sql] = _Batch(self, sql)
        await batch.write(params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        """Return every row of a query."""
        async with self._lock:
            with _translated(self._name):
                async with self._conn.execute(sql, params) as cursor:
                    return list(await cursor.fetchall())

    async def fetchone(self, sql: str, params: Params = ()) -> Any:
        """Return the first row of a query, None if there is none."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


class _Batch:
    """Rows of one statement written together, each caller waiting for its own commit."""

    def __init__(self, db: Database, sql: str) -> None:
        self._db = db
        self._sql = sql
        self._queued: list[tuple[Mapping[str, Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, params: Mapping[str, Any]) -> None:
        """Queue one row and wait until it is committed."""
        # One transaction for all the rows queued while the previous batch is being written.
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((params, committed))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="store-batch")
        await committed

    async def drain(self) -> None:
        """Wait for the rows queued so far to be written."""
        if self._flusher is not None:
            with contextlib.suppress(Exception):  # its callers were told
                await self._flusher

    async def _flush(self) -> None:
        batch: list[tuple[Mapping[str, Any], asyncio.Future[None]]] = []
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                try:
                    async with self._db.transaction() as conn:
                        await conn.executemany(self._sql, [params for params, _ in batch])
                except Exception as error:
                    # This batch's callers learn of it; rows queued meanwhile get their own try.
                    _settle(batch, error)
                else:
                    _settle(batch, None)
        except BaseException:
            _settle([*batch, *self._queued], asyncio.CancelledError())
            self._queued = []
            raise
        finally:
            self._flusher = None


class Repository:
    """A concern's queries, over the connection every repository shares."""

    def __init__(self, db: Database) -> None:
        self._db = db


class KeyValues(Repository):
    """Values kept under a key: sync token, device id, access token…"""

    async def get_value(self, key: str) -> str | None:
        """Return a stored value (sync token, device id, access token…)."""
        row = await self._db.fetchone("SELECT value FROM kv WHERE key = ?", (key,))
        return str(row["value"]) if row else None

    async def set_value(self, key: str, value: str) -> None:
        """Store a value under a key."""
        await self._db.write(
            "INSERT INTO kv (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def delete_value(self, key: str) -> None:
        """Forget a stored value."""
        await self._db.write("DELETE FROM kv WHERE key = ?", (key,))
