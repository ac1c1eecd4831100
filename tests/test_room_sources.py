"""Rooms that add their own feeds, with the whole bot against a real Synapse and a local site."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient

from tests import test_e2e
from tests.e2e_support import (
    Feeds,
    bot_account,
    content,
    eventually,
    posts_from,
    wait_for_membership,
)
from tests.feed_server import FeedServer, rss
from tests.synapse_server import ClientFactory, SynapseServer
from tests.test_discovery import serve_page
from tests.test_e2e import bot_room

FEED = "/lug/feed.xml"


class Site:
    """A LUG's web site on the feed server: a page linking to its feed, items published live."""

    def __init__(self, server: FeedServer) -> None:
        self.server = server
        self._serial = itertools.count(1)
        self._base = datetime.now(UTC) - timedelta(hours=2)
        self._items: list[dict[str, Any]] = []
        serve_page(
            server,
            "/lug/",
            '<!doctype html><html><head><link rel="alternate" type="application/rss+xml"'
            ' href="feed.xml" title="Articles"></head><body>Mon LUG</body></html>',
        )
        self.publish("Rentrée du LUG")
        self.publish("Install party de septembre")

    def url(self, path: str = "/lug/") -> str:
        return self.server.url(path)

    def publish(self, title: str) -> str:
        serial = next(self._serial)
        self._items.append(
            {
                "title": title,
                "link": f"https://lug.example/{serial}",
                "guid": f"https://lug.example/{serial}",
                "pubDate": self._base + timedelta(minutes=serial),
            }
        )
        body = rss(list(reversed(self._items)), title="Mon LUG", link="https://lug.example/")
        self.server.set_feed(FEED, body, etag=f"v{serial}")
        return title


class Crieur(test_e2e.Crieur):
    """The bot of test_e2e, with the `rooms:` section and private addresses as a test sets."""

    max_own_feeds = 20
    allow_private = True

    def data(self, **options: Any) -> dict[str, Any]:
        data = super().data(**options)
        data["rooms"] = {"max_own_feeds": self.max_own_feeds}
        data["polling"]["allow_private_networks"] = self.allow_private
        return data


@pytest.fixture
async def crieur(
    synapse: SynapseServer, feed_server: FeedServer, tmp_path: Path
) -> AsyncIterator[Crieur]:
    made = Crieur(synapse, await bot_account(synapse), Feeds(feed_server), tmp_path)
    yield made
    await made.stop_all()


@pytest.fixture
async def alice(matrix_client: ClientFactory) -> AsyncClient:
    """Creates the rooms: in room version 12 their creator, hence a moderator."""
    return await matrix_client("alice")


@pytest.fixture
def site(feed_server: FeedServer) -> Site:
    return Site(feed_server)


async def joined_room(crieur: Crieur, owner: AsyncClient, **members: Any) -> str:
    room = await bot_room(owner, crieur, **members)
    await wait_for_membership(owner, room, crieur.user_id, "join")
    return room


async def test_a_room_subscribed_by_site_url_gets_the_next_new_item_once_named_by_title(
    crieur: Crieur, alice: AsyncClient, site: Site
) -> None:
    await crieur.start(accept_invites_from=[alice.user_id])
    room = await joined_room(crieur, alice)

    _, reply = await crieur.command(alice, room, f"!subscribe {site.url()}")
    assert content(reply)["body"] == (
        f"Ce salon suit désormais « Mon LUG » ({site.url(FEED)}) : son prochain nouvel article "
        "sera publié ici."
    )
    # Published before the bot's first poll of the feed: still news, posted once.
    title = site.publish("Assemblée générale du LUG")
    await crieur.wait_for_titles(alice, room, [title])
    await crieur.guard(wait_hits(site.server, FEED, site.server.hits(FEED) + 2))

    events = await SynapseServer.timeline(alice, room)
    (post,) = posts_from(events, crieur.user_id)
    assert content(post)["body"].splitlines()[:2] == ["Mon LUG", title]


