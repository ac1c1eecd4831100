"""Which events a calendar's poll announces, and how their messages are known; all pure."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .calendar import Event
from .config import DEFAULT_TIMEZONE, Config

EventState = Literal["seen", "pending", "announced", "digested"]
Change = Literal["changed", "cancelled"]


@dataclass(frozen=True, slots=True)
class CalendarSettings:
    """What polling calendars needs of the configuration."""

    announce_within: float = 60 * 86400.0  # seconds
    default_zone: str = DEFAULT_TIMEZONE
    zones: Mapping[str, str] = field(default_factory=dict)  # region slug → IANA zone

    @classmethod
    def from_config(cls, config: Config) -> CalendarSettings:
        """Return the settings a configuration gives."""
        zones = {
            slug: region.timezone for slug, region in config.regions.items() if region.timezone
        }
        return cls(config.events.announce_within, config.timezone, zones)

    def zone(self, region: str) -> str:
        """Return the IANA zone of a region's events (floating and all-day times are read in it)."""
        return self.zones.get(region, self.default_zone)


def configured_calendars(config: Config) -> list[tuple[str, str, str]]:
    """Return the calendars the configuration lists, as (organisation, region, url)."""
    regions = [("", slug, url) for slug, region in config.regions.items() for url in region.events]
    return regions + [
        (slug, "", url) for slug, organisation in config.organisations.items()
        for url in organisation.events
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Pending:
    """An event recorded and not announced yet."""

    id: int  # its row
    key: str
    starts: float | None  # epoch seconds of its (next) start; None: a finished series
    cancelled: bool


@dataclass(frozen=True, slots=True)
class AnnouncementPlan:
    """Which pending events a poll announces, and which it sums up in one line."""

    post: tuple[Pending, ...]
    digest: tuple[Pending, ...]  # beyond max_posts_per_poll: "… and N more"


def first_state(key: str, *, seeded: bool, series: Collection[str]) -> EventState:
    """Return the state of an event a calendar brings for the first time.

    At the first fetch everything is only seen. A modified occurrence (`UID#…`) of a series
    the calendar holds is part of that series, announced once as a whole.
    """
    if seeded:
        return "seen"
    uid, mark, _ = key.partition("#")
    return "seen" if mark and uid in series else "pending"


def plan_announcements(
    pending: Iterable[Pending], *, now: float, within: float, max_posts: int
) -> AnnouncementPlan:
    """Return the pending events to announce now: not started, within `within`, soonest first.

    Others stay pending: an event further ahead is announced when it comes within the window,
    a past or cancelled one never.
    """
    due = sorted(
        (
            event
            for event in pending
            if not event.cancelled
            and event.starts is not None
            and now < event.starts <= now + within
        ),
        key=lambda event: (event.starts, event.id),
    )
    limit = max(max_posts, 0)
    return AnnouncementPlan(tuple(due[:limit]), tuple(due[limit:]))


def event_message_key(key: str) -> str:
    """Return the key an event's announcement is known by beside feed entries' keys."""
    return f"event:{key}"


def events_digest_key(keys: Sequence[str]) -> str:
    """Return the key of a "… and N more" line standing for these events."""
    joined = "\0".join(keys)
    return "events-digest:" + hashlib.sha256(joined.encode()).hexdigest()


def change_of(old: Event, new: Event) -> Change | None:
    """Return what an announced event's new version changes that people must hear of.

    A cancellation, or another start or place; anything else (a title, a description) is not
    worth a message. An event cancelled, then confirmed again, says nothing.
    """
    if new.status == "cancelled":
        return "cancelled" if old.status != "cancelled" else None
    if old.status == "cancelled":
        return None
    if old.start != new.start or (old.place, old.city) != (new.place, new.city):
        return "changed"
    return None


def change_key(event: Event, change: Change) -> str:
    """Return the key of one change's message: each distinct new start and place has its own."""
    version = "\0".join(str(part) for part in (event.start, event.place, event.city, change))
    return f"event:{event.key}:{change}:" + hashlib.sha256(version.encode()).hexdigest()[:16]
