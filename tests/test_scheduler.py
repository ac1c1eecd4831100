"""The schedule: spread slots, backoff, per-organisation intervals, bounded concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from bot.config import Organisation, PollingConfig
from bot.fetcher import Fetcher
from bot.pipeline import Pipeline
from bot.scheduler import (
    MAX_BACKOFF,
    POLLS_PER_FETCH,
    PollTiming,
    Scheduler,
    backoff_delay,
    fit_to_intervals,
    next_slot,
    spread,
)
from bot.store import FeedState, Store
from tests.feed_server import FeedServer, rss

FEEDS = 30
CONCURRENCY = 3
NOW = 1_000_000.0


async def test_due_feeds_are_polled_once_each_with_bounded_polls_in_progress() -> None:
    slots = CONCURRENCY * POLLS_PER_FETCH
    async with await Store.open(":memory:") as store:
        await store.sync_feeds((f"org-{n}", f"https://org{n}.example/feed") for n in range(FEEDS))
        gate, full, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
        active = peak = 0
        polled: Counter[int] = Counter()

        async def poll_one(feed: FeedState) -> None:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            if active == slots:
                full.set()
            await gate.wait()
            await store.schedule_feed(feed.id, NOW + 3600)  # not due again in this test
            polled[feed.id] += 1
            active -= 1
            if sum(polled.values()) == FEEDS:
                done.set()

        scheduler = Scheduler(store, poll_one, concurrency=CONCURRENCY, clock=lambda: NOW)
        task = asyncio.create_task(scheduler.run())
        try:
            async with asyncio.timeout(10):  # a guard against a hang, not a timing check
                await full.wait()
                await asyncio.sleep(0.05)  # room for a scheduler that would start more
                # Feeds waiting for a slot have no task yet: only the polls in progress do.
                polls = [t for t in asyncio.all_tasks() if t.get_name().startswith("poll-")]
                assert len(polls) == slots
                gate.set()
                await done.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert peak == slots
        assert sorted(polled.values()) == [1] * FEEDS


async def test_feeds_of_a_fast_host_are_polled_beside_many_held_by_a_slow_one(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    slow_count, fast_count, per_host = 40, 6, 2
    body = rss([{"title": "t", "guid": "1"}])
    release, all_fast, all_slow = asyncio.Event(), asyncio.Event(), asyncio.Event()
    asked: Counter[str] = Counter()

    async def held(request: web.Request) -> web.Response:
        asked["slow"] += 1
        if asked["slow"] == slow_count:
            all_slow.set()
        await release.wait()  # a host that answers only when the test says so
        return web.Response(body=body, content_type="text/xml")

    async def quick(request: web.Request) -> web.Response:
        asked["fast"] += 1
        if asked["fast"] == fast_count:
            all_fast.set()
        return web.Response(body=body, content_type="text/xml")

    for n in range(slow_count):
        feed_server.set_route(f"/slow/{n}", held)
    for n in range(fast_count):
        feed_server.set_route(f"/fast/{n}", quick)
    # The same local server under two host names: 127.0.0.1 is slow, localhost is fast.
    fast_base = feed_server.url("/").replace("127.0.0.1", "localhost")
    feeds = [(f"slow-{n}", feed_server.url(f"/slow/{n}")) for n in range(slow_count)]
    feeds += [(f"fast-{n}", f"{fast_base}fast/{n}") for n in range(fast_count)]
    organisations = {slug: Organisation(slug, slug, "france", feeds=(url,)) for slug, url in feeds}
    polling = PollingConfig(
        concurrency=4, per_host=per_host, timeout=60, allow_private_networks=True
    )
    async with await Store.open(tmp_path / "crieur.sqlite3") as store, Fetcher(polling) as fetcher:
        await store.sync_feeds(feeds)
        now = time.time()
        for feed in await store.feeds():
            # Every slow feed is more overdue than any fast one, so it comes first.
            overdue = 3600 if feed.organisation.startswith("slow") else 60
            await store.schedule_feed(feed.id, now - overdue)
        pipeline = Pipeline(
            store, fetcher, organisations, polling, timing=PollTiming(organisations, polling)
        )
        scheduler = Scheduler(
            store, pipeline.poll, concurrency=polling.concurrency, per_host=polling.per_host
        )
        task = asyncio.create_task(scheduler.run())
        try:
            async with asyncio.timeout(20):  # a guard against a hang, not a timing check
                await all_fast.wait()
            # Every fast feed was polled while the slow host held its requests, which never
            # went past the host's limit.
            assert asked == {"slow": per_host, "fast": fast_count}
            release.set()
            async with asyncio.timeout(20):
                await all_slow.wait()
        finally:
            release.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert asked == {"slow": slow_count, "fast": fast_count}


async def test_a_poll_that_raises_counts_as_a_failure() -> None:
    async with await Store.open(":memory:") as store:
        await store.sync_feeds([("april", "https://april.example/feed")])
        polled = asyncio.Event()

        async def poll_one(feed: FeedState) -> None:
            polled.set()
            raise KeyError("a bug")

        scheduler = Scheduler(store, poll_one, concurrency=1, clock=lambda: NOW)
        task = asyncio.create_task(scheduler.run())
        try:
            async with asyncio.timeout(10):  # a guard against a hang, not a timing check
                await polled.wait()
                # The failure is recorded after the poll raised, out of the test's sight.
                while not (await store.feeds())[0].error_count:  # noqa: ASYNC110
                    await asyncio.sleep(0)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        (feed,) = await store.feeds()
        assert (feed.error_count, feed.last_error) == (1, "internal error (KeyError: 'a bug')")
        assert feed.next_poll > NOW


def feed_state(organisation: str, *, errors: int = 0) -> FeedState:
    url = f"https://{organisation}.example/feed"
    return FeedState(
        1, organisation, url, url, None, None, None, True, errors, None, None, None, 0.0
    )


def timing() -> PollTiming:
    organisations = {
        "april": Organisation("april", "April", "france", feeds=("https://april.example/feed",)),
        "slow": Organisation(
            "slow", "Slow", "france", feeds=("https://slow.example/feed",), interval=7200
        ),
    }
    return PollTiming(organisations, PollingConfig(interval=1800), rng=random.Random(1))


def test_feeds_spread_over_the_interval() -> None:
    fractions = [spread(f"https://feed{n}.example/") for n in range(200)]
    assert min(fractions) < 0.1 and max(fractions) > 0.9
    assert spread("https://a.example/") == spread("https://a.example/")


def test_next_slot_is_regular_and_at_least_half_an_interval_away() -> None:
    url, interval, now = "https://a.example/", 1800.0, 1_000_000.0
    first = next_slot(url, now, interval)
    assert first - now >= interval / 2
    assert next_slot(url, first, interval) - first == pytest.approx(interval)


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 600, rng=rng) for n in range(1, 12)]
    assert delays[0] < delays[2] < delays[4]
    assert max(delays) <= MAX_BACKOFF
    assert backoff_delay(1, 60, retry_after=3600, rng=rng) >= 3600


def test_an_organisation_interval_overrides_the_default_one() -> None:
    schedule = timing()
    assert schedule.interval(feed_state("april")) == 1800
    assert schedule.interval(feed_state("slow")) == 7200
    assert schedule.interval(feed_state("dropped")) == 1800


def test_a_feed_that_answered_is_next_polled_on_its_own_slot() -> None:
    feed = feed_state("slow")
    polled = timing().after_success(feed, NOW)
    assert polled == next_slot(feed.config_url, NOW, 7200)
    assert timing().after_success(feed, polled) - polled == pytest.approx(7200)


def test_each_failure_in_a_row_waits_longer_and_retry_after_wins() -> None:
    schedule = timing()
    waits = [
        schedule.after_failure(feed_state("april", errors=n), NOW, None) - NOW for n in range(4)
    ]
    assert waits[0] < waits[2] < waits[3]
    assert 0.8 * 1800 <= waits[0] <= 1.2 * 1800  # the first failure waits about an interval
    assert schedule.after_failure(feed_state("april"), NOW, 40_000) - NOW >= 40_000


async def test_a_changed_interval_moves_the_polls_already_queued() -> None:
    daily = {"april": Organisation("april", "April", "france", feeds=("https://a.example/f",))}
    hourly = {
        "april": Organisation(
            "april", "April", "france", feeds=("https://a.example/f",), interval=3600
        )
    }
    async with await Store.open(":memory:") as store:
        await store.sync_feeds([("april", "https://a.example/f")])
        (feed,) = await store.feeds()
        old = PollTiming(daily, PollingConfig(interval=86400))
        await store.record_not_modified(feed.id, now=NOW, next_poll=old.after_success(feed, NOW))
        (feed,) = await store.feeds()
        assert feed.next_poll - NOW >= 43200

        # Started again with the same configuration: nothing moves.
        assert await fit_to_intervals(store, old) == 0
        assert (await store.feeds())[0].next_poll == feed.next_poll

        new = PollTiming(hourly, PollingConfig(interval=86400))
        assert await fit_to_intervals(store, new) == 1
        (moved,) = await store.feeds()
        assert moved.next_poll == next_slot(feed.config_url, NOW, 3600)
        assert await fit_to_intervals(store, new) == 0


async def test_a_shorter_interval_shortens_the_backoff_of_a_failing_feed() -> None:
    async with await Store.open(":memory:") as store:
        await store.sync_feeds([("april", "https://a.example/f")])
        (feed,) = await store.feeds()
        for _ in range(3):
            await store.record_failure(
                feed.id, now=NOW, error="HTTP 500", next_poll=NOW + 4 * 86400
            )
        organisations = {
            "april": Organisation("april", "April", "france", feeds=("https://a.example/f",))
        }
        timing = PollTiming(organisations, PollingConfig(interval=600))
        assert await fit_to_intervals(store, timing) == 1
        (feed,) = await store.feeds()
        # Three failures in a row at a 10-minute interval wait 40 minutes, give or take 20 %.
        assert NOW < feed.next_poll <= NOW + 1.2 * 4 * 600
