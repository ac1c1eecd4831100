"""The sync loop: its token, its retries, and the events it left out, read back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from nio import AsyncClient, MessageDirection, RoomMessagesResponse, SyncResponse

from ..errors import HomeserverUnavailable, RateLimited, SendError
from ..store import Store
from .answers import Answers
from .crypto import Crypto
from .events import Event, Sync, parse_sync, read_events
from .membership import Memberships
from .protocols import MatrixListener
from .requests import call, response_error
from .session import BACKOFF_START, KEY_SYNC_TOKEN, SYNC_RETRY_MAX, Session, retrying
from .timeline import Timeline
from .withheld import RecentWithheld, log_withheld

log = logging.getLogger(__name__)

SYNC_TIMEOUT_MS: Final = 30_000  # long-poll: the homeserver answers at once when events arrive
SYNC_MARGIN: Final = 30.0  # seconds on top of the long-poll before a sync counts as hung
FIRST_SYNC_TIMEOUT: Final = 300.0  # a full-state sync of many rooms takes a while
TIMELINE_LIMIT: Final = 50
# A sync cuts a busy room's timeline to TIMELINE_LIMIT events; the events left out are read
# back with /messages, in pages, up to a bound so that a flood cannot keep a sync going.
GAP_PAGE: Final = 100
MAX_GAP_EVENTS: Final = 500  # per room and sync; the older ones are skipped, with a warning

_NO_EVENTS: Final = {"not_types": ["*"]}


def sync_filter(timeline_limit: int) -> dict[str, Any]:
    """Leave out what the bot never reads: presence, typing, receipts, account data."""
    return {
        "presence": _NO_EVENTS,
        "account_data": _NO_EVENTS,
        "room": {
            "ephemeral": _NO_EVENTS,
            "account_data": _NO_EVENTS,
            "timeline": {"limit": timeline_limit},
        },
    }


class SyncLoop:
    """Syncs from the stored token; a token is stored once its sync's answers are settled."""

    def __init__(
        self,
        client: AsyncClient,
        store: Store,
        session: Session,
        crypto: Crypto,
        memberships: Memberships,
        timeline: Timeline,
        answers: Answers,
        listener: MatrixListener,
        *,
        clock: Callable[[], float],
        withheld: RecentWithheld,
    ) -> None:
        self._client = client
        self._store = store
        self._session = session
        self._crypto = crypto
        self._memberships = memberships
        self._timeline = timeline
        self._answers = answers
        self._listener = listener
        self._clock = clock
        self._withheld = withheld
        self._next_batch: str | None = None
        self.failing_since: float | None = None  # first failed sync of a run of failures
        self.last_ok: float | None = None  # epoch of the last processed sync, for health

    @property
    def ready(self) -> bool:
        """True once a first sync has been processed."""
        return self._next_batch is not None

    async def first_sync(self) -> dict[str, str | None]:
        """Sync once and process it, except its invites, which are returned."""
        token = await self._store.get_value(KEY_SYNC_TOKEN)
        sync: Sync | None = None
        if token is not None:
            try:
                # Full state: without nio's store, a new client knows no room until it sees
                # their state (sending or encrypting then fails with "no such room").
                sync = await retrying(
                    "first sync", lambda: self._sync(token, timeout_ms=0, full_state=True)
                )
            except SendError as error:
                log.warning("the stored sync token was refused (%s); starting from now", error)
        # Commands sent while the bot was stopped are new; a first start ever skips history.
        resumed = sync is not None
        if sync is None:
            sync = await retrying(
                "first sync", lambda: self._sync(None, timeout_ms=0, timeline_limit=1)
            )
        self._read_withheld(sync)
        await self._timeline.process(sync, commands=resumed, invites=False)
        await self._synced(sync)
        return sync.invited

    async def run(self) -> None:
        """Sync until cancelled, backing off while the homeserver is unreachable."""
        assert self._next_batch is not None, "first_sync() must run before run()"
        delay = 0.0
        while True:
            try:
                # After a failure, no long-poll: a quiet homeserver that is back would otherwise
                # hold the answer (and the news that it is back) for the whole timeout.
                timeout_ms = 0 if self.failing_since is not None else SYNC_TIMEOUT_MS
                sync = await self._sync(self._next_batch, timeout_ms=timeout_ms)
            except RateLimited as error:
                log.warning("sync rate limited; waiting %.1f s", error.retry_after)
                await asyncio.sleep(error.retry_after)
                continue
            except SendError as error:
                if self.failing_since is None:
                    self.failing_since = self._clock()
                delay = min(max(delay * 2, BACKOFF_START), SYNC_RETRY_MAX)
                log.warning("sync failed (%s); retrying in %.0f s", error, delay)
                await asyncio.sleep(delay)
                continue
            if delay:
                log.info("sync works again")
                self._listener.reconnected()
            delay = 0.0
            self.failing_since = None
            self._read_withheld(sync)
            await self._timeline.process(sync, commands=True)
            await self._synced(sync)

    async def _sync(
        self,
        since: str | None,
        *,
        timeout_ms: int,
        full_state: bool = False,
        timeline_limit: int = TIMELINE_LIMIT,
    ) -> Sync:
        """One /sync, with the events it left out read back; log in again once if need be."""

        async def request() -> object:
            return await call(
                "sync",
                self._client.sync(
                    timeout=timeout_ms,
                    sync_filter=sync_filter(timeline_limit),
                    since=since,
                    full_state=True if full_state else None,
                ),
                seconds=FIRST_SYNC_TIMEOUT if full_state else timeout_ms / 1000 + SYNC_MARGIN,
            )

        response = await request()
        if not isinstance(response, SyncResponse):
            error = response_error("sync", response)
            if error.errcode != "M_UNKNOWN_TOKEN" or not await self._session.relogin():
                raise error
            response = await request()
            if not isinstance(response, SyncResponse):
                raise response_error("sync", response)
        sync = parse_sync(response, self._session.user_id)
        if since is None:
            return sync  # a first sync ever: history is skipped anyway
        return await self._fill_gaps(sync, since)

    def _read_withheld(self, sync: Sync) -> None:
        """Log and count the room keys refused to the bot, before the events they leave unread."""
        # nio 0.26 has no class for m.room_key.withheld: it is one of its unknown to-device events.
        for key in log_withheld(sync.to_device):
            self._withheld.add(key)
            self._listener.withheld_room_key()

    async def _fill_gaps(self, sync: Sync, since: str) -> Sync:
        """Read back the events a sync left out of cut-short timelines since `since`.

        A failure to read them (HomeserverUnavailable, RateLimited) fails the whole sync,
        which is then retried from the same token: skipping the gap would lose its commands.
        """
        joined = dict(sync.joined)
        for room_id, room in sync.joined.items():
            if room.prev_batch is None or any(map(self._timeline.is_own_join, room.timeline)):
                continue  # not cut short, or cut in the history before the bot's join
            gap = await self._missed_events(room_id, room.prev_batch, since)
            if gap:
                joined[room_id] = replace(room, gap=gap)
        return replace(sync, joined=joined)

    async def _missed_events(self, room_id: str, start: str, end: str) -> tuple[Event, ...]:
        """The room's events from `start` back to `end` (a sync token), oldest first."""
        what = f"read the events missed in {room_id}"
        newest_first: list[Event] = []
        token = start
        while len(newest_first) < MAX_GAP_EVENTS:
            limit = min(GAP_PAGE, MAX_GAP_EVENTS - len(newest_first))
            response = await call(
                what,
                self._client.room_messages(
                    room_id, start=token, end=end, direction=MessageDirection.back, limit=limit
                ),
            )
            if not isinstance(response, RoomMessagesResponse):
                error = response_error(what, response)
                if isinstance(error, HomeserverUnavailable | RateLimited):
                    raise error
                # Refused for good (no permission to read back): retrying would not help.
                log.warning("cannot %s: %s", what, error)
                break
            # nio has replaced the encrypted events it could decrypt, as in a sync.
            page = read_events(response.chunk)
            for index, event in enumerate(page):
                if self._timeline.is_own_join(event):
                    # Older events are the history before the bot's join: not live.
                    newest_first.extend(page[: index + 1])
                    return tuple(reversed(newest_first))
            newest_first.extend(page)
            if not response.chunk or not response.end or response.end == token:
                return tuple(reversed(newest_first))
            token = response.end
        log.warning(
            "more than %d events arrived in %s since the last sync: only the newest %d "
            "are read; commands among the older ones are not answered",
            MAX_GAP_EVENTS,
            room_id,
            MAX_GAP_EVENTS,
        )
        return tuple(reversed(newest_first))

    async def _synced(self, sync: Sync) -> None:
        """Record a processed sync's token, so nothing in it runs again after a restart."""
        self._next_batch = sync.next_batch
        token = self._answers.processed(sync.next_batch)
        if token is not None:
            await self._store.set_value(KEY_SYNC_TOKEN, token)
        self.last_ok = self._clock()
        await self._crypto.maintain_keys()
        await self._memberships.retry_invites()
