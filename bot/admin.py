"""matrix.admin_room: the operators are told, once each, what needs them.

A source failing for longer than `polling.report_after`, its recovery, a room the bot had to
leave, a replaced cross-signing identity. Which failures were reported is kept in the store, so
a restart neither repeats a report nor forgets to say a source recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from .catalogue import Catalogue
from .config import Language
from .dates import format_date
from .dispatcher import Sender
from .errors import SendError
from .pipeline import PollOutcome
from .redact import mask_url, mask_urls
from .store import FeedState, Store
from .zones import Zone

log = logging.getLogger(__name__)

KEY_REPORTS: Final = "admin.reports"  # JSON: feeds seen failing (since when), those reported
CHECK_EVERY_MAX: Final = 60.0  # seconds between checks when no poll fails
MIN_GAP: Final = 1.0  # seconds between checks, however many polls fail meanwhile
MAX_ERROR_SHOWN: Final = 200  # characters of a failure's reason
MAX_EVENTS: Final = 50  # events kept for a room that cannot be reached (or is not configured)

_FR: Final[Mapping[str, str]] = MappingProxyType(
    {
        "admin.failing": "⚠ La source {name} ({url}) est en échec depuis le {since} : {error}",
        "admin.recovered": "✅ La source {name} ({url}) fonctionne de nouveau.",
        "admin.replaced": "🔁 Le flux de {name} ({old}) ne répond plus ; celui trouvé sur son "
        "site, {new}, est suivi à la place.",
        "admin.room_left": "Crieur n'est plus dans le salon {room} ({reason}).",
        "admin.identity_replaced": "⚠ L'identité de signature croisée de Crieur a été "
        "remplacée : {warning}",
    }
)
_EN: Final[Mapping[str, str]] = MappingProxyType(
    {
        "admin.failing": "⚠ Source {name} ({url}) has been failing since {since}: {error}",
        "admin.recovered": "✅ Source {name} ({url}) works again.",
        "admin.replaced": "🔁 {name}'s feed ({old}) is gone; the one found on its site, {new}, "
        "is followed instead.",
        "admin.room_left": "Crieur is no longer in room {room} ({reason}).",
        "admin.identity_replaced": "⚠ Crieur's cross-signing identity was replaced: {warning}",
    }
)
MESSAGES: Final[Mapping[Language, Mapping[str, str]]] = MappingProxyType({"fr": _FR, "en": _EN})


@dataclass(frozen=True, slots=True)
class Notice:
    """One report: its text and the transaction id that keeps a repeated send single."""

    body: str
    txn_id: str


@dataclass(slots=True)
class _Reported:
    """What the store remembers: feeds seen failing (since when) and those reported."""

    failing: dict[int, float] = field(default_factory=dict)
    reported: set[int] = field(default_factory=set)

    @classmethod
    def load(cls, stored: str | None) -> _Reported:
        try:
            data = json.loads(stored) if stored else {}
            failing = {int(key): float(value) for key, value in data.get("failing", {}).items()}
            return cls(failing, {int(feed) for feed in data.get("reported", [])})
        except (ValueError, TypeError, AttributeError):
            return cls()  # unreadable: at worst a failure is reported once more

    def dump(self) -> str:
        failing = {str(key): value for key, value in sorted(self.failing.items())}
        return json.dumps({"failing": failing, "reported": sorted(self.reported)})


class AdminReports:
    """Tells matrix.admin_room what needs its operators, each thing once."""

    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        *,
        language: Language,
        report_after: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._catalogue = catalogue
        self._language = language
        self._report_after = report_after
        self._clock = clock
        self._events: list[Notice] = []  # rooms left, identity replaced: sent at the next check
        self._wake = asyncio.Event()
        self._problem: str | None = None  # the last send failure logged, not to repeat it

    # -- what happens elsewhere (called synchronously by listeners) ----------------------------

    def poll_seen(self, outcome: PollOutcome) -> None:
        """A failed poll, or the first success after failures, may be news: check soon."""
        if outcome.replaced_by is not None:
            feed = outcome.feed
            self._event(
                "admin.replaced", f"replaced-{feed.id}-{outcome.replaced_by}",
                name=self._name(feed), old=mask_url(feed.url), new=mask_url(outcome.replaced_by),
            )  # fmt: skip
        if outcome.status == "error" or outcome.feed.error_count:
            self._wake.set()

    def room_left(self, room_id: str, reason: str) -> None:
        """Report a room the bot is no longer in."""
        self._event("admin.room_left", f"left-{room_id}", room=room_id, reason=reason)

    def identity_replaced(self, warning: str) -> None:
        """Report that the bot's cross-signing identity was made again."""
        self._event("admin.identity_replaced", "identity", warning=warning)

    # -- reporting ------------------------------------------------------------------------------

    async def run(self, sender: Sender, room_id: str) -> None:
        """Check and report until cancelled."""
        check_every = min(CHECK_EVERY_MAX, max(MIN_GAP, self._report_after / 4))
        while True:
            self._wake.clear()
            await self.check(sender, room_id)
            await asyncio.sleep(MIN_GAP)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(check_every):
                    await self._wake.wait()

    async def check(self, sender: Sender, room_id: str) -> None:
        """Send what is owed: events, then failures past report_after and recoveries."""
        while self._events:
            if not await self._send(sender, room_id, self._events[0]):
                return
            self._events.pop(0)
        state = _Reported.load(await self._store.get_value(KEY_REPORTS))
        before = state.dump()
        try:
            await self._feeds(sender, room_id, state)
        finally:
            if state.dump() != before:
                await self._store.set_value(KEY_REPORTS, state.dump())

    async def _feeds(self, sender: Sender, room_id: str, state: _Reported) -> None:
        now = self._clock()
        feeds = {feed.id: feed for feed in await self._store.feeds()}
        for feed_id in list(state.failing):
            feed = feeds.get(feed_id)
            if feed is not None and feed.error_count:
                continue
            since = state.failing[feed_id]
            if feed is not None and feed_id in state.reported:
                notice = self._notice("admin.recovered", f"up-{feed_id}-{since:.0f}", feed)
                if not await self._send(sender, room_id, notice):
                    return
            state.failing.pop(feed_id)
            state.reported.discard(feed_id)
        for feed in feeds.values():
            if not feed.error_count:
                continue
            # Never fetched: failing since Crieur first saw it fail.
            since = state.failing.setdefault(feed.id, feed.last_success or now)
            if feed.id in state.reported or now - since < self._report_after:
                continue
            notice = self._notice(
                "admin.failing",
                f"down-{feed.id}-{since:.0f}",
                feed,
                since=format_date(
                    datetime.fromtimestamp(since, UTC), self._language, self._zone(feed)
                ),
                error=_short(mask_urls(feed.last_error or "?")),
            )
            if not await self._send(sender, room_id, notice):
                return
            state.reported.add(feed.id)

    async def _send(self, sender: Sender, room_id: str, notice: Notice) -> bool:
        content = {"msgtype": "m.notice", "body": notice.body}
        try:
            await sender.send_notice(room_id, content, notice.txn_id)
        except SendError as error:
            # Tried again at the next check; said once, not at every check.
            if str(error) != self._problem:
                log.warning("cannot report in matrix.admin_room %s: %s", room_id, error)
                self._problem = str(error)
            return False
        self._problem = None
        log.info("reported in matrix.admin_room: %s", notice.body)
        return True

    def _notice(self, key: str, txn: str, feed: FeedState, **params: str) -> Notice:
        return self._message(key, txn, name=self._name(feed), url=mask_url(feed.url), **params)

    def _name(self, feed: FeedState) -> str:
        organisation = self._catalogue.get_organisation(feed.organisation)
        if feed.room_source or organisation is None:
            return feed.title or feed.organisation or mask_url(feed.url)
        return organisation.name

    def _event(self, key: str, txn: str, **params: str) -> None:
        self._events.append(self._message(key, f"{txn}-{self._clock():.3f}", **params))
        del self._events[:-MAX_EVENTS]
        self._wake.set()

    def _message(self, key: str, txn: str, **params: str) -> Notice:
        body = MESSAGES[self._language][key].format(**params)
        digest = hashlib.sha256(txn.encode()).hexdigest()[:24]
        return Notice(body, f"crieur-admin-{digest}")

    def _zone(self, feed: FeedState) -> Zone:
        return self._catalogue.zone_of(self._catalogue.get_organisation(feed.organisation))


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_SHOWN else f"{text[: MAX_ERROR_SHOWN - 1]}…"
