"""Drains the outbox oldest first: every message reaches its room once, nothing is dropped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from .catalogue import Catalogue
from .config import Language, Organisation, Region
from .errors import HomeserverUnavailable, RateLimited, RoomUnavailable, SendError
from .model import Delivery
from .render import render_digest, render_entry, source_as_organisation
from .render_event import Change, EventSource, render_event
from .store import Store

log = logging.getLogger(__name__)

OUTAGE_BACKOFF_MAX = 60.0  # seconds between tries while the homeserver is down
ROW_BACKOFF_MAX = 3600.0  # a message the homeserver rejects is retried at most hourly
PAUSE_RETRY = 3600.0  # paused rooms are tried again this often
OUTAGE_TRIES = 3  # tries of one message before checking whether other rooms get through
IDLE_WAKE = 30.0


class Sender(Protocol):
    """Sends one message; raises a SendError subclass when the homeserver did not take it."""

    async def send_notice(self, room_id: str, content: dict[str, Any], txn_id: str) -> str: ...


class DispatcherSignals:
    """Wake-ups for the dispatcher, made before it so that who sends them needs no dispatcher."""

    def __init__(self) -> None:
        self.new_rows = asyncio.Event()
        self.back = asyncio.Event()

    def wake(self) -> None:
        """Tell the dispatcher that new rows may be waiting."""
        self.new_rows.set()

    def homeserver_back(self) -> None:
        """Tell the dispatcher that the homeserver answers again: end an outage's wait now."""
        self.back.set()


Render = Callable[[Delivery], dict[str, Any]]
Result = Literal["sent", "held", "failing"]  # held: paused or deferred; failing: server errors


class DeliveryRenderer:
    """Turns outbox rows into Matrix content, naming organisations as the catalogue does."""

    def __init__(self, catalogue: Catalogue, language: Language) -> None:
        self._catalogue = catalogue
        self._language = language

    def __call__(self, delivery: Delivery) -> dict[str, Any]:
        if delivery.calendar is not None:
            return self._calendar_message(delivery, delivery.calendar)
        organisation = self._catalogue.find_organisation(delivery.organisation)
        if delivery.source is not None:
            organisation = source_as_organisation(delivery.source)
            region = Region("", "")
        elif organisation is None:
            # Removed from the configuration after the entry was queued: still deliver it.
            organisation = Organisation(delivery.organisation, delivery.organisation, "")
            region = Region("", "")
        else:
            region = self._catalogue.region_of(organisation)
        if delivery.entry is None:
            return render_digest(organisation, delivery.digest_count, self._language)
        zone = self._catalogue.zone_of(region if region.slug else None)
        return render_entry(delivery.entry, organisation, region, self._language, zone=zone)

    def _calendar_message(self, delivery: Delivery, calendar: str) -> dict[str, Any]:
        """Render an event, or a calendar's "… and N more", in the zone of its region."""
        organisation = self._catalogue.get_organisation(delivery.organisation)
        slug = organisation.region if organisation is not None else delivery.region
        region = self._catalogue.get_region(slug) or Region(slug, slug)
        site = (organisation.url if organisation is not None else None) or site_of(calendar)
        if delivery.event is None:
            named = organisation or Organisation(region.slug, region.name, region.slug)
            return render_digest(replace(named, url=site), delivery.digest_count, self._language)
        source = EventSource(
            region.name, organisation.name if organisation is not None else None, site
        )
        zone = self._catalogue.zone_of(region if region.slug else None)
        change: Change = "new"
        if delivery.change in ("changed", "cancelled"):
            change = "changed" if delivery.change == "changed" else "cancelled"
        content = render_event(delivery.event, source, self._language, zone=zone, change=change)
        if delivery.reply_to is not None:
            # Where the announcement was delivered, the change answers it.
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": delivery.reply_to}}
        return content


