"""Plain values that flow between the pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .calendar import Event


@dataclass(frozen=True, slots=True)
class Entry:
    """One normalised feed entry, as the parser hands it on."""

    key: str  # stable dedup key: id, else link, else content hash; never normalised
    title: str  # plain text, never HTML
    link: str | None
    published: datetime | None  # timezone-aware UTC
    summary_html: str  # raw; only sanitise.py turns it into something safe


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one conditional GET of a feed produced."""

    url: str  # the URL asked for
    status: int  # final HTTP status (200 or 304)
    body: bytes | None  # None when the server said 304 Not Modified
    etag: str | None
    last_modified: str | None
    permanent_url: str | None = None  # set when a 301/308 chain moved the feed for good
    content_type: str | None = None
    final_url: str | None = None  # where the body came from, when redirects were followed


@dataclass(frozen=True, slots=True)
class Source:
    """A feed a room added itself, as its messages name it."""

    title: str  # the feed's own title, else its URL
    site_url: str | None  # what its "… and N more" line links to


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row: a message owed to a room (an entry, or a digest of skipped entries)."""

    id: int  # outbox row id
    room_id: str
    txn_id: str  # deterministic: derived from room and entry (or digest)
    organisation: str  # organisation slug
    entry: Entry | None  # None for a digest row
    digest_count: int = 0  # for a digest row: how many entries it stands for
    attempts: int = 0
    source: Source | None = None  # set for a room source's message: named by its title
    event: Event | None = None  # set for an event's announcement
    calendar: str | None = None  # the URL of the calendar a message comes from
    region: str = ""  # the region of a region's calendar (it has no organisation)
    change: str | None = None  # "changed" or "cancelled": a reply to an event's announcement
    reply_to: str | None = None  # the Matrix event id of the announcement replied to
