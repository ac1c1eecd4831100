"""Filters: the words each room keeps or drops, read at routing, and what they held back."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import aiosqlite

from ..filters import Filter, Scope, Term
from .database import Repository
from .feeds import FeedState


@dataclass(frozen=True, slots=True)
class StoredTerm:
    """One term of a room's filters, with what it applies to and how it was typed."""

    scope: Scope
    term: Term
    shown: str  # as typed, for `!filter`'s list


@dataclass(frozen=True, slots=True)
class FilterChange:
    """What adding terms did, or why it did nothing."""

    new: int  # terms new to the scope: added, or that would have been when refused
    switched: int  # terms already there with the other sign, now with the new one
    total: int  # the room's terms afterwards; when refused, the number it has now
    refused: bool = False  # the room's cap would be passed: nothing was written


def _term(row: aiosqlite.Row) -> Term:
    return Term(tuple(row["term"].split(" ")), bool(row["keep"]))


async def applying_filters(
    conn: aiosqlite.Connection, feed: FeedState, region: str, rooms: Collection[str]
) -> dict[str, list[Filter]]:
    """Return, inside the caller's transaction, the filters each room applies to this feed."""
    if not rooms:
        return {}
    async with conn.execute(
        """SELECT room_id, scope_kind, scope, term, keep FROM filters
           WHERE scope_kind = 'room'
              OR (scope_kind = 'organisation' AND scope = :org AND :org != '')
              OR (scope_kind = 'region' AND scope = :region AND :region != '')
              OR (scope_kind = 'feed' AND scope = :feed)
           ORDER BY room_id, scope_kind, scope""",
        {"org": feed.organisation, "region": region, "feed": str(feed.id)},
    ) as cursor:
        rows = await cursor.fetchall()
    targets = set(rooms)
    grouped: dict[str, dict[tuple[str, str], list[Term]]] = {}
    for row in rows:
        if row["room_id"] in targets:
            scopes = grouped.setdefault(row["room_id"], {})
            scopes.setdefault((row["scope_kind"], row["scope"]), []).append(_term(row))
    return {
        room: [Filter.of(terms) for terms in scopes.values()] for room, scopes in grouped.items()
    }


async def count_held_back(conn: aiosqlite.Connection, held_back: Mapping[str, int]) -> None:
    """Add, inside the caller's transaction, what filters kept out of each room."""
    await conn.executemany(
        """INSERT INTO filter_tallies (room_id, held_back) VALUES (?, ?)
           ON CONFLICT (room_id) DO UPDATE SET held_back = held_back + excluded.held_back""",
        [(room, count) for room, count in held_back.items() if count > 0],
    )


class Filters(Repository):
    """The filters rooms set with `!filter`."""

    async def room_filters(self, room_id: str) -> list[StoredTerm]:
        """Return a room's terms, scope by scope (the whole room first), in the order added."""
        rows = await self._db.fetchall(
            """SELECT * FROM filters WHERE room_id = ?
               ORDER BY scope_kind != 'room', scope_kind, scope, created, rowid""",
            (room_id,),
        )
        return [
            StoredTerm(Scope(row["scope_kind"], row["scope"]), _term(row), row["shown"])
            for row in rows
        ]

    async def add_filter_terms(
        self,
        room_id: str,
        scope: Scope,
        terms: Sequence[tuple[Term, str]],
        *,
        now: float,
        max_terms: int,
    ) -> FilterChange:
        """Add (term, as typed) pairs to a room's filter of `scope`, within the room's cap.

        A term already there keeps its place; given with the other sign, it takes the new one.
        Nothing is written when the room would hold more than `max_terms` terms.
        """
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT scope_kind, scope, term, keep FROM filters WHERE room_id = ?", (room_id,)
            ) as cursor:
                rows = list(await cursor.fetchall())
            present = {row["term"]: bool(row["keep"]) for row in rows if _in(row, scope)}
            new = {term.key for term, _ in terms if term.key not in present}
            switched = {t.key for t, _ in terms if t.key in present and present[t.key] != t.keep}
            total = len(rows) + len(new)
            if total > max_terms:
                return FilterChange(len(new), 0, len(rows), refused=True)
            await conn.executemany(
                """INSERT INTO filters (room_id, scope_kind, scope, term, shown, keep, created)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (room_id, scope_kind, scope, term)
                   DO UPDATE SET keep = excluded.keep, shown = excluded.shown""",
                [
                    (room_id, scope.kind, scope.key, term.key, shown, int(term.keep), now)
                    for term, shown in terms
                ],
            )
        return FilterChange(len(new), len(switched), total)

    async def clear_filters(self, room_id: str, scope: Scope | None = None) -> int:
        """Remove a room's filter of `scope`, or all its filters; return how many terms went."""
        if scope is None:
            return await self._db.write("DELETE FROM filters WHERE room_id = ?", (room_id,))
        return await self._db.write(
            "DELETE FROM filters WHERE room_id = ? AND scope_kind = ? AND scope = ?",
            (room_id, scope.kind, scope.key),
        )

    async def held_back(self, room_id: str) -> int:
        """Return how many items filters kept out of a room so far."""
        row = await self._db.fetchone(
            "SELECT held_back FROM filter_tallies WHERE room_id = ?", (room_id,)
        )
        return int(row["held_back"]) if row is not None else 0


def _in(row: aiosqlite.Row, scope: Scope) -> bool:
    return bool(row["scope_kind"] == scope.kind and row["scope"] == scope.key)