async def test_a_room_subscribed_by_feed_url_lists_it_and_a_member_may_not_add_one(
    crieur: Crieur, alice: AsyncClient, matrix_client: ClientFactory, site: Site
) -> None:
    bob = await matrix_client("bob")  # a plain member
    await crieur.start(accept_invites_from=[alice.user_id])
    room = await joined_room(crieur, alice, members=(bob,))

    _, refused = await crieur.command(bob, room, f"!subscribe {site.url()}")
    assert content(refused)["body"].startswith("Désolé, seuls les modérateurs de ce salon")
    assert site.server.hits(FEED) == 0

    _, reply = await crieur.command(alice, room, f"!subscribe {site.url(FEED)}")
    assert content(reply)["body"].startswith("Ce salon suit désormais « Mon LUG »")
    assert site.server.hits("/lug/") == 0  # a feed is used as it is
    _, listed = await crieur.command(bob, room, "!subscriptions")
    assert content(listed)["body"] == (
        f"Ce salon reçoit :\nFlux ajoutés par ce salon : Mon LUG ({site.url(FEED)})"
    )


async def test_a_private_address_is_refused_when_not_allowed_and_nothing_is_stored(
    crieur: Crieur, alice: AsyncClient, site: Site
) -> None:
    crieur.allow_private = False
    await crieur.start(accept_invites_from=[alice.user_id])
    room = await joined_room(crieur, alice)

    _, reply = await crieur.command(alice, room, f"!subscribe {site.url()}")
    assert content(reply)["body"] == (
        "Refusé : 127.0.0.1 (loopback) est une adresse privée ou locale, que Crieur ne consulte"
        " pas (polling.allow_private_networks). Rien n'a été ajouté."
    )
    _, listed = await crieur.command(alice, room, "!subscriptions")
    assert content(listed)["body"].startswith("Ce salon ne suit encore rien.")
    assert site.server.hits("/lug/") == site.server.hits(FEED) == 0


async def test_the_cap_refuses_one_feed_too_many_without_fetching_it(
    crieur: Crieur, alice: AsyncClient, site: Site
) -> None:
    crieur.max_own_feeds = 1
    site.server.set_feed("/gull/feed.xml", rss([{"title": "Gull", "guid": "g1"}], title="Gull"))
    await crieur.start(accept_invites_from=[alice.user_id])
    room = await joined_room(crieur, alice)
    await crieur.command(alice, room, f"!subscribe {site.url(FEED)}")

    _, reply = await crieur.command(alice, room, f"!subscribe {site.url('/gull/feed.xml')}")
    assert content(reply)["body"] == (
        "Ce salon suit déjà 1 flux à lui, le maximum (rooms.max_own_feeds) ; "
        "désabonnez-en un d'abord."
    )
    assert site.server.hits("/gull/feed.xml") == 0


async def test_two_rooms_on_one_url_share_one_feed_polled_once(
    crieur: Crieur, alice: AsyncClient, matrix_client: ClientFactory, site: Site
) -> None:
    moderator = await matrix_client("mod")  # power level 50 in the second room
    await crieur.start(accept_invites_from=[alice.user_id])
    first = await joined_room(crieur, alice)
    second = await joined_room(crieur, alice, moderators=(moderator,))
    await crieur.command(alice, first, f"!subscribe {site.url()}")
    _, reply = await crieur.command(moderator, second, f"!subscribe {site.url(FEED)}")
    assert content(reply)["body"].startswith("Ce salon suit désormais « Mon LUG »")

    # Polled every second: one feed row answers about once a second, two would twice as often.
    await crieur.guard(wait_hits(site.server, FEED, site.server.hits(FEED) + 1))
    start = site.server.hits(FEED)
    await asyncio.sleep(4.0)
    assert site.server.hits(FEED) - start <= 6
    with closing(sqlite3.connect(f"file:{crieur.database}?mode=ro", uri=True)) as db:
        feeds = db.execute("SELECT id FROM feeds WHERE url = ?", (site.url(FEED),)).fetchall()
        assert len(feeds) == 1  # one source, whatever the number of rooms
        (followers,) = db.execute(
            "SELECT COUNT(*) FROM room_sources WHERE feed_id = ?", feeds[0]
        ).fetchone()
        assert followers == 2
    title = site.publish("Le LUG déménage")
    for room in (first, second):
        await crieur.wait_for_titles(alice, room, [title])
    await crieur.guard(wait_hits(site.server, FEED, site.server.hits(FEED) + 2))
    for room in (first, second):
        events = await SynapseServer.timeline(alice, room)
        assert crieur.posts(events, [title]) == [title]
        assert len(posts_from(events, crieur.user_id)) == 1


