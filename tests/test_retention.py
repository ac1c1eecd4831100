"""Retention: old entries go, each feed's newest stay, and nothing pruned is ever posted again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import Organisation, PollingConfig, load_config
from bot.errors import ConfigError
from bot.fetcher import Fetcher
from bot.model import Entry
from bot.pipeline import Pipeline
from bot.retention import PruneSchedule, prune_forever
from bot.scheduler import PollTiming
from bot.store import Store
from bot.store.retention import KEPT_PER_FEED, SENT_KEPT_FOR, key_hash
from tests.clock import Clock
from tests.feed_server import FeedServer, rss
from tests.test_events_store import NOW as EVENTS_NOW
from tests.test_events_store import REGION_ICS, event
from tests.test_events_store import poll as poll_calendar

DAY = 86400.0
START = datetime(2026, 1, 8, 12, 0, tzinfo=UTC)
T0 = START.timestamp()
RETENTION = 180 * DAY


class PruneLog(logging.Handler):
    """The retention task's log lines, as they come."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._more = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self._more.set()

    async def wait(self, count: int) -> None:
        """Return once `count` lines have come."""
        while len(self.lines) < count:
            self._more.clear()
            await self._more.wait()


@contextmanager
def prune_log() -> Iterator[PruneLog]:
    """Collect the retention task's log lines while the block runs."""
    logger = logging.getLogger("bot.retention")
    handler, level = PruneLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def entry(key: str, at: float) -> Entry:
    published = datetime.fromtimestamp(at, UTC)
    return Entry(key, f"Title {key}", f"https://april.example/{key}", published, "<p>hi</p>")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(tmp_path / "crieur.sqlite3") as db:
        await db.sync_feeds([("april", "https://april.example/rss")])
        await db.follow("!room:x", "region", "france", now=T0)
        yield db


async def record(store: Store, keys: list[str], at: float, max_posts: int = 5):  # type: ignore[no-untyped-def]
    (feed,) = await store.feeds(["april"])
    return await store.record_poll(
        feed, "france", [entry(key, at) for key in keys], now=at, next_poll=at + 1800,
        max_age=7 * DAY, max_posts=max_posts, etag=None, last_modified=None, body_hash=None,
    )  # fmt: skip


async def keys_of(store: Store) -> set[str]:
    (feed,) = await store.feeds(["april"])
    return {e.key for e in await store.latest_feed_entries(feed.id, 10_000)}


async def test_old_entries_go_but_each_feeds_newest_200_stay(store: Store) -> None:
    await record(store, [f"old-{n}" for n in range(50)], T0)  # the first fetch: seeded
    await record(store, [f"mid-{n}" for n in range(KEPT_PER_FEED)], T0 + DAY)
    pruned = await store.prune(now=T0 + RETENTION + 2 * DAY, retention=RETENTION)
    assert pruned.entries == 50
    assert await keys_of(store) == {f"mid-{n}" for n in range(KEPT_PER_FEED)}


async def test_entries_younger_than_retention_stay_beyond_200(store: Store) -> None:
    await record(store, [f"e-{n}" for n in range(300)], T0)
    pruned = await store.prune(now=T0 + RETENTION - DAY, retention=RETENTION)
    assert pruned.entries == 0
    assert len(await keys_of(store)) == 300


async def test_a_pruned_entry_back_in_the_feed_is_not_recorded_or_posted_again(
    store: Store,
) -> None:
    await record(store, ["gone"], T0)
    later = T0 + RETENTION + DAY
    await record(store, [f"new-{n}" for n in range(KEPT_PER_FEED)], later - 1)
    pruned = await store.prune(now=later, retention=RETENTION)
    assert pruned.entries == 1
    assert "gone" not in await keys_of(store)
    again = await record(store, ["gone", "fresh"], later + 10)
    assert [e.key for e in again.new_entries] == ["fresh"]
    assert [e.key for e in again.posted] == ["fresh"]


async def test_a_message_still_owed_keeps_its_entry_and_its_row(store: Store) -> None:
    await record(store, ["seed"], T0)
    await record(store, ["owed"], T0 + 1)  # its room cannot be reached: never sent
    later = T0 + RETENTION + DAY
    await record(store, [f"new-{n}" for n in range(KEPT_PER_FEED)], later - 1, max_posts=1000)
    owed = await store.outbox_size()
    pruned = await store.prune(now=later, retention=RETENTION)
    assert pruned.entries == 1  # "seed" only
    assert "owed" in await keys_of(store)
    assert await store.outbox_size() == owed
    assert pruned.messages == 0


async def test_sent_rows_older_than_7_days_go_and_newer_ones_stay(store: Store) -> None:
    await record(store, ["seed"], T0)
    await record(store, ["a", "b"], T0 + 10)
    first, second = await store.pending_deliveries(T0 + 10)
    await store.mark_sent(first.id, now=T0 + 20, event_id="$a")
    await store.mark_sent(second.id, now=T0 + 20 + DAY, event_id="$b")
    pruned = await store.prune(now=T0 + 20 + SENT_KEPT_FOR + 1, retention=RETENTION)
    assert (pruned.entries, pruned.messages) == (0, 1)
    # Neither is pending: the remaining sent row is just kept.
    assert await store.outbox_size() == 0
    pruned = await store.prune(now=T0 + 20 + DAY + SENT_KEPT_FOR + 1, retention=RETENTION)
    assert pruned.messages == 1


