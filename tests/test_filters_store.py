"""Filters in the store: terms kept per room and scope, the cap, and routing in a poll."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.filters import ROOM_WIDE, Scope, Term, words
from bot.model import Entry
from bot.store import FeedState, FilterChange, FoundSource, PollRecord, Store

NOW = datetime(2026, 1, 9, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400.0
ROOM = "!room:x"
OTHER = "!other:x"
APRIL = Scope("organisation", "april")


def entry(key: str, title: str, summary: str = "") -> Entry:
    return Entry(
        key, title, f"https://example.org/{key}", datetime.fromtimestamp(NOW, UTC), summary
    )


def terms(*typed: str) -> list[tuple[Term, str]]:
    """`+linux` or `-emploi` as the command hands them to the store."""
    return [(Term(tuple(words(text[1:])), text[0] == "+"), text) for text in typed]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "crieur.sqlite3")
    await db.sync_feeds([("april", "https://april.example/rss"), ("parinux", "https://p.example/")])
    yield db
    await db.close()


async def feed_of(store: Store, organisation: str) -> FeedState:
    (feed,) = await store.feeds([organisation])
    return feed


async def poll(
    store: Store, feed: FeedState, entries: list[Entry], *, region: str = "france", cap: int = 5
) -> PollRecord:
    return await store.record_poll(
        feed,
        region,
        entries,
        now=NOW,
        next_poll=NOW + 1800,
        max_age=7 * DAY,
        max_posts=cap,
        etag=None,
        last_modified=None,
        body_hash=None,
    )


async def queued(store: Store, room: str) -> list[str]:
    return [
        d.entry.title if d.entry else f"… {d.digest_count} more"
        for d in await store.pending_deliveries(NOW + 1, limit=500)
        if d.room_id == room
    ]


async def add(store: Store, room: str, scope: Scope, *typed: str, cap: int = 20) -> FilterChange:
    return await store.add_filter_terms(room, scope, terms(*typed), now=NOW, max_terms=cap)


async def test_terms_are_kept_per_room_and_scope_in_the_order_added(store: Store) -> None:
    await add(store, ROOM, ROOM_WIDE, "+Linux", '+"logiciel libre"')
    await add(store, ROOM, APRIL, "-emploi")
    await add(store, ROOM, ROOM_WIDE, "-Windows")
    await add(store, OTHER, ROOM_WIDE, "+bsd")
    listed = [(s.scope, s.shown, s.term.keep) for s in await store.room_filters(ROOM)]
    assert listed == [
        (ROOM_WIDE, "+Linux", True),
        (ROOM_WIDE, '+"logiciel libre"', True),
        (ROOM_WIDE, "-Windows", False),
        (APRIL, "-emploi", False),
    ]


async def test_a_term_given_again_is_not_counted_twice_and_takes_its_new_sign(
    store: Store,
) -> None:
    await add(store, ROOM, ROOM_WIDE, "+linux", "+bsd")
    change = await add(store, ROOM, ROOM_WIDE, "+LINUX", "-bsd", "+hurd")
    assert change == FilterChange(new=1, switched=1, total=3)
    listed = [(s.term.key, s.term.keep) for s in await store.room_filters(ROOM)]
    assert listed == [("linux", True), ("bsd", False), ("hurd", True)]


async def test_the_cap_counts_every_scope_and_refuses_without_writing(store: Store) -> None:
    await add(store, ROOM, ROOM_WIDE, "+a", "+b", cap=4)
    await add(store, ROOM, APRIL, "+c", cap=4)
    change = await add(store, ROOM, APRIL, "+d", '+"e f"', cap=4)
    assert change == FilterChange(new=2, switched=0, total=3, refused=True)
    assert len(await store.room_filters(ROOM)) == 3
    assert await add(store, ROOM, APRIL, "+d", cap=4) == FilterChange(new=1, switched=0, total=4)


async def test_clearing_removes_one_scope_or_all_of_a_rooms_filters(store: Store) -> None:
    await add(store, ROOM, ROOM_WIDE, "+a", "+b")
    await add(store, ROOM, APRIL, "+c")
    await add(store, OTHER, ROOM_WIDE, "+d")
    assert await store.clear_filters(ROOM, APRIL) == 1
    assert [s.shown for s in await store.room_filters(ROOM)] == ["+a", "+b"]
    assert await store.clear_filters(ROOM) == 2
    assert await store.room_filters(ROOM) == []
    assert [s.shown for s in await store.room_filters(OTHER)] == ["+d"]


async def test_a_poll_queues_nothing_for_what_a_rooms_filters_drop_and_counts_it(
    store: Store,
) -> None:
    april = await feed_of(store, "april")
    await store.follow(ROOM, "region", "france", now=NOW)
    await store.follow(OTHER, "region", "france", now=NOW)
    await poll(store, april, [entry("old", "Old")])
    await add(store, ROOM, ROOM_WIDE, "+linux", "-emploi")

    record = await poll(
        store,
        april,
        [
            entry("a", "Atelier Linux"),
            entry("b", "Offre d'emploi Linux"),
            entry("c", "Assemblée générale", "<p>Avec un atelier <b>Linux</b>.</p>"),
            entry("d", "Assemblée générale"),
        ],
    )

    assert await queued(store, ROOM) == ["Atelier Linux", "Assemblée générale"]
    assert len(await queued(store, OTHER)) == 4
    assert record.held_back == 2
    assert await store.held_back(ROOM) == 2
    await poll(store, april, [entry("e", "Windows")])
    assert await store.held_back(ROOM) == 3
    assert await store.held_back(OTHER) == 0


async def test_the_digest_of_a_filtered_room_counts_only_what_passes(store: Store) -> None:
    april = await feed_of(store, "april")
    await store.follow(ROOM, "organisation", "april", now=NOW)
    await store.follow(OTHER, "organisation", "april", now=NOW)
    await poll(store, april, [entry("old", "Old")])
    await add(store, ROOM, ROOM_WIDE, "+linux")

    await poll(
        store, april, [entry(f"n{n}", f"{'Linux' if n % 2 else 'Windows'} {n}") for n in range(8)],
        cap=2,
    )  # fmt: skip

    assert await queued(store, ROOM) == ["Linux 1", "Linux 3", "… 2 more"]
    assert await queued(store, OTHER) == ["Windows 0", "Linux 1", "… 6 more"]


async def test_a_scope_filters_only_its_organisation_region_or_feed(store: Store) -> None:
    april, parinux = await feed_of(store, "april"), await feed_of(store, "parinux")
    await store.follow(ROOM, "region", "france", now=NOW)
    await store.follow(ROOM, "region", "ile-de-france", now=NOW)
    await poll(store, april, [entry("old", "Old")])
    await poll(store, parinux, [entry("old", "Old")], region="ile-de-france")
    await add(store, ROOM, APRIL, "+linux")
    await add(store, ROOM, Scope("region", "ile-de-france"), "-emploi")

    await poll(store, april, [entry("a1", "Windows"), entry("a2", "Linux")])
    await poll(
        store,
        parinux,
        [entry("p1", "Windows"), entry("p2", "Emploi")],
        region="ile-de-france",
    )

    assert await queued(store, ROOM) == ["Linux", "Windows"]


async def test_a_room_sources_filter_goes_when_the_room_stops_following_it(store: Store) -> None:
    source, _ = await store.add_room_source(
        ROOM,
        "https://lug.example/",
        FoundSource("https://lug.example/feed/", "Mon LUG", None, [entry("old", "Old")]),
        now=NOW,
        next_poll=NOW + 60,
    )
    scope = Scope("feed", str(source.feed.id))
    await add(store, ROOM, scope, "-emploi")
    await poll(store, source.feed, [entry("x", "Emploi"), entry("y", "Atelier")], region="")
    assert await queued(store, ROOM) == ["Atelier"]

    await store.remove_room_source(ROOM, source.feed.id)
    assert await store.room_filters(ROOM) == []


async def test_room_upgrade_carries_filters_and_what_they_held_back(store: Store) -> None:
    april = await feed_of(store, "april")
    await store.follow(ROOM, "region", "france", now=NOW)
    await poll(store, april, [entry("old", "Old")])
    await add(store, ROOM, ROOM_WIDE, "+linux")
    await poll(store, april, [entry("w", "Windows")])

    await store.move_room(ROOM, "!new:x")

    assert [s.shown for s in await store.room_filters("!new:x")] == ["+linux"]
    assert await store.held_back("!new:x") == 1
    assert await store.room_filters(ROOM) == []
