"""SQLite store: one repository per concern over one connection; all the SQL lives here."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from .calendars import Calendars, StoredEvent
from .database import Database, KeyValues
from .entries import Entries, PollRecord
from .feeds import Feeds, FeedState
from .filters import FilterChange, Filters, StoredTerm
from .outbox import Outbox
from .owner import DatabaseInUse, DatabaseLock, same_feeds
from .retention import Pruned, Retention
from .rooms import FollowKind, Rooms, RoomState, Subscriptions
from .sources import FoundSource, RoomSource, RoomSources

__all__ = [
    "Database",
    "DatabaseInUse",
    "DatabaseLock",
    "FeedState",
    "FilterChange",
    "FollowKind",
    "FoundSource",
    "PollRecord",
    "Pruned",
    "RoomSource",
    "RoomState",
    "Store",
    "StoredEvent",
    "StoredTerm",
    "Subscriptions",
    "same_feeds",
]


class Store(Feeds, Entries, Calendars, Rooms, RoomSources, Filters, Outbox, Retention, KeyValues):
    """The bot's database: every repository's methods, over one shared connection."""

    # Each concern is its own class and can be used alone (Rooms(db)); the rest of the code is
    # given this one object, so that a caller never picks which repository holds a method.

    @classmethod
    async def open(cls, path: Path | str) -> Store:
        """Open (creating if needed) and migrate the database at `path` (or ':memory:')."""
        return cls(await Database.open(path))

    @classmethod
    async def open_copy(cls, path: Path | str) -> Store:
        """Open an in-memory copy of the database at `path`, so nothing touches the file."""
        return cls(await Database.open_copy(path))

    async def close(self) -> None:
        """Write what is pending and close the connection."""
        await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