def site_of(url: str) -> str | None:
    """Return the site a calendar's URL lives on: what an event without URL links to."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/" if parts.scheme and parts.netloc else None


class Dispatcher:
    """Sends due outbox rows in order, waiting out rate limits and outages."""

    def __init__(
        self,
        store: Store,
        sender: Sender,
        render: Render,
        *,
        clock: Callable[[], float] = time.time,
        listeners: Mapping[str, Callable[[Delivery], None]] | None = None,
        signals: DispatcherSignals | None = None,
        outage_wait: float = 1.0,
    ) -> None:
        self._store = store
        self._sender = sender
        self._render = render
        self._clock = clock
        # Set by others (polls, joins, the sync loop) through the signals, never by a call here.
        signals = signals or DispatcherSignals()
        self._wake = signals.new_rows
        self._back = signals.back
        self._listeners = dict(listeners or {})
        self._outage_wait = outage_wait  # first wait after a server error; doubles up to a minute
        self._outage_delay = 0.0
        self._last_error = ""
        self._last_unpause = clock()
        self._suspects: set[str] = set()  # rooms that failed, then others got through
        self.last_success: float | None = None  # for health checks

    async def run(self) -> None:
        """Drain the outbox until cancelled, sleeping while it is empty."""
        while True:
            self._wake.clear()
            await self.drain()
            await self._unpause_if_due()
            next_time = await self._store.next_delivery_time()
            delay = IDLE_WAKE if next_time is None else next_time - self._clock()
            if delay > 0:
                try:
                    async with asyncio.timeout(min(delay, IDLE_WAKE)):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def drain(self) -> int:
        """Send every due row now, oldest first; return how many were sent."""
        sent = 0
        while rows := await self._store.pending_deliveries(self._clock()):
            progressed = False
            failing: dict[str, str] = {}  # room → the server error its oldest message meets
            sent_before: dict[str, int] = {}  # room → messages sent before it failed
            for delivery in rows:
                if delivery.room_id in failing:
                    continue  # its older message has not gone through: keep the room's order
                result = await self._deliver(delivery)
                if result == "sent":
                    sent += 1
                    progressed = True
                    self._suspects.discard(delivery.room_id)
                elif result == "failing":
                    failing[delivery.room_id] = self._last_error
                    sent_before[delivery.room_id] = sent
            # Other rooms getting through after a room failed may mean that its errors are its
            # own, or that an outage ended meanwhile: suspect it, and try it again at once.
            # Failing again while others still get through after it, the errors are its own:
            # pause it (kept, shown in !status, tried again later) rather than block everyone.
            # (Rooms sent to before a failure prove nothing: an outage may have begun then.)
            for room_id, error in failing.items():
                if sent == sent_before[room_id]:
                    continue  # nobody got through after it: an outage, not the room
                if room_id not in self._suspects:
                    self._suspects.add(room_id)
                    continue
                self._suspects.discard(room_id)
                log.warning("pausing room %s: the homeserver keeps failing: %s", room_id, error)
                await self._store.pause_room(
                    room_id, now=self._clock(), reason=f"server errors: {error}"
                )
            if not progressed:  # every row left is paused, deferred, or waits for the server
                break
        return sent

    async def _deliver(self, delivery: Delivery) -> Result:
        """Try one row until it is sent, held back, or keeps meeting server errors."""
        state = await self._store.room_state(delivery.room_id)
        if state is not None:  # paused or left while this batch was in flight
            return "held"
        try:
            content = self._render(delivery)
        except Exception:
            # A bug met by one entry must not stop every room's delivery (nor loop at start).
            log.exception("cannot render message %s for %s", delivery.txn_id, delivery.room_id)
            await self._store.defer_delivery(
                delivery.id, next_try=self._clock() + ROW_BACKOFF_MAX, error="render failed"
            )
            return "held"
        tries = 0
        while True:
            try:
                event_id = await self._sender.send_notice(
                    delivery.room_id, content, delivery.txn_id
                )
            except RateLimited as error:
                log.info("rate limited by the homeserver; waiting %.1f s", error.retry_after)
                await asyncio.sleep(error.retry_after)
                continue
            except HomeserverUnavailable as error:
                self._outage_delay = min(
                    max(self._outage_delay * 2, self._outage_wait), OUTAGE_BACKOFF_MAX
                )
                log.warning(
                    "homeserver unavailable (%s); retrying in %.0f s", error, self._outage_delay
                )
                # The sync loop notices the end of an outage first: it cuts this wait short.
                # Cleared after the wait, not before: a return signalled just before the wait
                # began must not be lost.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._outage_delay):
                        await self._back.wait()
                self._back.clear()
                tries += 1
                if tries >= OUTAGE_TRIES:
                    self._last_error = str(error)
                    return "failing"
                continue
            except RoomUnavailable as error:
                log.warning("pausing room %s: %s", delivery.room_id, error)
                await self._store.pause_room(delivery.room_id, now=self._clock(), reason=str(error))
                return "held"
            except SendError as error:
                delay = min(60.0 * 2 ** min(delivery.attempts, 10), ROW_BACKOFF_MAX)
                log.error(
                    "homeserver refused message %s for %s (%s); retrying in %.0f s",
                    delivery.txn_id,
                    delivery.room_id,
                    error,
                    delay,
                )
                await self._store.defer_delivery(
                    delivery.id, next_try=self._clock() + delay, error=str(error)
                )
                return "held"
            break
        self._outage_delay = 0.0
        self.last_success = self._clock()
        await self._store.mark_sent(delivery.id, now=self._clock(), event_id=event_id)
        item = delivery.entry or delivery.event
        what = f"'{item.title}'" if item is not None else f"digest of {delivery.digest_count}"
        log.info("posted %s to %s", what, delivery.room_id)
        for listener in self._listeners.values():
            listener(delivery)
        return "sent"

    async def _unpause_if_due(self) -> None:
        if self._clock() - self._last_unpause < PAUSE_RETRY:
            return
        self._last_unpause = self._clock()
        for room in await self._store.paused_rooms():
            # Power levels and memberships change: give paused rooms another chance.
            await self._store.resume_room(room.room_id)
