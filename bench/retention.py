"""Retention: the database after a simulated year of a feed whose ids change at every poll."""

# Such a feed (a site that stamps its ids with the time, say) brings every item again as new at
# each poll. Crieur records them all, posts a few to one room and sums up the rest; the room's
# messages are marked sent as the dispatcher would. One store prunes once a simulated day with
# the default retention, the other never; the same polls go into both, on a simulated clock.

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.farm import item_summary
from bench.measure import progress
from bot.config import DEFAULT_RETENTION
from bot.model import Entry
from bot.store import Store

DAY = 86400.0
START = 1_767_225_600.0  # 2026-01-01 00:00 UTC
MAX_AGE = 7 * DAY
MAX_POSTS = 5
ROOM = "!readers:bench.example"


@dataclass(frozen=True, slots=True)
class StoreAfterAYear:
    """One store's file and rows after the simulated year."""

    bytes: int
    entries: int
    hashes: int  # keys of pruned entries


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """The same year with and without retention."""

    days: int
    polls: int
    items: int  # per poll
    kept: StoreAfterAYear  # pruned daily with the default retention
    everything: StoreAfterAYear  # never pruned

    @property
    def ratio(self) -> float:
        return self.kept.bytes / self.everything.bytes


def _entries(poll: int, items: int, now: float) -> list[Entry]:
    """The feed at one poll: the same items as ever, under ids that change every time."""
    return [
        Entry(
            f"https://changing.example.org/?p={item}&t={poll}",
            f"Compte rendu de la rencontre n° {item}",
            f"https://changing.example.org/{item}",
            datetime.fromtimestamp(now - item * 3600.0, UTC),
            item_summary(1, item),
        )
        for item in range(items)
    ]


async def _poll(store: Store, entries: list[Entry], now: float, interval: float) -> None:
    (feed,) = await store.feeds(["changing"])
    await store.record_poll(
        feed, "bench", entries, now=now, next_poll=now + interval, max_age=MAX_AGE,
        max_posts=MAX_POSTS, etag=None, last_modified=None, body_hash=None,
    )  # fmt: skip
    for delivery in await store.pending_deliveries(now, limit=100):
        await store.mark_sent(delivery.id, now=now, event_id="$sent")


def _measure(database: Path) -> StoreAfterAYear:
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        entries = int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
        hashes = int(conn.execute("SELECT COUNT(*) FROM pruned_keys").fetchone()[0])
    finally:
        conn.close()
    return StoreAfterAYear(database.stat().st_size, entries, hashes)


async def bench_retention(
    workdir: Path, *, days: int = 365, polls_per_day: int = 48, items: int = 10
) -> RetentionResult:
    """Poll the changing feed for `days` into two stores, one pruned daily; compare them."""
    interval = DAY / polls_per_day
    paths = {name: workdir / f"retention-{name}.sqlite3" for name in ("kept", "everything")}
    stores = {name: await Store.open(path) for name, path in paths.items()}
    try:
        for store in stores.values():
            await store.sync_feeds([("changing", "https://changing.example.org/feed")])
            await store.follow(ROOM, "region", "bench", now=START)
        poll = 0
        for day in range(days):
            for _ in range(polls_per_day):
                now = START + poll * interval
                entries = _entries(poll, items, now)
                for store in stores.values():
                    await _poll(store, entries, now, interval)
                poll += 1
            await stores["kept"].prune(now=START + poll * interval, retention=DEFAULT_RETENTION)
            if day % 30 == 29:
                progress(f"retention: day {day + 1} of {days}")
    finally:
        for store in stores.values():
            await store.close()
    return RetentionResult(
        days, poll, items, _measure(paths["kept"]), _measure(paths["everything"])
    )
