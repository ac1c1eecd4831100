"""The schedule: spread slots, backoff, per-organisation intervals, bounded concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter

import pytest

from bot.config import Organisation, PollingConfig
from bot.scheduler import (
    MAX_BACKOFF,
    POLLS_PER_FETCH,
    PollTiming,
    Scheduler,
    backoff_delay,
    next_slot,
    spread,
)
from bot.store import FeedState, Store

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
