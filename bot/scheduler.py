"""When each feed is polled: spread slots, backoff on failure, bounded concurrency."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from .config import Organisation, PollingConfig
from .errors import StoreError, bug_summary
from .store import FeedState, Store

log = logging.getLogger(__name__)

MAX_BACKOFF = 24 * 3600.0
IDLE_WAKE = 60.0  # re-read the schedule at least this often (feeds may be added or moved)
POLLS_PER_FETCH = 2  # polls in progress per fetch slot

_JITTER_MIN, _JITTER_MAX = 0.8, 1.2  # of a backoff delay
_SAME_TIME = 1.0  # seconds: a stored poll time this close to the computed one is that one

Clock = Callable[[], float]


@functools.lru_cache(maxsize=65536)  # computed at every poll of every feed
def spread(url: str) -> float:
    """Return a stable fraction in [0, 1) for a feed, so feeds spread over their interval."""
    digest = hashlib.sha256(url.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def next_slot(url: str, now: float, interval: float) -> float:
    """Return the feed's next poll time at least half an interval from now, on its own slot."""
    offset = spread(url) * interval
    earliest = now + interval / 2
    slots_passed = (earliest - offset) // interval + 1
    return offset + slots_passed * interval


def backoff_delay(
    errors: int,
    interval: float,
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Return how long to wait after `errors` consecutive failures (exponential, jittered)."""
    exponent = min(max(errors - 1, 0), 32)
    base = min(interval * float(2**exponent), MAX_BACKOFF)
    jitter = (rng or random).uniform(_JITTER_MIN, _JITTER_MAX)
    delay = min(base * jitter, MAX_BACKOFF)
    if retry_after is not None:
        # A server's explicit Retry-After wins over our guess, within the cap.
        delay = max(delay, min(retry_after, MAX_BACKOFF))
    return delay


class PollTiming:
    """When a feed is polled next: on its own slot after a success, later after a failure."""

    def __init__(
        self,
        organisations: Mapping[str, Organisation],
        polling: PollingConfig,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._organisations = organisations
        self._polling = polling
        self._rng = rng

    def interval(self, feed: FeedState) -> float:
        """Return how often this feed is polled."""
        organisation = self._organisations.get(feed.organisation)
        if organisation is not None and organisation.interval is not None:
            return organisation.interval
        return self._polling.interval

    def after_success(self, feed: FeedState, now: float) -> float:
        """Return when to poll a feed that answered at `now`."""
        return next_slot(feed.config_url, now, self.interval(feed))

    def after_failure(self, feed: FeedState, now: float, retry_after: float | None) -> float:
        """Return when to poll again a feed whose poll at `now` failed once more."""
        errors = feed.error_count + 1
        delay = backoff_delay(errors, self.interval(feed), retry_after=retry_after, rng=self._rng)
        return now + delay

    def refitted(self, feed: FeedState) -> float | None:
        """Return when a queued feed is due under the intervals configured now, if that moved.

        A feed that answered last is on its slot of its interval, computed from its last
        poll: the same slot again unless the interval changed. A failing feed waits no longer
        than the longest backoff of its interval now (a Retry-After longer than that is
        shortened once, and honoured again at the next answer).
        """
        if feed.last_attempt is None:
            return None  # never polled: due at once already
        interval = self.interval(feed)
        if feed.error_count == 0:
            when = next_slot(feed.config_url, feed.last_attempt, interval)
            return when if abs(when - feed.next_poll) > _SAME_TIME else None
        exponent = min(feed.error_count - 1, 32)
        longest = min(interval * float(2**exponent) * _JITTER_MAX, MAX_BACKOFF)
        latest = feed.last_attempt + longest
        return latest if feed.next_poll > latest + _SAME_TIME else None


async def fit_to_intervals(store: Store, timing: PollTiming) -> int:
    """Move the queued polls that the configured intervals no longer call for; say how many.

    Run at start: the next poll of every feed was computed with the intervals of the
    configuration in force then, and an interval made shorter must not wait out the old one.
    """
    moved = 0
    for feed in await store.feeds():
        when = timing.refitted(feed)
        if when is not None:
            await store.schedule_feed(feed.id, when)
            moved += 1
    if moved:
        log.info("%d feeds rescheduled for the intervals now configured", moved)
    return moved


PollOne = Callable[[FeedState], Awaitable[object]]


@functools.lru_cache(maxsize=65536)  # looked up at every poll of every feed
def host_of(url: str) -> str:
    """Return the host name a feed URL is fetched from, as the per-host limit counts it."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:  # the fetcher reports the URL; here it only needs a name
        return ""


class Scheduler:
    """Polls due feeds forever, at most `concurrency` at a time and `per_host` per host."""

    def __init__(
        self,
        store: Store,
        poll_one: PollOne,
        *,
        concurrency: int,
        per_host: int | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._poll_one = poll_one
        self._clock = clock
        # Twice the fetch concurrency: a poll also parses and records, and while some do, as
        # many others can fetch. The fetcher itself keeps HTTP requests to `concurrency`.
        self._slots = asyncio.Semaphore(max(concurrency, 1) * POLLS_PER_FETCH)
        # A poll starts only when its host has room: one waiting inside the fetcher for a
        # busy host would hold a slot that feeds of every other host could use.
        self._per_host = per_host
        self._host_polls: Counter[str] = Counter()
        self._waiting: dict[str, deque[FeedState]] = {}  # due feeds of busy hosts, in order
        self._in_flight: set[int] = set()  # polling or waiting for their host
        self._finished = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self.last_tick: float | None = None  # for health checks

    async def run(self) -> None:
        """Poll feeds as they fall due until cancelled."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            while True:
                self.last_tick = self._clock()
                self._finished.clear()
                # Filtered now, not as each slot frees: a feed in flight at this read may
                # finish while the loop waits for a slot, and its row here is stale by then.
                read_at = self._clock()
                due = await self._store.feeds_due(read_at)
                for feed in [feed for feed in due if feed.id not in self._in_flight]:
                    host = host_of(feed.url)
                    self._in_flight.add(feed.id)
                    if self._host_full(host):
                        self._waiting.setdefault(host, deque()).append(feed)
                        continue
                    # A task only once a slot is free: after a restart thousands of feeds
                    # are due, and a waiting task apiece would cost memory and wake-ups.
                    await self._slots.acquire()
                    self.last_tick = self._clock()  # waiting for slots is working, for health
                    if self._host_full(host):  # a finished poll gave its slot to this host
                        self._slots.release()
                        self._waiting.setdefault(host, deque()).append(feed)
                        continue
                    self._start(feed, host)
                await self._sleep_until_due(read_at)

    def _host_full(self, host: str) -> bool:
        return self._per_host is not None and self._host_polls[host] >= self._per_host

    def _start(self, feed: FeedState, host: str) -> None:
        """Poll a feed in a slot already taken for it."""
        assert self._group is not None  # only run() starts polls
        self._host_polls[host] += 1
        self._group.create_task(self._guarded(feed, host), name=f"poll-{feed.id}")

    async def _sleep_until_due(self, read_at: float) -> None:
        # Feeds still in flight are due already; the last one to finish sets `_finished`.
        # From `read_at`: feeds that fell due while the loop waited for slots are due now.
        next_time = await self._store.next_poll_time(after=read_at)
        delay = IDLE_WAKE if next_time is None else next_time - self._clock()
        delay = min(max(delay, 0.05), IDLE_WAKE)
        try:
            async with asyncio.timeout(delay):
                await self._finished.wait()
        except TimeoutError:
            pass

    async def _guarded(self, feed: FeedState, host: str) -> None:
        """Poll one feed in the slot `run` took for it, and pass the slot on."""
        stopping = True  # until the poll ends: cancelled, or the database gone
        try:
            await self._poll_one(feed)
            stopping = False
        except StoreError:
            raise  # the database cannot be used: nothing to try again later; run_bot says so
        except Exception as error:
            # A bug in one poll must not stop the others. It counts as the feed's failure
            # (so `!status` does not call the feed healthy) and backs off like one.
            log.exception("unexpected error while polling %s", feed.url)
            now = self._clock()
            retry = backoff_delay(feed.error_count + 1, IDLE_WAKE * 5)
            await self._store.record_failure(
                feed.id, now=now, error=bug_summary(error), next_poll=now + retry
            )
            stopping = False
        finally:
            self._in_flight.discard(feed.id)
            self._host_polls[host] -= 1
            if not self._host_polls[host]:
                del self._host_polls[host]
            if stopping:  # a scheduler that stops starts nothing more
                self._slots.release()
            else:
                self._next_of(host)
            # Waking after every poll would re-read the whole due list (in-flight feeds
            # included) once per feed: quadratic after a restart. A polled feed is next due
            # half an interval later at the earliest, so the timed sleep covers the rest.
            if not self._in_flight:
                self._finished.set()

    def _next_of(self, host: str) -> None:
        """Hand a finished poll's slot to the next feed waiting for the same host, if any."""
        waiting = self._waiting.get(host)
        if not waiting:
            self._slots.release()
            return
        feed = waiting.popleft()
        if not waiting:
            del self._waiting[host]
        self._start(feed, host)
