"""One poll of one feed: fetch → parse → record new entries and their outbox rows."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal, Protocol

from . import calendar
from .config import Organisation, PollingConfig
from .errors import FetchError, ParseError, StoreError, bug_summary
from .event_posting import CalendarSettings
from .model import FetchResult
from .parser import parse
from .redact import mask_urls
from .site_feeds import GONE_POLLS, Finder, find_again
from .store import FeedState, PollRecord, Store

log = logging.getLogger(__name__)

GONE_STATUSES = frozenset({404, 410})  # a feed no longer where it was

Status = Literal["new", "seeded", "unchanged", "not_modified", "error"]


class Timing(Protocol):
    """When a feed is polled next; the scheduler's policy."""

    def after_success(self, feed: FeedState, now: float) -> float: ...

    def after_failure(self, feed: FeedState, now: float, retry_after: float | None) -> float: ...


class FeedFetcher(Protocol):
    """What the pipeline needs from the fetcher."""

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult: ...


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll of one feed did."""

    feed: FeedState
    status: Status
    record: PollRecord | None = None
    error: str | None = None
    duration: float = 0.0
    replaced_by: str | None = None  # the feed found again on its organisation's site


PollListener = Callable[[PollOutcome], None]


class Pipeline:
    """Wires fetcher, parser and store for one feed at a time."""

    def __init__(
        self,
        store: Store,
        fetcher: FeedFetcher,
        organisations: Mapping[str, Organisation],
        polling: PollingConfig,
        *,
        timing: Timing,
        clock: Callable[[], float] = time.time,
        listeners: tuple[PollListener, ...] = (),
        calendars: CalendarSettings | None = None,
        finder: Finder | None = None,
    ) -> None:
        self._store = store
        self._calendars = calendars or CalendarSettings()
        self._fetcher = fetcher
        self._organisations = organisations
        self._polling = polling
        self._timing = timing
        self._clock = clock
        self._listeners = listeners
        self._finder = finder  # looks on an organisation's site for a feed that is gone

    async def poll(self, feed: FeedState) -> PollOutcome:
        """Poll one feed once and record the outcome."""
        started = time.monotonic()
        try:
            outcome = await self._poll(feed)
        except StoreError:
            raise  # the database cannot be used: the scheduler stops, run_bot says so
        except Exception as error:
            # A bug rather than the feed's fault, but a failure all the same: it counts and
            # backs off, so that `!status` shows the feed failing instead of healthy.
            log.error("unexpected error while polling %s", feed.url, exc_info=True)
            outcome = await self._failed(feed, bug_summary(error), None)
        outcome = replace(outcome, duration=time.monotonic() - started)
        for listener in self._listeners:
            listener(outcome)
        return outcome

    async def _poll(self, feed: FeedState) -> PollOutcome:
        region = feed.region  # a region's calendar; a room source belongs to no region
        if not feed.room_source and not region:
            organisation = self._organisations.get(feed.organisation)
            if organisation is None:
                # The configuration dropped it while a poll was queued.
                return PollOutcome(feed, "error", error="organisation no longer configured")
            region = organisation.region
        try:
            result = await self._fetcher.fetch(
                feed.url, etag=feed.etag, last_modified=feed.last_modified
            )
        except FetchError as error:
            gone = error.status in GONE_STATUSES
            return await self._failed(feed, error.message, error.retry_after, gone=gone)
        now = self._clock()
        next_poll = self._timing.after_success(feed, now)
        new_url = result.permanent_url
        if new_url:
            log.info("feed %s moved permanently to %s", feed.url, new_url)
        if result.body is None:
            await self._store.record_not_modified(
                feed.id, now=now, next_poll=next_poll, etag=result.etag,
                last_modified=result.last_modified, new_url=new_url,
            )  # fmt: skip
            return await self._unchanged(feed, region, now, "not_modified")
        body_hash = hashlib.sha256(result.body).hexdigest()
        if feed.initialised and body_hash == feed.body_hash:
            await self._store.record_not_modified(
                feed.id, now=now, next_poll=next_poll, etag=result.etag,
                last_modified=result.last_modified, new_url=new_url,
            )  # fmt: skip
            return await self._unchanged(feed, region, now, "unchanged")
        if feed.kind == "calendar":
            return await self._record_calendar(
                feed, region, result, now=now, next_poll=next_poll, body_hash=body_hash
            )
        try:
            # feedparser is CPU-bound: keep it off the event loop.
            entries = await asyncio.to_thread(
                parse, result.body, feed_url=new_url or feed.url, content_type=result.content_type
            )
        except ParseError as error:
            return await self._failed(feed, str(error), None, gone=True)
        record = await self._store.record_poll(
            feed,
            region,
            entries,
            now=now,
            next_poll=next_poll,
            max_age=self._polling.max_age,
            max_posts=self._polling.max_posts_per_poll,
            etag=result.etag,
            last_modified=result.last_modified,
            body_hash=body_hash,
            new_url=new_url,
        )
        if record.seeded:
            log.info(
                "feed %s: first fetch, %d entries recorded as seen, none posted",
                feed.url,
                len(record.new_entries),
            )
            return PollOutcome(feed, "seeded", record)
        if record.new_entries:
            log.info(
                "feed %s: %d new entries, %d queued for %d deliveries",
                feed.url,
                len(record.new_entries),
                len(record.posted),
                record.deliveries,
            )
            return PollOutcome(feed, "new", record)
        return PollOutcome(feed, "unchanged", record)

    async def _unchanged(
        self, feed: FeedState, region: str, now: float, status: Status
    ) -> PollOutcome:
        """End a poll that read nothing new; a calendar's waiting events may have come due."""
        if feed.kind != "calendar" or not feed.initialised:
            return PollOutcome(feed, status)
        deliveries = await self._store.announce_due_events(
            feed, region, now=now, within=self._calendars.announce_within,
            max_posts=self._polling.max_posts_per_poll,
        )  # fmt: skip
        record = PollRecord((), False, (), 0, 0, deliveries)
        return PollOutcome(feed, status, record if deliveries else None)

    async def _record_calendar(
        self, feed: FeedState, region: str, result: FetchResult, *,
        now: float, next_poll: float, body_hash: str,
    ) -> PollOutcome:  # fmt: skip
        """Parse a calendar's body and record its events; announce those that are due."""
        zone = self._calendars.zone(region)
        moment = datetime.fromtimestamp(now, UTC)
        body = result.body or b""
        try:
            # icalendar is CPU-bound: keep it off the event loop.
            events = await asyncio.to_thread(calendar.parse, body, now=moment, zone=zone)
        except ParseError as error:
            return await self._failed(feed, str(error), None)
        record = await self._store.record_calendar(
            feed, region, events, zone=zone, now=now, next_poll=next_poll,
            within=self._calendars.announce_within, max_posts=self._polling.max_posts_per_poll,
            etag=result.etag, last_modified=result.last_modified, body_hash=body_hash,
            new_url=result.permanent_url,
        )  # fmt: skip
        if record.seeded:
            log.info(
                "calendar %s: first fetch, %d events recorded as seen, none announced",
                feed.url,
                record.new_events,
            )
            return PollOutcome(feed, "seeded", record)
        if record.new_events or record.deliveries:
            log.info(
                "calendar %s: %d new events, %d announced in %d deliveries",
                feed.url,
                record.new_events,
                record.announced,
                record.deliveries,
            )
            return PollOutcome(feed, "new", record)
        return PollOutcome(feed, "unchanged", record)

    async def _failed(
        self, feed: FeedState, message: str, retry_after: float | None, *, gone: bool = False
    ) -> PollOutcome:
        message = mask_urls(message)  # kept in last_error and shown by !status
        now = self._clock()
        next_poll = self._timing.after_failure(feed, now, retry_after)
        errors = await self._store.record_failure(
            feed.id, now=now, error=message, next_poll=next_poll
        )
        log.warning(
            "feed %s (%s) failed %d time(s) in a row: %s; next try in %.0f s",
            feed.url,
            feed.organisation or "room source",
            errors,
            message,
            next_poll - now,
        )
        if gone and errors % GONE_POLLS == 0:
            replaced_by = await self._find_again(feed, now)
            if replaced_by is not None:
                return PollOutcome(feed, "error", error=message, replaced_by=replaced_by)
        return PollOutcome(feed, "error", error=message)

    async def _find_again(self, feed: FeedState, now: float) -> str | None:
        """Look on the organisation's site for the feed that keeps answering 404/410 or no feed."""
        organisation = self._organisations.get(feed.organisation)
        if self._finder is None or feed.room_source or feed.kind != "feed" or organisation is None:
            return None
        others = {f.url for f in await self._store.feeds([feed.organisation]) if f.id != feed.id}
        url = await find_again(self._finder, organisation, feed.url, others)
        if url is None:
            return None
        await self._store.replace_feed_url(feed.id, url, next_poll=now)
        log.warning(
            "feed %s (%s) is gone; %s found on %s is polled instead",
            feed.url, feed.organisation, url, organisation.url,
        )  # fmt: skip
        return url
