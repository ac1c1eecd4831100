"""Rooms: what each follows and mutes, its pause or departure, its move to a new room."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import aiosqlite

from ..posting import Audience
from .database import Repository

FollowKind = Literal["region", "organisation"]
_CONFIG_FOLLOWS = "config.follows"  # the room → region pairs of the last configuration applied


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


def _room_state(row: aiosqlite.Row) -> RoomState:
    return RoomState(row["room_id"], row["paused_reason"], row["paused_at"], row["left_at"])


async def audience(conn: aiosqlite.Connection, organisation: str, region: str) -> Audience:
    """Return, inside the caller's transaction, the rooms following an organisation or region."""
    async with conn.execute(
        """SELECT f.room_id, f.kind,
                  EXISTS (SELECT 1 FROM mutes m
                          WHERE m.room_id = f.room_id AND m.organisation = :org) AS muted,
                  r.left_at IS NOT NULL AS departed
           FROM follows f LEFT JOIN rooms r ON r.room_id = f.room_id
           WHERE (f.kind = 'region' AND f.slug = :region)
              OR (f.kind = 'organisation' AND f.slug = :org)""",
        {"region": region, "org": organisation},
    ) as cursor:
        rows = list(await cursor.fetchall())
    return Audience(
        region_followers=frozenset(row[0] for row in rows if row[1] == "region"),
        organisation_followers=frozenset(row[0] for row in rows if row[1] == "organisation"),
        muted=frozenset(row[0] for row in rows if row[2]),
        departed=frozenset(row[0] for row in rows if row[3]),
    )


async def source_followers(conn: aiosqlite.Connection, feed_id: int) -> frozenset[str]:
    """Return, inside the caller's transaction, the rooms that added this feed themselves."""
    async with conn.execute(
        "SELECT room_id FROM room_sources WHERE feed_id = ?", (feed_id,)
    ) as cursor:
        return frozenset(row[0] for row in await cursor.fetchall())


class Rooms(Repository):
    """What rooms follow and mute, and whether the bot may post to them."""

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
        changed = await self._db.write(
            """INSERT INTO follows (room_id, kind, slug, origin, created)
               VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (room_id, kind, slug, origin, now),
        )
        return changed == 1

    async def unfollow(self, room_id: str, kind: FollowKind, slug: str) -> bool:
        """Stop a room following a region or organisation; False if it did not."""
        changed = await self._db.write(
            "DELETE FROM follows WHERE room_id = ? AND kind = ? AND slug = ?",
            (room_id, kind, slug),
        )
        return changed > 0

    async def mute(self, room_id: str, organisation: str, *, now: float) -> bool:
        """Mute an organisation in a room; False if it already was."""
        changed = await self._db.write(
            "INSERT INTO mutes (room_id, organisation, created) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (room_id, organisation, now),
        )
        return changed == 1

    async def unmute(self, room_id: str, organisation: str) -> bool:
        """Lift a mute; False if there was none."""
        changed = await self._db.write(
            "DELETE FROM mutes WHERE room_id = ? AND organisation = ?", (room_id, organisation)
        )
        return changed > 0

    async def subscriptions(self, room_id: str) -> Subscriptions:
        """Return what a room follows and mutes."""
        follows = await self._db.fetchall(
            "SELECT kind, slug FROM follows WHERE room_id = ? ORDER BY slug", (room_id,)
        )
        muted = await self._db.fetchall(
            "SELECT organisation FROM mutes WHERE room_id = ? ORDER BY organisation", (room_id,)
        )
        return Subscriptions(
            regions=tuple(row["slug"] for row in follows if row["kind"] == "region"),
            organisations=tuple(row["slug"] for row in follows if row["kind"] == "organisation"),
            muted=tuple(row["organisation"] for row in muted),
        )

    async def followed_regions(self, room_id: str) -> list[str]:
        """Return the regions a room follows: the configuration's first, then oldest first."""
        rows = await self._db.fetchall(
            """SELECT slug FROM follows WHERE room_id = ? AND kind = 'region'
               ORDER BY origin = 'config' DESC, created, rowid""",
            (room_id,),
        )
        return [row["slug"] for row in rows]

    async def sync_config_follows(
        self, follows: Mapping[str, Iterable[str]], *, now: float
    ) -> None:
        """Apply changes of the configuration's room → regions follows since the last start.

        Only pairs that appeared in or left the configuration are touched, so a moderator's
        `!unsubscribe` of a configured region lasts until the configuration itself changes.
        """
        wanted = {(room, region) for room, regions in follows.items() for region in regions}
        async with self._db.transaction() as conn:
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
        """Return every room that follows something (its own feeds included)."""
        rows = await self._db.fetchall(
            "SELECT room_id FROM follows UNION SELECT room_id FROM room_sources ORDER BY room_id"
        )
        return [row["room_id"] for row in rows]

    async def move_room(self, old_room_id: str, new_room_id: str) -> None:
        """Carry a room's follows, mutes, feeds, filters and pending messages to its new room."""
        async with self._db.transaction() as conn:
            for table in ("follows", "mutes", "room_sources", "filters", "filter_tallies"):
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
        async with self._db.transaction() as conn:
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
        await self._db.write("DELETE FROM rooms WHERE room_id = ?", (room_id,))

    async def pause_room(self, room_id: str, *, now: float, reason: str) -> None:
        """Hold a room's messages after a permanent error (kept, shown in !status)."""
        await self._db.write(
            """INSERT INTO rooms (room_id, paused_reason, paused_at) VALUES (?, ?, ?)
               ON CONFLICT (room_id) DO UPDATE SET paused_reason = excluded.paused_reason,
                   paused_at = excluded.paused_at""",
            (room_id, reason[:500], now),
        )

    async def resume_room(self, room_id: str) -> bool:
        """Lift a pause; False if the room was not paused."""
        changed = await self._db.write(
            "UPDATE rooms SET paused_reason = NULL, paused_at = NULL"
            " WHERE room_id = ? AND paused_reason IS NOT NULL AND left_at IS NULL",
            (room_id,),
        )
        return changed > 0

    async def room_state(self, room_id: str) -> RoomState | None:
        """Return a room's pause or departure, None if it is in good standing."""
        row = await self._db.fetchone("SELECT * FROM rooms WHERE room_id = ?", (room_id,))
        return _room_state(row) if row is not None else None

    async def paused_rooms(self) -> list[RoomState]:
        """Return rooms on hold after a permanent error."""
        rows = await self._db.fetchall(
            "SELECT * FROM rooms WHERE paused_reason IS NOT NULL AND left_at IS NULL"
        )
        return [_room_state(row) for row in rows]
