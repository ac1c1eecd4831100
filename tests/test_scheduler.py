"""The scheduler's bounded concurrency, against a real in-memory store."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from bot.scheduler import POLLS_PER_FETCH, Scheduler
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
