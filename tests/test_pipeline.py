"""One poll end to end: real local feed server → fetcher → parser → store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import Organisation, PollingConfig
from bot.fetcher import Fetcher
from bot.model import FetchResult
from bot.pipeline import Pipeline
from bot.scheduler import PollTiming
from bot.store import Store
from tests.clock import Clock
from tests.feed_server import FeedServer, rss

START = datetime(2026, 1, 8, 12, 0, tzinfo=UTC)


@dataclass
class Bench:
    store: Store
    pipeline: Pipeline
    clock: Clock
    server: FeedServer

    async def poll(self, organisation: str = "april"):  # type: ignore[no-untyped-def]
        (feed,) = await self.store.feeds([organisation])
        return await self.pipeline.poll(feed)


def item(n: int, *, hours: float = 0.0) -> dict[str, object]:
    published = START + timedelta(hours=hours)
    return {
        "title": f"Article {n}",
        "link": f"https://april.example/{n}",
        "guid": f"https://april.example/{n}",
        "pubDate": published,
        "description": f"<p>Résumé {n}</p>",
    }


@pytest.fixture
async def bench(tmp_path: Path, feed_server: FeedServer) -> AsyncIterator[Bench]:
    polling = PollingConfig(
        interval=1800, timeout=2, allow_private_networks=True, max_posts_per_poll=3
    )
    organisations = {
        "april": Organisation("april", "April", "france", feeds=(feed_server.url("/april"),))
    }
    clock = Clock(START.timestamp())
    store = await Store.open(tmp_path / "crieur.sqlite3")
    await store.sync_feeds([("april", feed_server.url("/april"))])
    await store.follow("!room:x", "region", "france", now=clock())
    async with Fetcher(polling) as fetcher:
        yield Bench(
            store,
            Pipeline(
                store,
                fetcher,
                organisations,
                polling,
                timing=PollTiming(organisations, polling),
                clock=clock,
            ),
            clock,
            feed_server,
        )
    await store.close()


async def test_first_fetch_records_entries_and_posts_nothing(bench: Bench) -> None:
    bench.server.set_feed("/april", rss([item(2, hours=-1), item(1, hours=-2)]))
    outcome = await bench.poll()
    assert outcome.status == "seeded"
    assert len(await bench.store.latest_entries(["april"], 10)) == 2
    assert await bench.store.outbox_size() == 0


async def test_new_item_is_queued_for_the_region_room(bench: Bench) -> None:
    bench.server.set_feed("/april", rss([item(1, hours=-2)]))
    await bench.poll()
    bench.server.set_feed("/april", rss([item(2, hours=-1), item(1, hours=-2)]))
    outcome = await bench.poll()
    assert outcome.status == "new"
    (delivery,) = await bench.store.pending_deliveries(bench.clock())
    assert (delivery.room_id, delivery.entry and delivery.entry.title) == ("!room:x", "Article 2")


async def test_etag_makes_the_next_poll_conditional(bench: Bench) -> None:
    bench.server.set_feed("/april", rss([item(1)]), etag="v1")
    await bench.poll()
    outcome = await bench.poll()
    assert outcome.status == "not_modified"
    assert bench.server.requests("/april")[-1].get("If-None-Match") == '"v1"'


async def test_same_body_without_validators_is_not_parsed_again(bench: Bench) -> None:
    bench.server.set_feed("/april", rss([item(1)]))
    await bench.poll()
    outcome = await bench.poll()
    assert outcome.status == "unchanged"
    assert outcome.record is None


async def test_invalid_body_is_a_failure_not_everything_new(bench: Bench) -> None:
    bench.server.set_feed("/april", rss([item(1, hours=-1)]))
    await bench.poll()
    bench.server.set_feed(
        "/april", b"<html><body>Maintenance</body></html>", content_type="text/html"
    )
    outcome = await bench.poll()
    assert outcome.status == "error"
    (feed,) = await bench.store.feeds()
    assert feed.error_count == 1
    assert feed.next_poll > bench.clock()
    assert await bench.store.outbox_size() == 0


async def test_server_errors_back_off_and_recovery_resets(bench: Bench) -> None:
    bench.server.status("/april", 500)
    delays = []
    for _ in range(3):
        await bench.poll()
        (feed,) = await bench.store.feeds()
        delays.append(feed.next_poll - bench.clock())
    assert feed.error_count == 3
    assert delays[0] < delays[1] < delays[2]
    bench.server.set_feed("/april", rss([item(1)]))
    await bench.poll()
    (feed,) = await bench.store.feeds()
    assert (feed.error_count, feed.last_error) == (0, None)


async def test_retry_after_is_honoured(bench: Bench) -> None:
    bench.server.status("/april", 429, {"Retry-After": "86000"})
    await bench.poll()
    (feed,) = await bench.store.feeds()
    assert feed.next_poll - bench.clock() >= 86000


async def test_burst_beyond_max_posts_ends_in_a_digest(bench: Bench) -> None:
    bench.server.set_feed("/april", rss([item(0, hours=-10)]))
    await bench.poll()
    bench.server.set_feed("/april", rss([item(n, hours=-n / 10) for n in range(1, 6)]))
    outcome = await bench.poll()
    assert outcome.record is not None
    assert (len(outcome.record.posted), outcome.record.digested) == (3, 2)
    titles = [
        d.entry.title if d.entry else "digest"
        for d in await bench.store.pending_deliveries(bench.clock())
    ]
    assert titles == ["Article 5", "Article 4", "Article 3", "digest"]


async def test_permanent_redirect_updates_the_stored_url(bench: Bench) -> None:
    bench.server.set_feed("/new", rss([item(1)]))
    bench.server.redirect("/april", "/new", 301)
    await bench.poll()
    (feed,) = await bench.store.feeds()
    assert feed.url == bench.server.url("/new")
    await bench.poll()
    assert bench.server.hits("/april") == 1


async def test_the_http_charset_reaches_the_parser(bench: Bench) -> None:
    title = "Новости сообщества"
    body = (
        '<rss version="2.0"><channel><title>t</title>'
        f"<item><title>{title}</title><guid>1</guid></item></channel></rss>"
    ).encode("windows-1251")
    bench.server.set_feed("/april", body, content_type="text/xml; charset=windows-1251")
    await bench.poll()
    ((_, entry),) = await bench.store.latest_entries(["april"], 10)
    assert entry.title == title


async def test_a_feed_the_operator_names_again_is_fetched_from_its_configured_url(
    bench: Bench,
) -> None:
    bench.server.set_feed("/new", rss([item(1)]), etag="moved")
    bench.server.redirect("/april", "/new", 301)
    await bench.poll()
    configured = bench.server.url("/april")
    # The operator drops the feed, then writes it again (its site is back at the old URL).
    await bench.store.sync_feeds([("april", bench.server.url("/elsewhere"))])
    await bench.store.sync_feeds([("april", configured)])
    bench.server.set_feed("/april", rss([item(2), item(1)]))
    (feed,) = await bench.store.feeds(["april"])
    assert (feed.url, feed.etag) == (configured, None)
    outcome = await bench.poll()
    assert outcome.status == "new"
    assert bench.server.hits("/april") == 2
    # A restart with the same configuration keeps following the redirect it learnt.
    bench.server.redirect("/april", "/new", 301)
    await bench.poll()
    await bench.store.sync_feeds([("april", configured)])
    (feed,) = await bench.store.feeds(["april"])
    assert feed.url == bench.server.url("/new")


class BrokenFetcher:
    """A fetcher with a bug: every fetch raises what no poll expects."""

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        raise RuntimeError("a bug in the fetcher " + "and more " * 100)


async def test_an_unexpected_error_counts_as_a_failure_with_a_short_reason(bench: Bench) -> None:
    polling = PollingConfig(interval=1800)
    organisations = {"april": Organisation("april", "April", "france", feeds=("x",))}
    pipeline = Pipeline(
        bench.store,
        BrokenFetcher(),
        organisations,
        polling,
        timing=PollTiming(organisations, polling),
        clock=bench.clock,
    )
    (feed,) = await bench.store.feeds(["april"])

    outcome = await pipeline.poll(feed)

    assert outcome.status == "error"
    (feed,) = await bench.store.feeds(["april"])
    assert feed.error_count == 1
    assert feed.next_poll > bench.clock()
    assert feed.last_error is not None
    assert feed.last_error.startswith("internal error (RuntimeError: a bug in the fetcher")
    assert len(feed.last_error) <= 160
    await pipeline.poll(feed)
    (feed,) = await bench.store.feeds(["april"])
    assert feed.error_count == 2
