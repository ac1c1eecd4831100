"""`!subscribe URL` and friends through the command handler, against a real local web site."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.catalogue import Catalogue
from bot.commands import Commands, Reply, RoomSourcesPolicy
from bot.config import Organisation, PollingConfig, Region
from bot.finder import SiteFinder
from bot.store import Store
from tests.clock import Clock
from tests.feed_server import FeedServer, rss
from tests.test_discovery import serve_page

NOW = datetime.now(UTC).timestamp()
ROOM = "!room:example.org"
OTHER = "!other:example.org"
MODERATOR = "@mod:example.org"
MEMBER = "@member:example.org"


def items(*titles: str) -> list[dict[str, object]]:
    base = datetime.now(UTC) - timedelta(hours=1)
    return [
        {
            "title": title,
            "link": f"https://lug.example/{n}",
            "guid": f"https://lug.example/{n}",
            "pubDate": base + timedelta(minutes=n),
        }
        for n, title in enumerate(titles)
    ]


def page(*links: tuple[str, str]) -> bytes:
    tags = "".join(
        f'<link rel="alternate" type="application/rss+xml" title="{title}" href="{href}">'
        for href, title in links
    )
    return f"<!doctype html><html><head>{tags}</head><body>LUG</body></html>".encode()


class Room:
    """The command handler as one room sees it: a moderator, a member, a clock."""

    def __init__(self, store: Store, polling: PollingConfig, max_own_feeds: int = 3) -> None:
        self.store = store
        self.clock = Clock(NOW)
        catalogue = Catalogue(
            {"france": Region("france", "France")},
            {"april": Organisation("april", "April", "france", feeds=("https://a.example/",))},
        )
        self.commands = Commands(
            store,
            catalogue,
            language="en",
            prefix="!",
            admins=[],
            manage_power_level=50,
            clock=self.clock,
            sources=RoomSourcesPolicy(
                SiteFinder(polling, deadline=5.0), max_own_feeds=max_own_feeds, interval=60.0
            ),
        )

    async def power_level(self, room_id: str, user_id: str) -> int:
        return 50 if user_id == MODERATOR else 0

    def encryption(self, room_id: str) -> tuple[bool, bool]:
        return (False, False)

    async def ask(self, body: str, sender: str = MODERATOR, room: str = ROOM) -> str:
        self.clock.now += 10
        reply = await self.commands(self, room, sender, "$event", body)
        assert isinstance(reply, Reply), body
        return reply.text


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "crieur.sqlite3")
    await db.sync_feeds([("april", "https://a.example/")])
    yield db
    await db.close()


@pytest.fixture
def site(feed_server: FeedServer) -> FeedServer:
    serve_page(feed_server, "/lug/", page(("feed.xml", "Articles"), ("agenda.xml", "Agenda")))
    feed_server.set_feed("/lug/feed.xml", rss(items("Old one", "Old two"), title="Mon LUG"))
    feed_server.set_feed("/lug/agenda.xml", rss(items("Apéro"), title="Agenda du LUG"))
    feed_server.set_feed("/gull/feed.xml", rss(items("Gull news"), title="Le Gull"))
    return feed_server


@pytest.fixture
def room(store: Store) -> Room:
    return Room(store, PollingConfig(allow_private_networks=True, timeout=3.0))


async def test_subscribing_to_a_site_names_its_feed_and_the_others_found(
    room: Room, site: FeedServer
) -> None:
    answer = await room.ask(f"!subscribe {site.url('/lug/')}")
    assert answer == (
        f"This room now follows “Mon LUG” ({site.url('/lug/feed.xml')}): its next new post will"
        " be posted here.\n"
        f"Other feeds found on that site: “Agenda du LUG” ({site.url('/lug/agenda.xml')})."
    )
    (source,) = await room.store.room_sources(ROOM)
    assert source.typed_url == site.url("/lug/") and source.feed.initialised
    # The subscribe's own fetch recorded what the feed held: none of it is news.
    titles = [e.title for e in await room.store.latest_feed_entries(source.feed.id, 10)]
    assert sorted(titles) == ["Old one", "Old two"]


async def test_subscribing_again_by_either_url_says_so_and_fetches_nothing(
    room: Room, site: FeedServer
) -> None:
    await room.ask(f"!subscribe {site.url('/lug/feed.xml')}")
    site.reset()
    for url in (site.url("/lug/feed.xml"), site.url("/lug/feed.xml") + "/"):
        answer = await room.ask(f"!subscribe {url}")
        assert answer == f"This room already follows “Mon LUG” ({site.url('/lug/feed.xml')})."
    assert site.received == []
    # From the site's page, the feed found is the one the room follows: said too.
    answer = await room.ask(f"!sub {site.url('/lug/')}")
    assert answer.startswith("This room already follows “Mon LUG”")


async def test_the_cap_is_checked_before_fetching(store: Store, site: FeedServer) -> None:
    capped = Room(store, PollingConfig(allow_private_networks=True, timeout=3.0), max_own_feeds=1)
    await capped.ask(f"!subscribe {site.url('/lug/feed.xml')}")
    site.reset()
    answer = await capped.ask(f"!subscribe {site.url('/gull/feed.xml')}")
    assert answer == (
        "This room already follows 1 feeds of its own, the most allowed (rooms.max_own_feeds);"
        " unsubscribe one first."
    )
    assert site.received == []
    # Another room has its own allowance.
    assert (await capped.ask(f"!subscribe {site.url('/gull/feed.xml')}", room=OTHER)).startswith(
        "This room now follows “Le Gull”"
    )


async def test_a_private_address_is_refused_before_anything_is_fetched_or_stored(
    store: Store, site: FeedServer
) -> None:
    strict = Room(store, PollingConfig(allow_private_networks=False, timeout=3.0))
    for host in ("127.0.0.1", "localhost"):
        url = site.url("/lug/").replace("127.0.0.1", host)
        answer = await strict.ask(f"!subscribe {url}")
        assert answer.startswith(f"Refused: {host}")
        assert "(loopback) is a private or local address" in answer
        assert answer.endswith("Nothing was added.")
    assert site.received == []
    assert await store.room_sources(ROOM) == []


async def test_members_may_not_subscribe_and_nothing_is_fetched(
    room: Room, site: FeedServer
) -> None:
    answer = await room.ask(f"!subscribe {site.url('/lug/')}", sender=MEMBER)
    assert answer.startswith("Sorry, only this room's moderators")
    assert site.received == [] and await room.store.room_sources(ROOM) == []


async def test_unsubscribing_by_typed_url_feed_url_or_title_affects_that_room_only(
    room: Room, site: FeedServer
) -> None:
    await room.ask(f"!subscribe {site.url('/lug/')}")
    await room.ask(f"!subscribe {site.url('/lug/')}", room=OTHER)
    await room.ask(f"!subscribe {site.url('/gull/feed.xml')}")
    feed = site.url("/lug/feed.xml")
    assert await room.ask(f"!unsubscribe {site.url('/lug/')}") == (
        f"This room no longer follows “Mon LUG” ({feed})."
    )
    assert await room.ask(f"!unsubscribe {feed}") == f"This room follows no feed at {feed}."
    assert await room.ask("!unsubscribe le gull") == (
        f"This room no longer follows “Le Gull” ({site.url('/gull/feed.xml')})."
    )
    assert await room.store.room_sources(ROOM) == []
    # Still polled: the other room follows it.
    assert [s.feed.url for s in await room.store.room_sources(OTHER)] == [feed]
    assert feed in [f.url for f in await room.store.feeds()]
    await room.ask(f"!unsubscribe {feed}", room=OTHER)
    assert feed not in [f.url for f in await room.store.feeds()]


async def test_subscriptions_status_and_latest_include_room_sources(
    room: Room, site: FeedServer
) -> None:
    await room.ask(f"!subscribe {site.url('/lug/feed.xml')}")
    assert await room.ask("!subscriptions") == (
        f"This room receives:\nFeeds this room added: Mon LUG ({site.url('/lug/feed.xml')})"
    )
    status = await room.ask("!status")
    assert f"Mon LUG — {site.url('/lug/feed.xml')} — never fetched successfully" in status
    latest = await room.ask("!latest mon lug 1")
    assert latest.splitlines()[0] == "Latest posts — Mon LUG:"
    assert len(latest.splitlines()) == 2 and "Mon LUG: Old two" in latest


async def test_urls_and_names_do_not_mix_and_bad_urls_are_explained(
    room: Room, site: FeedServer
) -> None:
    assert await room.ask(f"!subscribe april {site.url('/lug/')}") == (
        "One address at a time, without other names."
    )
    assert await room.ask("!subscribe https://") == (
        "Invalid address: invalid URL 'https://': no host."
    )
    answer = await room.ask(f"!subscribe {site.url('/nothing/')}")
    assert answer.startswith(f"No feed found at {site.url('/nothing/')}: ")
    assert await room.store.room_sources(ROOM) == []


async def test_rooms_may_add_no_feed_when_the_allowance_is_zero(
    store: Store, site: FeedServer
) -> None:
    closed = Room(store, PollingConfig(allow_private_networks=True), max_own_feeds=0)
    answer = await closed.ask(f"!subscribe {site.url('/lug/')}")
    assert answer == (
        "This Crieur does not let rooms add feeds of their own (rooms.max_own_feeds is 0)."
    )
    assert site.received == []