async def test_unsubscribing_by_url_and_by_name_stops_the_posts_and_the_polls(
    crieur: Crieur, alice: AsyncClient, site: Site
) -> None:
    site.server.set_feed("/gull/feed.xml", rss([{"title": "Gull", "guid": "g1"}], title="Le Gull"))
    await crieur.start(accept_invites_from=[alice.user_id])
    room = await joined_room(crieur, alice)
    await crieur.command(alice, room, f"!subscribe {site.url()}")
    await crieur.command(alice, room, f"!subscribe {site.url('/gull/feed.xml')}")

    _, by_url = await crieur.command(alice, room, f"!unsubscribe {site.url()}")
    assert content(by_url)["body"] == f"Ce salon ne suit plus « Mon LUG » ({site.url(FEED)})."
    await asyncio.sleep(1.0)  # a burst of three commands, then one a second
    _, by_name = await crieur.command(alice, room, "!unsubscribe le gull")
    assert content(by_name)["body"].startswith("Ce salon ne suit plus « Le Gull »")

    site.publish("Après le désabonnement")
    await asyncio.sleep(1.5)  # a poll in flight when the answer was sent may still land
    hits = site.server.hits(FEED), site.server.hits("/gull/feed.xml")
    await asyncio.sleep(3.0)
    assert (site.server.hits(FEED), site.server.hits("/gull/feed.xml")) == hits
    assert posts_from(await SynapseServer.timeline(alice, room), crieur.user_id) == []


async def test_a_restart_keeps_room_sources_and_posts_nothing_twice(
    crieur: Crieur, alice: AsyncClient, site: Site
) -> None:
    bot = await crieur.start(accept_invites_from=[alice.user_id])
    room = await joined_room(crieur, alice)
    await crieur.command(alice, room, f"!subscribe {site.url()}")
    before = site.publish("Avant l'arrêt")
    await crieur.wait_for_titles(alice, room, [before])

    await bot.stop()
    during = site.publish("Pendant l'arrêt")
    await crieur.start(accept_invites_from=[alice.user_id])
    await crieur.wait_for_titles(alice, room, [during])
    await crieur.guard(wait_hits(site.server, FEED, site.server.hits(FEED) + 2))

    events = await SynapseServer.timeline(alice, room)
    assert crieur.posts(events, [before, during]) == [before, during]
    assert len(posts_from(events, crieur.user_id)) == 2
    _, listed = await crieur.command(alice, room, "!subscriptions")
    assert content(listed)["body"].endswith(f"Mon LUG ({site.url(FEED)})")


async def wait_hits(server: FeedServer, path: str, count: int) -> None:
    """Wait until `path` has answered `count` requests in all."""
    await eventually(lambda: server.hits(path) >= count, what=f"{count} requests of {path}")


async def test_an_upgraded_room_keeps_its_own_feeds(
    crieur: Crieur, alice: AsyncClient, site: Site
) -> None:
    await crieur.start(accept_invites_from=[alice.user_id])
    old = await joined_room(crieur, alice)
    await crieur.command(alice, old, f"!subscribe {site.url()}")

    # As an upgrading client does: the new room, the tombstone, then the invite.
    new = await SynapseServer.create_room(alice)
    await alice.room_put_state(old, "m.room.tombstone", {"body": "moved", "replacement_room": new})
    await alice.room_invite(new, crieur.user_id)
    await wait_for_membership(alice, new, crieur.user_id, "join")

    async def moved() -> bool:
        _, listed = await crieur.command(alice, new, "!subscriptions")
        return str(content(listed)["body"]).endswith(f"Mon LUG ({site.url(FEED)})")

    await crieur.guard(eventually(moved, what="the room's own feed in the new room", interval=1.5))
