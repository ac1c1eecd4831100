"""Store growth: the poll cycle before and after a million seen entries are in the database."""

# The entries are written straight into the poll benchmark's SQLite file, in one transaction
# (the bot would take years to see that many), spread evenly over its feeds, with the sizes of
# the farm's items. What must not grow with them is the cost of a poll: looking up which keys a
# feed has already seen, recording new ones and their outbox rows.

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.catalogue import config_data, load
from bench.farm import Farm, item_summary
from bench.measure import median, progress
from bench.poll import CHANGED, CrieurPoller, Cycle

SUMMARIES = 101  # distinct summaries to draw from: generating a million would dominate the seed


@dataclass(frozen=True, slots=True)
class GrowthResult:
    """Crieur's poll cycles before and after the seed; the database's size and entries."""

    feeds: int
    before: list[Cycle]
    after: list[Cycle]
    entries_before: int
    entries_after: int
    bytes_before: int
    bytes_after: int
    seed_seconds: float

    @property
    def cpu_before(self) -> float:
        return median([cycle.span.cpu for cycle in self.before])

    @property
    def cpu_after(self) -> float:
        return median([cycle.span.cpu for cycle in self.after])

    @property
    def wall_before(self) -> float:
        return median([cycle.span.wall for cycle in self.before])

    @property
    def wall_after(self) -> float:
        return median([cycle.span.wall for cycle in self.after])

    @property
    def bytes_per_entry(self) -> float:
        return (self.bytes_after - self.bytes_before) / (self.entries_after - self.entries_before)


def _rows(feed_ids: list[int], total: int) -> Iterator[tuple[object, ...]]:
    summaries = [item_summary(number, number * 7) for number in range(SUMMARIES)]
    now = time.time()
    for number in range(total):
        feed_id = feed_ids[number % len(feed_ids)]
        archived = number // len(feed_ids)
        home = f"https://archive{feed_id}.example.org"
        published = now - 86400.0 * 30 - archived * 3600.0
        yield (
            feed_id,
            f"{home}/?p=archive-{archived}",
            f"Compte rendu de la rencontre n° {archived} de l'organisation {feed_id}",
            f"{home}/archives/{archived}",
            published,
            summaries[number % SUMMARIES],
            published,
        )


def _size(database: Path) -> int:
    return sum(path.stat().st_size for path in (database, Path(f"{database}-wal")) if path.exists())


def seed_entries(database: Path, total: int) -> tuple[int, int, int, int]:
    """Add `total` seen entries in one transaction; return entries and bytes before and after."""
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        entries_before = int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
        bytes_before = _size(database)
        feed_ids = [int(row[0]) for row in conn.execute("SELECT id FROM feeds ORDER BY id")]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            """INSERT INTO entries (feed_id, key, title, link, published, summary_html,
                   first_seen) VALUES (?, ?, ?, ?, ?, ?, ?)""",
            _rows(feed_ids, total),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        entries_after = int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
        return entries_before, entries_after, bytes_before, _size(database)
    finally:
        conn.close()


async def bench_growth(
    farm: Farm,
    feeds: int,
    entries: int,
    repeats: int,
    workdir: Path,
    *,
    changed_share: float = CHANGED,
) -> GrowthResult:
    """Time Crieur's cycles on the poll benchmark's store of `feeds`, then seed it and again."""
    database = workdir / f"poll-{feeds}.sqlite3"
    urls = [farm.url(index) for index in range(feeds)]
    config = load(config_data(database, urls), workdir)
    changed = max(round(feeds * changed_share), 1)
    # Feeds of the poll benchmark's store that its cycles did not change, for a clean count.
    offset = feeds // 3
    rounds = 0

    async def cycles(label: str) -> list[Cycle]:
        nonlocal rounds
        measured: list[Cycle] = []
        async with CrieurPoller(config) as crieur:
            for _ in range(repeats):
                indexes = [(offset + rounds * changed + i) % feeds for i in range(changed)]
                rounds += 1
                await farm.publish(indexes)
                cycle = await crieur.cycle()
                if cycle.outcomes["new entries"] != changed:
                    raise RuntimeError(f"growth: expected {changed} new entries, got {cycle}")
                measured.append(cycle)
                progress(
                    f"growth {feeds} feeds, {label}: {cycle.span.wall:.2f} s wall, "
                    f"{cycle.span.cpu * 1000 / feeds:.3f} ms CPU per feed"
                )
        return measured

    before = await cycles("before the seed")
    progress(f"growth: adding {entries:,} seen entries in one transaction")
    started = time.perf_counter()
    entries_before, entries_after, bytes_before, bytes_after = await asyncio.to_thread(
        seed_entries, database, entries
    )
    seed_seconds = time.perf_counter() - started
    progress(
        f"growth: {entries_after:,} entries, {bytes_after / 1e6:.0f} MB, "
        f"seeded in {seed_seconds:.1f} s"
    )
    after = await cycles(f"{entries_after:,} entries")
    return GrowthResult(
        feeds,
        before,
        after,
        entries_before,
        entries_after,
        bytes_before,
        bytes_after,
        seed_seconds,
    )
