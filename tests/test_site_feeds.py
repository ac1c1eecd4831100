"""Organisations' feeds found on their site: at start, and again when a feed is gone."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.admin import AdminReports
from bot.catalogue import Catalogue
from bot.cli import EXIT_FEED_ERRORS, EXIT_OK
from bot.config import Organisation, PollingConfig, Region
from bot.fetcher import Fetcher
from bot.pipeline import Pipeline, PollOutcome
from bot.scheduler import PollTiming
from bot.site_feeds import GONE_POLLS, KEY_SITE_FEED, finder_for
from bot.store import Store
from tests.clock import Clock
from tests.feed_server import FeedServer, rss
from tests.test_check_online import config_head, run_crieur, site_page
from tests.test_commands import MEMBER, Bot

START = datetime(2026, 1, 8, 12, 0, tzinfo=UTC)


def item(n: int, site: str = "april") -> dict[str, object]:
    return {"title": f"{site} {n}", "link": f"https://{site}.example/{n}", "guid": f"{site}-{n}"}


@dataclass
class Bench:
    store: Store
    pipeline: Pipeline
    clock: Clock
    server: FeedServer
    reports: AdminReports

    async def poll(self) -> PollOutcome:
        (feed,) = await self.store.feeds(["april"])
        return await self.pipeline.poll(feed)


class Room:
    """Records the notices matrix.admin_room would receive."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_notice(self, room_id: str, content: dict[str, Any], txn_id: str) -> str:
        self.sent.append(str(content["body"]))
        return f"$event{len(self.sent)}"


@pytest.fixture
async def bench(tmp_path: Path, feed_server: FeedServer) -> AsyncIterator[Bench]:
    polling = PollingConfig(interval=1800, timeout=2, allow_private_networks=True)
    april = Organisation(
        "april", "April", "france", url=feed_server.url("/site/"), feeds=(feed_server.url("/old"),)
    )
    organisations = {"april": april}
    catalogue = Catalogue({"france": Region("france", "France")}, organisations)
    clock = Clock(START.timestamp())
    store = await Store.open(tmp_path / "crieur.sqlite3")
    await store.sync_feeds([("april", feed_server.url("/old"))])
    await store.follow("!room:x", "region", "france", now=clock())
    reports = AdminReports(store, catalogue, language="en", report_after=3600.0, clock=clock)
    async with Fetcher(polling) as fetcher:
        pipeline = Pipeline(
            store,
            fetcher,
            organisations,
            polling,
            timing=PollTiming(organisations, polling),
            clock=clock,
            listeners=(reports.poll_seen,),
            finder=finder_for(fetcher),
        )
        yield Bench(store, pipeline, clock, feed_server, reports)
    await store.close()


async def test_a_feed_gone_for_three_polls_is_replaced_by_the_one_on_its_site(
    bench: Bench,
) -> None:
    server = bench.server
    server.set_feed("/old", rss([item(1)]))
    server.set_feed("/site/", site_page("/site/news.xml"), content_type="text/html")
    server.set_feed("/site/news.xml", rss([item(1, "news"), item(2, "news")]))
    assert (await bench.poll()).status == "seeded"
    server.status("/old", 404)
    for _ in range(GONE_POLLS - 1):
        outcome = await bench.poll()
        assert (outcome.status, outcome.replaced_by) == ("error", None)
    assert server.hits("/site/") == 0  # not looked for before the third poll in a row
    outcome = await bench.poll()
    assert outcome.replaced_by == server.url("/site/news.xml")
    (feed,) = await bench.store.feeds()
    assert feed.url == server.url("/site/news.xml")
    assert feed.next_poll <= bench.clock()  # polled there at once
    # The replacement's back catalogue is recorded as seen, not posted; what comes next is.
    assert (await bench.poll()).status == "seeded"
    assert await bench.store.outbox_size() == 0
    server.set_feed("/site/news.xml", rss([item(1, "news"), item(2, "news"), item(3, "news")]))
    outcome = await bench.poll()
    assert outcome.record is not None and [e.title for e in outcome.record.posted] == ["news 3"]
    room = Room()
    await bench.reports.check(room, "!admin")
    assert room.sent == [
        f"🔁 April's feed ({server.url('/old')}) is gone; the one found on its site, "
        f"{server.url('/site/news.xml')}, is followed instead."
    ]


async def test_a_replacement_is_never_a_feed_the_organisation_polls_already(
    bench: Bench,
) -> None:
    server = bench.server
    await bench.store.sync_feeds([("april", server.url("/old")), ("april", server.url("/main"))])
    server.set_feed("/main", rss([item(1, "main")]))
    server.set_feed("/site/other.xml", rss([item(1, "other")]))
    page = site_page("/main").replace(
        b"</head>",
        b'<link rel="alternate" type="application/rss+xml" href="/site/other.xml"></head>',
    )
    server.set_feed("/site/", page, content_type="text/html")
    server.status("/old", 404)
    (old,) = [feed for feed in await bench.store.feeds() if feed.url == server.url("/old")]
    outcomes = [await bench.pipeline.poll(old) for _ in range(GONE_POLLS)]
    assert outcomes[-1].replaced_by == server.url("/site/other.xml")
    urls = sorted(feed.url for feed in await bench.store.feeds())
    assert urls == [server.url("/main"), server.url("/site/other.xml")]


