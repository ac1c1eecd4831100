"""Room sources in the store and in routing: seeding, one feed for many rooms, the config's sync."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.catalogue import Catalogue
from bot.cli import EXIT_OK, main
from bot.config import Organisation, Region
from bot.model import Entry, Source
from bot.opml import ROOM_SOURCES, OpmlOutline, read_opml, write_opml
from bot.posting import Audience, target_rooms
from bot.render import render_digest, render_entry, source_as_organisation
from bot.store import FeedState, FoundSource, Store
from bot.zones import Zone

NOW = datetime(2026, 1, 9, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400.0
FEED = "https://lug.example/feed/"
ROOM_A = "!a:example.org"
ROOM_B = "!b:example.org"


def entry(key: str, *, days_ago: float = 0.0) -> Entry:
    published = datetime.fromtimestamp(NOW, UTC) - timedelta(days=days_ago)
    return Entry(key, f"Title {key}", f"https://lug.example/{key}", published, "<p>hi</p>")


def found(*keys: str, url: str = FEED) -> FoundSource:
    return FoundSource(url, "Mon LUG", "https://lug.example/", [entry(key) for key in keys])


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    db = await Store.open(tmp_path / "crieur.sqlite3")
    await db.sync_feeds([("april", "https://april.example/rss")])
    yield db  # type: ignore[misc]
    await db.close()


async def poll(store: Store, feed: FeedState, entries: list[Entry], region: str = ""):  # type: ignore[no-untyped-def]
    return await store.record_poll(
        feed,
        region,
        entries,
        now=NOW + 60,
        next_poll=NOW + 1800,
        max_age=7 * DAY,
        max_posts=2,
        etag=None,
        last_modified=None,
        body_hash=None,
    )


async def test_a_new_source_is_initialised_by_the_subscribes_fetch(store: Store) -> None:
    source, added = await store.add_room_source(
        ROOM_A, "https://lug.example/", found("a", "b"), now=NOW, next_poll=NOW + 900
    )
    assert added
    assert source.feed.room_source and source.feed.initialised
    assert source.feed.title == "Mon LUG" and source.typed_url == "https://lug.example/"
    assert source.feed.next_poll == NOW + 900
    # The next poll is no first fetch: what appeared since the subscribe is posted, once.
    record = await poll(store, source.feed, [entry("a"), entry("b"), entry("c")])
    assert not record.seeded
    assert [e.key for e in record.posted] == ["c"]
    (delivery,) = await store.pending_deliveries(NOW + 120)
    assert delivery.room_id == ROOM_A
    assert delivery.organisation == ""
    assert delivery.source == Source("Mon LUG", "https://lug.example/")


async def test_one_feed_for_two_rooms_polled_once_reaching_both(store: Store) -> None:
    first, _ = await store.add_room_source(ROOM_A, FEED, found("a"), now=NOW, next_poll=NOW)
    # The second room's fetch must not hide what the first room has not been told yet.
    second, added = await store.add_room_source(
        ROOM_B, "lug.example", found("a", "b"), now=NOW, next_poll=NOW
    )
    assert added and second.feed.id == first.feed.id
    due = [feed for feed in await store.feeds_due(NOW) if feed.room_source]
    assert [feed.id for feed in due] == [first.feed.id]
    record = await poll(store, second.feed, [entry("a"), entry("b")])
    assert [e.key for e in record.posted] == ["b"]
    rooms = sorted(d.room_id for d in await store.pending_deliveries(NOW + 120))
    assert rooms == [ROOM_A, ROOM_B]


async def test_subscribing_twice_changes_nothing(store: Store) -> None:
    await store.add_room_source(ROOM_A, FEED, found("a"), now=NOW, next_poll=NOW)
    _, added = await store.add_room_source(ROOM_A, FEED, found("a", "b"), now=NOW, next_poll=NOW)
    assert not added
    assert len(await store.room_sources(ROOM_A)) == 1


async def test_a_feed_no_room_follows_stops_being_polled_and_starts_over(store: Store) -> None:
    source, _ = await store.add_room_source(ROOM_A, FEED, found("a"), now=NOW, next_poll=NOW)
    await store.add_room_source(ROOM_B, FEED, found("a"), now=NOW, next_poll=NOW)
    assert await store.remove_room_source(ROOM_A, source.feed.id)
    assert not await store.remove_room_source(ROOM_A, source.feed.id)
    assert source.feed.id in [feed.id for feed in await store.feeds()]
    assert await store.remove_room_source(ROOM_B, source.feed.id)
    assert source.feed.id not in [feed.id for feed in await store.feeds()]
    assert await store.room_source_feeds() == []
    # Added again later: what it published while nobody followed it is not news.
    again, _ = await store.add_room_source(
        ROOM_A, FEED, found("a", "b", "c"), now=NOW, next_poll=NOW
    )
    record = await poll(store, again.feed, [entry("a"), entry("b"), entry("c")])
    assert record.posted == () and record.deliveries == 0


async def test_the_configurations_sync_never_touches_room_sources(store: Store) -> None:
    source, _ = await store.add_room_source(ROOM_A, FEED, found("a"), now=NOW, next_poll=NOW)
    await store.sync_feeds([("framasoft", "https://framablog.example/feed/")])
    feeds = {feed.id: feed for feed in await store.feeds()}
    assert source.feed.id in feeds
    assert feeds[source.feed.id].room_source and feeds[source.feed.id].organisation == ""
    assert [f.organisation for f in feeds.values() if not f.room_source] == ["framasoft"]


async def test_a_configured_feed_a_room_follows_reaches_it_and_stays_if_dropped(
    store: Store,
) -> None:
    april = "https://april.example/rss"
    source, added = await store.add_room_source(
        ROOM_A, april, found("x", url=april), now=NOW, next_poll=NOW
    )
    assert added and not source.feed.room_source and source.feed.organisation == "april"
    await store.follow(ROOM_B, "organisation", "april", now=NOW)
    await poll(store, source.feed, [entry("x")], region="france")  # its first poll: seeds
    record = await poll(store, source.feed, [entry("x"), entry("y")], region="france")
    rows = await store.pending_deliveries(NOW + 120)
    assert sorted(d.room_id for d in rows) == [ROOM_A, ROOM_B] and record.deliveries == 2
    assert all(d.organisation == "april" and d.source is None for d in rows)
    # The configuration drops it: the room that added it still gets it, as its own source.
    await store.sync_feeds([])
    (kept,) = await store.feeds()
    assert kept.id == source.feed.id and kept.room_source and kept.organisation == ""


async def test_room_upgrade_carries_room_sources(store: Store) -> None:
    await store.add_room_source(ROOM_A, FEED, found("a"), now=NOW, next_poll=NOW)
    await store.move_room(ROOM_A, ROOM_B)
    assert await store.room_sources(ROOM_A) == []
    assert [s.feed.url for s in await store.room_sources(ROOM_B)] == [FEED]
    assert ROOM_B in await store.followed_rooms()


async def test_a_room_sources_digest_is_counted_and_named_by_the_source(store: Store) -> None:
    source, _ = await store.add_room_source(ROOM_A, FEED, found("a"), now=NOW, next_poll=NOW)
    record = await poll(store, source.feed, [entry("a"), entry("b"), entry("c"), entry("d")])
    assert record.digested == 1
    rows = await store.pending_deliveries(NOW + 120)
    digest = next(d for d in rows if d.entry is None)
    assert digest.source == Source("Mon LUG", "https://lug.example/")
    content = render_digest(source_as_organisation(digest.source), 1, "en")
    assert "Mon LUG" in content["body"] and "https://lug.example/" in content["body"]


def test_sources_followers_get_an_entry_even_if_they_muted_its_organisation() -> None:
    audience = Audience(
        region_followers=frozenset({"!r", "!m"}),
        muted=frozenset({"!m"}),
        departed=frozenset({"!gone"}),
        source_followers=frozenset({"!m", "!own", "!gone", "!r"}),
    )
    assert target_rooms(audience) == ["!m", "!own", "!r"]


def test_a_room_source_is_announced_by_its_title_alone() -> None:
    organisation = source_as_organisation(Source("Mon LUG", "https://lug.example/"))
    content = render_entry(entry("a"), organisation, Region("", ""), "fr", zone=Zone())
    assert content["body"].splitlines()[0] == "Mon LUG"
    assert content["formatted_body"].startswith("<p><b>Mon LUG</b><br>")


def test_opml_puts_room_sources_in_their_own_group_which_import_leaves_out() -> None:
    catalogue = Catalogue(
        {"france": Region("france", "France")},
        {"april": Organisation("april", "April", "france", feeds=("https://april.example/rss",))},
    )
    exported = write_opml(
        catalogue, room_sources=[OpmlOutline("Mon LUG", FEED, "https://lug.example/")]
    )
    body = ET.fromstring(exported).find("body")
    assert body is not None
    group = body.findall("outline")[-1]
    assert group.get("text") == ROOM_SOURCES == "Room sources"
    assert [(o.get("text"), o.get("xmlUrl"), o.get("htmlUrl")) for o in group] == [
        ("Mon LUG", FEED, "https://lug.example/")
    ]
    assert [outline.xml_url for outline in read_opml(exported)] == ["https://april.example/rss"]


async def test_export_opml_reads_room_sources_from_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        'matrix: {homeserver: "http://127.0.0.1:1", user_id: "@c:localhost", password: pw}\n'
        "database: ./crieur.sqlite3\n"
        "regions: {france: {name: France}}\n"
        "organisations: {april: {name: April, region: france, feeds: [https://april.example/]}}\n",
        "utf-8",
    )
    async with await Store.open(tmp_path / "crieur.sqlite3") as store:
        await store.add_room_source(ROOM_A, FEED, found("a"), now=NOW, next_poll=NOW)
    assert await asyncio.to_thread(main, ["export-opml", "-c", str(config)]) == EXIT_OK
    exported = capsys.readouterr().out
    assert f'<outline text="Mon LUG" title="Mon LUG" type="rss" xmlUrl="{FEED}"' in exported


def test_a_feeds_title_cannot_turn_the_message_around() -> None:
    organisation = source_as_organisation(Source("LUG\u202e\n" + "x" * 300, None))
    assert "\u202e" not in organisation.name and "\n" not in organisation.name
    assert len(organisation.name) <= 201