def test_the_hash_of_a_pruned_key_is_16_bytes_and_depends_on_the_feed() -> None:
    assert len(key_hash(1, "k")) == 16
    assert key_hash(1, "k") != key_hash(2, "k")


# -- through the pipeline, with a real feed server ----------------------------------------------


def item(key: str, at: datetime) -> dict[str, object]:
    return {
        "title": f"Article {key}",
        "link": f"https://april.example/{key}",
        "guid": f"https://april.example/{key}",
        "pubDate": at,
        "description": f"<p>{key}</p>",
    }


async def test_a_pruned_item_served_again_is_not_posted_again(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    polling = PollingConfig(interval=1800, timeout=2, allow_private_networks=True)
    url = feed_server.url("/april")
    organisations = {"april": Organisation("april", "April", "france", feeds=(url,))}
    clock = Clock(T0)
    async with await Store.open(tmp_path / "crieur.sqlite3") as store, Fetcher(polling) as fetcher:
        await store.sync_feeds([("april", url)])
        await store.follow("!room:x", "region", "france", now=T0)
        pipeline = Pipeline(
            store, fetcher, organisations, polling,
            timing=PollTiming(organisations, polling), clock=clock,
        )  # fmt: skip

        async def poll(items: list[dict[str, object]]) -> None:
            feed_server.set_feed("/april", rss(items))
            (feed,) = await store.feeds(["april"])
            await pipeline.poll(feed)

        await poll([item("old", START)])  # seeded
        clock.now = T0 + RETENTION + DAY
        now = datetime.fromtimestamp(clock.now, UTC)
        await poll([item(f"n{n}", now) for n in range(KEPT_PER_FEED)])
        for delivery in await store.pending_deliveries(clock.now, limit=1000):
            await store.mark_sent(delivery.id, now=clock.now, event_id="$e")
        assert (await store.prune(now=clock.now, retention=RETENTION)).entries == 1
        # The feed brings the old item back, dated as new: it was posted (seen) long ago.
        clock.now += 3600
        await poll([item("old", now + timedelta(hours=1)), item("n0", now)])
        assert await store.outbox_size() == 0
        assert "old" not in {e.key for e in await store.latest_feed_entries(1, 1000)}


# -- the daily task ---------------------------------------------------------------------------


async def test_the_prune_task_runs_at_start_then_on_schedule(store: Store) -> None:
    await record(store, ["gone"], T0)
    await record(store, [f"new-{n}" for n in range(KEPT_PER_FEED)], T0 + RETENTION)
    task = asyncio.create_task(
        prune_forever(
            store, RETENTION, PruneSchedule(first=0.01, every=0.05), Clock(T0 + RETENTION + DAY)
        )
    )
    with prune_log() as log:
        try:
            async with asyncio.timeout(5):
                await log.wait(2)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    lines = log.lines
    assert lines[0].startswith("retention: 1 old entries and 0 past events")
    assert lines[1].startswith("retention: 0 old entries and 0 past events")
    assert "gone" not in await keys_of(store)


# -- calendars ------------------------------------------------------------------------------------


async def test_past_events_go_and_never_come_back(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "crieur.sqlite3") as db:
        await db.sync_feeds([], [("", "la-reunion", REGION_ICS)])
        await db.follow("!reunion:example.org", "region", "la-reunion", now=EVENTS_NOW)
        await poll_calendar(db, REGION_ICS, [event("a", days=10)])  # first fetch: seen
        await poll_calendar(db, REGION_ICS, [event("a", days=10), event("b", days=5)])
        (announcement,) = await db.pending_deliveries(EVENTS_NOW)
        await db.mark_sent(announcement.id, now=EVENTS_NOW, event_id="$b")
        later = EVENTS_NOW + 11 * DAY + RETENTION
        pruned = await db.prune(now=later, retention=RETENTION)
        assert (pruned.entries, pruned.events, pruned.messages) == (0, 2, 0)
        again = await poll_calendar(
            db, REGION_ICS, [event("a", days=10), event("b", days=5)], now=later
        )
        assert (again.new_events, again.deliveries) == (0, 0)
        assert await db.outbox_size() == 0


# -- the configuration --------------------------------------------------------------------------


def config_with(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "matrix: {homeserver: 'https://m.example.org', user_id: '@c:m.example.org',"
        " password: x, encryption: false}\ndatabase: crieur.sqlite3\n" + line,
        encoding="utf-8",
    )
    return path


def test_retention_defaults_to_180_days(tmp_path: Path) -> None:
    assert load_config(config_with(tmp_path, ""), env={}).retention == 180 * DAY


def test_retention_is_read_as_a_duration(tmp_path: Path) -> None:
    assert load_config(config_with(tmp_path, "retention: 30d\n"), env={}).retention == 30 * DAY


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("12h", "retention: too short: '12h' (at least 1d)"),
        ("4000d", "retention: too long: '4000d' (at most 3650d)"),
        ("0", "retention: must be longer than zero, not '0'"),
        ("forever", "retention: invalid duration 'forever' (use 30s, 5m, 1h, 7d)"),
    ],
)
def test_retention_out_of_bounds_names_the_key(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(config_with(tmp_path, f"retention: '{value}'\n"), env={})
    assert caught.value.lines() == [message]