async def test_a_feed_that_stops_being_a_feed_is_replaced_too(bench: Bench) -> None:
    server = bench.server
    server.set_feed("/old", rss([item(1)]))
    server.set_feed("/site/", site_page("/site/news.xml"), content_type="text/html")
    server.set_feed("/site/news.xml", rss([item(1, "news")]))
    await bench.poll()
    server.set_feed("/old", b"<html><body>Parked domain</body></html>", content_type="text/html")
    outcomes = [await bench.poll() for _ in range(GONE_POLLS)]
    assert [o.replaced_by for o in outcomes] == [None, None, server.url("/site/news.xml")]


async def test_server_errors_do_not_send_crieur_looking_elsewhere(bench: Bench) -> None:
    bench.server.set_feed("/old", rss([item(1)]))
    await bench.poll()
    bench.server.status("/old", 503)
    for _ in range(GONE_POLLS * 2):
        assert (await bench.poll()).replaced_by is None
    assert bench.server.hits("/site/") == 0
    (feed,) = await bench.store.feeds()
    assert feed.url == bench.server.url("/old")


async def test_a_site_with_the_same_feed_or_none_changes_nothing(bench: Bench) -> None:
    server = bench.server
    server.set_feed("/old", rss([item(1)]))
    await bench.poll()
    server.status("/old", 410)
    server.set_feed("/site/", b"<!doctype html><html><body>No feed</body></html>",
                    content_type="text/html")  # fmt: skip
    outcomes = [await bench.poll() for _ in range(GONE_POLLS)]
    assert all(o.replaced_by is None for o in outcomes)
    assert server.hits("/site/") >= 1  # looked at on the third poll (`?feed=rss2` too)
    (feed,) = await bench.store.feeds()
    assert (feed.url, feed.error_count) == (server.url("/old"), GONE_POLLS)


def write_config(tmp_path: Path, feed_server: FeedServer) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        config_head(tmp_path)
        + f"""\
regions:
  france: {{name: France}}
organisations:
  lug:
    name: LUG
    region: france
    url: "{feed_server.url("/lug/")}"
  empty:
    name: Empty
    region: france
    url: "{feed_server.url("/empty/")}"
""",
        encoding="utf-8",
    )
    return path


async def test_fetch_discovers_the_feed_of_an_organisation_that_lists_none(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/lug/", site_page("/lug/news.xml"), content_type="text/html")
    feed_server.set_feed("/lug/news.xml", rss([item(1, "lug"), item(2, "lug")]))
    feed_server.set_feed("/empty/", b"<!doctype html><html><body>Hello</body></html>",
                         content_type="text/html")  # fmt: skip
    config = write_config(tmp_path, feed_server)
    code, out, err = await run_crieur("fetch", "-c", str(config))
    # The site without a feed is polled as it is, and fails, rather than being left out.
    assert code == EXIT_FEED_ERRORS
    assert f"{feed_server.url('/lug/news.xml')}: first fetch: 2 entries" in out
    assert f"{feed_server.url('/empty/')}: error: " in out
    assert f"LUG: feed discovered at {feed_server.url('/lug/news.xml')}" in err
    assert f"Empty: no feed found at {feed_server.url('/empty/')}" in err
    with sqlite3.connect(tmp_path / "crieur.sqlite3") as conn:
        (known,) = conn.execute(
            "SELECT value FROM kv WHERE key = ?", (KEY_SITE_FEED + "lug",)
        ).fetchone()
    assert known == feed_server.url("/lug/news.xml")
    # The site down at the next start: the feed found before is polled still.
    feed_server.status("/lug/", 503)
    feed_server.set_feed("/empty/", site_page("/empty/feed/"), content_type="text/html")
    feed_server.set_feed("/empty/feed/", rss([item(1, "empty")]))
    code, out, err = await run_crieur("fetch", "-c", str(config))
    assert code == EXIT_OK, out + err
    assert f"{feed_server.url('/lug/news.xml')}: nothing new" in out
    assert f"{feed_server.url('/empty/feed/')}: first fetch: 1 entries" in out


async def test_status_says_where_a_discovered_or_replacing_feed_comes_from(
    tmp_path: Path,
) -> None:
    organisations = {
        "april": Organisation(
            "april", "April", "france", url="https://april.example/",
            feeds=("https://april.example/old.xml",),
        ),
        "lug": Organisation("lug", "LUG", "france", url="https://lug.example/"),
        "empty": Organisation("empty", "Empty", "france", url="https://empty.example/"),
    }  # fmt: skip
    catalogue = Catalogue({"france": Region("france", "France")}, organisations)
    async with await Store.open(tmp_path / "crieur.sqlite3") as store:
        await store.sync_feeds([
            ("april", "https://april.example/old.xml"),
            ("lug", "https://lug.example/feed/"),
            ("empty", "https://empty.example/"),
        ])  # fmt: skip
        feeds = {feed.organisation: feed for feed in await store.feeds()}
        await store.replace_feed_url(
            feeds["april"].id, "https://april.example/news.xml", next_poll=0.0
        )
        await store.record_failure(feeds["empty"].id, now=0.0, error="not a feed", next_poll=3600.0)
        bot = Bot(store, catalogue)
        await bot.ask("!subscribe france")
        lines = (await bot.ask("!status", sender=MEMBER)).splitlines()
    april = next(line for line in lines if line.startswith("April"))
    assert april.startswith("April — https://april.example/news.xml — ")
    assert "instead of https://april.example/old.xml" in april
    lug = next(line for line in lines if line.startswith("LUG"))
    assert lug.startswith("LUG — https://lug.example/feed/ — found on https://lug.example/")
    # A site where no feed was found is there, failing, with the reason.
    empty = next(line for line in lines if line.startswith("Empty"))
    assert "1 consecutive error" in empty and "last error: not a feed" in empty
