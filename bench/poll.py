"""Poll cycle: N due feeds through Crieur's Scheduler and Pipeline, against a bare aiohttp loop."""

# Both sides send the same conditional GETs to the same URLs with the same concurrency.

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import aiohttp

from bench.catalogue import config_data, load
from bench.farm import Farm, FeedSnapshot, has_validators
from bench.measure import Span, measured, median, progress
from bot.config import Config
from bot.fetcher import Fetcher
from bot.metrics import Metrics
from bot.pipeline import Pipeline
from bot.scheduler import PollTiming, Scheduler, next_slot
from bot.store import FeedState, Store

CHANGED = 0.05  # the default share of feeds with a new item at each cycle
CYCLE_TIMEOUT = 900.0


@dataclass(frozen=True, slots=True)
class Cycle:
    """One poll of every feed: its wall and CPU time, and what each feed answered."""

    span: Span
    outcomes: Counter[str]


class CrieurPoller:
    """Crieur wired as `crieur run` wires it, minus Matrix; `cycle()` polls every feed once."""

    # The scheduler and the pipeline share a clock that jumps two intervals at each cycle, so
    # that every feed is due at once (as after a restart) and none falls due twice in a cycle.

    def __init__(self, config: Config) -> None:
        self.config = config
        self._now = 0.0
        self._interval = config.polling.interval
        self._store: Store | None = None
        self._fetcher: Fetcher | None = None
        self._pipeline: Pipeline | None = None

    @property
    def store(self) -> Store:
        """The bot's store (open between enter and exit)."""
        assert self._store is not None
        return self._store

    @property
    def feed_count(self) -> int:
        """How many feeds the configuration lists."""
        return sum(len(org.feeds) for org in self.config.organisations.values())

    def clock(self) -> float:
        """The bench's clock: frozen during a cycle."""
        return self._now

    async def __aenter__(self) -> Self:
        config = self.config
        self._store = await Store.open(config.database)
        await self._store.sync_feeds(
            (org.slug, url) for org in config.organisations.values() for url in org.feeds
        )
        self._now = max([time.time(), *(feed.next_poll for feed in await self._store.feeds())])
        self._fetcher = await Fetcher(config.polling).__aenter__()
        metrics = Metrics()
        self._pipeline = Pipeline(
            self._store,
            self._fetcher,
            config.organisations,
            config.polling,
            timing=PollTiming(config.organisations, config.polling),
            clock=self.clock,
            listeners=(metrics.observe_poll,),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fetcher is not None:
            await self._fetcher.close()
        if self._store is not None:
            await self._store.close()

    async def seed(self, snapshots: Sequence[FeedSnapshot], urls: Sequence[str]) -> float:
        """Record each feed as its first fetch would, from the farm's snapshots; return seconds."""
        # Fetching and parsing thousands of feeds once would take most of the bench's time; what
        # the store ends up holding is the same, written by the same Store.record_poll.
        store = self.store
        polling = self.config.polling
        index_of = {url: index for index, url in enumerate(urls)}
        started = time.perf_counter()
        for feed in await store.feeds():
            snapshot = snapshots[index_of[feed.config_url]]
            await store.record_poll(
                feed,
                self.config.organisations[feed.organisation].region,
                snapshot.entries,
                now=self._now,
                next_poll=next_slot(feed.config_url, self._now, self._interval),
                max_age=polling.max_age,
                max_posts=polling.max_posts_per_poll,
                etag=snapshot.etag,
                last_modified=snapshot.last_modified,
                body_hash=snapshot.sha256,
            )
        return time.perf_counter() - started

    async def cycle(self) -> Cycle:
        """Make every feed due, run the scheduler until each has been polled once."""
        pipeline = self._pipeline
        assert pipeline is not None
        self._now += 2 * self._interval
        expected = self.feed_count
        outcomes: Counter[str] = Counter()
        polled = 0
        finished = asyncio.Event()

        async def poll_one(feed: FeedState) -> None:
            nonlocal polled
            outcome = await pipeline.poll(feed)
            outcomes[outcome.status] += 1
            if outcome.record is not None:
                outcomes["new entries"] += len(outcome.record.new_entries)
            polled += 1
            if polled == expected:
                finished.set()

        scheduler = Scheduler(
            self.store, poll_one, concurrency=self.config.polling.concurrency, clock=self.clock
        )
        with measured() as span:
            task = asyncio.create_task(scheduler.run(), name="scheduler")
            done = asyncio.create_task(finished.wait(), name="cycle-done")
            try:
                async with asyncio.timeout(CYCLE_TIMEOUT):
                    # The scheduler never returns: it ends early only by failing.
                    await asyncio.wait([task, done], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in (task, done):
                    waiting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiting
        return Cycle(span, outcomes)


class BarePoller:
    """The baseline: aiohttp alone, conditional GETs with the last ETag, N workers, no storage."""

    def __init__(self, urls: Sequence[str], concurrency: int) -> None:
        self._urls = list(urls)
        self._concurrency = concurrency
        self._validators: dict[str, tuple[str | None, str | None]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=self._concurrency)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def _fetch(self, session: aiohttp.ClientSession, url: str) -> str:
        headers: dict[str, str] = {}
        etag, last_modified = self._validators.get(url, (None, None))
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        async with session.get(url, headers=headers) as response:
            if response.status == 304:
                return "304"
            response.raise_for_status()
            await response.read()
            self._validators[url] = (
                response.headers.get("ETag"),
                response.headers.get("Last-Modified"),
            )
            return "200"

    async def cycle(self) -> Cycle:
        """Fetch every URL once, `concurrency` at a time."""
        session = self._session
        assert session is not None
        outcomes: Counter[str] = Counter()
        pending = iter(self._urls)

        async def worker() -> None:
            for url in pending:  # shared: each URL goes to whichever worker is free
                outcomes[await self._fetch(session, url)] += 1

        with measured() as span:
            async with asyncio.TaskGroup() as group:
                for _ in range(self._concurrency):
                    group.create_task(worker())
        return Cycle(span, outcomes)


@dataclass(frozen=True, slots=True)
class PollResult:
    """The measured cycles of N feeds; the properties are medians."""

    feeds: int
    changed: int
    crieur: list[Cycle]
    bare: list[Cycle]
    seed_seconds: float  # recording every feed's first fetch in Crieur's store
    crieur_quiet: list[Cycle]  # cycles in which no feed changed
    bare_quiet: list[Cycle]
    crieur_delayed: list[Cycle]  # cycles with the farm's stand-in for network delay
    bare_delayed: list[Cycle]
    body_bytes: float  # mean size of a feed's body

    @property
    def crieur_wall(self) -> float:
        return median([cycle.span.wall for cycle in self.crieur])

    @property
    def bare_wall(self) -> float:
        return median([cycle.span.wall for cycle in self.bare])

    @property
    def crieur_cpu(self) -> float:
        return median([cycle.span.cpu for cycle in self.crieur])

    @property
    def bare_cpu(self) -> float:
        return median([cycle.span.cpu for cycle in self.bare])

    @property
    def crieur_cpu_per_feed(self) -> float:
        return self.crieur_cpu / self.feeds

    @property
    def bare_cpu_per_feed(self) -> float:
        return self.bare_cpu / self.feeds

    @property
    def crieur_cpu_per_unchanged_feed(self) -> float:
        return median([cycle.span.cpu for cycle in self.crieur_quiet]) / self.feeds

    @property
    def bare_cpu_per_unchanged_feed(self) -> float:
        return median([cycle.span.cpu for cycle in self.bare_quiet]) / self.feeds


def _check(name: str, cycle: Cycle, expected: dict[str, int]) -> None:
    """Refuse a cycle in which feeds did not answer as planned: its timing would mean nothing."""
    if dict(cycle.outcomes) != {key: n for key, n in expected.items() if n}:
        raise RuntimeError(f"{name}: expected {expected}, got {dict(cycle.outcomes)}")


def _expected(feeds: int, changed: Sequence[int]) -> tuple[dict[str, int], dict[str, int]]:
    """What each side should see in a cycle in which `changed` feeds have a new item."""
    validated = sum(1 for index in range(feeds) if has_validators(index))
    changed_validated = sum(1 for index in changed if has_validators(index))
    crieur = {
        "not_modified": validated - changed_validated,
        "unchanged": feeds - validated - (len(changed) - changed_validated),
        "new": len(changed),
        "new entries": len(changed),  # one per changed feed: the seeded store matches the farm
    }
    bare = {"304": validated - changed_validated, "200": feeds - validated + changed_validated}
    return crieur, bare


async def bench_poll(
    farm: Farm,
    feeds: int,
    repeats: int,
    workdir: Path,
    *,
    changed_share: float = CHANGED,
    delay: float = 0.0,
) -> PollResult:
    """Seed a store with `feeds` feeds, then time cycles of Crieur and of the baseline.

    `repeats` cycles with `changed_share` of the feeds changed, then `repeats` with none; with a
    `delay`, `repeats` more changed cycles with the farm waiting that long before each answer.
    """
    urls = [farm.url(index) for index in range(feeds)]
    changed = max(round(feeds * changed_share), 1)
    config = load(config_data(workdir / f"poll-{feeds}.sqlite3", urls), workdir)
    concurrency = baseline_concurrency(config)
    rounds = 0

    async def measure_round(
        crieur: CrieurPoller, bare: BarePoller, label: str, count: int
    ) -> tuple[Cycle, Cycle]:
        nonlocal rounds
        indexes = [(rounds * changed + i) % feeds for i in range(count)]
        if indexes:
            await farm.publish(indexes)
        crieur_expected, bare_expected = _expected(feeds, indexes)
        cycles: dict[str, Cycle] = {}
        # Alternate who goes first, so a drift in the machine's load favours neither.
        for who in ("crieur", "bare") if rounds % 2 == 0 else ("bare", "crieur"):
            if who == "crieur":
                cycle = cycles[who] = await crieur.cycle()
                _check(who, cycle, crieur_expected)
            else:
                cycle = cycles[who] = await bare.cycle()
                _check(who, cycle, bare_expected)
            progress(
                f"poll {feeds}{label}: {who:6} {cycle.span.wall:6.2f} s wall, "
                f"{cycle.span.cpu * 1000 / feeds:.3f} ms CPU per feed"
            )
        rounds += 1
        return cycles["crieur"], cycles["bare"]

    async with CrieurPoller(config) as crieur, BarePoller(urls, concurrency) as bare:
        progress(f"poll {feeds}: recording every feed's first fetch in the store")
        snapshots = await farm.snapshots(feeds)
        seed_seconds = await crieur.seed(snapshots, urls)
        _check("bare seed", await bare.cycle(), {"200": feeds})  # learns the validators
        mixed = [await measure_round(crieur, bare, "", changed) for _ in range(repeats)]
        # Then cycles in which nothing changed: what an unchanged feed costs on its own.
        quiet = [await measure_round(crieur, bare, ", none changed", 0) for _ in range(repeats)]
        delayed: list[tuple[Cycle, Cycle]] = []
        if delay > 0:
            await farm.set_delay(delay)
            try:
                label = f", {delay * 1000:.0f} ms delay"
                delayed = [
                    await measure_round(crieur, bare, label, changed) for _ in range(repeats)
                ]
            finally:
                await farm.set_delay(0.0)
    return PollResult(
        feeds=feeds,
        changed=changed,
        crieur=[c for c, _ in mixed],
        bare=[b for _, b in mixed],
        seed_seconds=seed_seconds,
        crieur_quiet=[c for c, _ in quiet],
        bare_quiet=[b for _, b in quiet],
        crieur_delayed=[c for c, _ in delayed],
        bare_delayed=[b for _, b in delayed],
        body_bytes=sum(snapshot.size for snapshot in snapshots) / len(snapshots),
    )


def baseline_concurrency(config: Config) -> int:
    """The baseline's concurrency: the bot's global limit (its per-host limit is as high)."""
    return min(config.polling.concurrency, config.polling.per_host)
