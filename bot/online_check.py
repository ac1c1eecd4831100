"""`crieur check --online`: try every configured source once, recording nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from . import calendar
from .config import Config
from .discovery import discover
from .errors import CrieurError, FetchError, ParseError
from .event_posting import CalendarSettings, configured_calendars
from .fetcher import Fetcher
from .model import FetchResult
from .parser import parse_feed
from .redact import mask_url, mask_urls

__all__ = ["SourceCheck", "check_sources", "format_check", "summary"]

State = Literal["ok", "moved", "discovered", "failing"]
SOUND: Final = frozenset({"ok", "moved", "discovered"})


@dataclass(frozen=True, slots=True)
class SourceCheck:
    """How one configured source answered: its owner, what it is, and how it went."""

    owner: str  # the organisation's or region's name
    kind: Literal["feed", "calendar", "site"]  # "site": an organisation's url to discover from
    url: str
    state: State
    detail: str = ""  # the new URL (moved, discovered) or why it fails

    @property
    def sound(self) -> bool:
        """Whether the source can be polled as it is (or where it now is)."""
        return self.state in SOUND


async def check_sources(config: Config, fetcher: Fetcher) -> list[SourceCheck]:
    """Fetch every configured source once, concurrently; the fetcher bounds requests."""
    settings = CalendarSettings.from_config(config)
    jobs: list[Coroutine[Any, Any, SourceCheck]] = []
    for org in config.organisations.values():
        jobs.extend(_check_feed(org.name, url, fetcher) for url in org.feeds)
        if org.url and not org.feeds:
            jobs.append(_check_site(org.name, org.url, fetcher))
    for slug_org, region, url in configured_calendars(config):
        if slug_org:
            org = config.organisations[slug_org]
            owner, zone = org.name, settings.zone(org.region)
        else:
            owner, zone = config.regions[region].name, settings.zone(region)
        jobs.append(_check_calendar(owner, url, zone, fetcher))
    return list(await asyncio.gather(*jobs))


async def _check_feed(owner: str, url: str, fetcher: Fetcher) -> SourceCheck:
    def read(result: FetchResult) -> None:
        parse_feed(result.body or b"", feed_url=result.final_url or url,
                   content_type=result.content_type)  # fmt: skip

    return await _check_source(owner, "feed", url, fetcher, read, "no feed")


async def _check_calendar(owner: str, url: str, zone: str, fetcher: Fetcher) -> SourceCheck:
    def read(result: FetchResult) -> None:
        calendar.parse(result.body or b"", now=datetime.now(UTC), zone=zone)

    return await _check_source(owner, "calendar", url, fetcher, read, "no calendar")


async def _check_source(
    owner: str,
    kind: Literal["feed", "calendar"],
    url: str,
    fetcher: Fetcher,
    read: Callable[[FetchResult], None],
    unreadable: str,
) -> SourceCheck:
    """Fetch a source and read it as its poll would; `read` raises ParseError."""
    try:
        result = await fetcher.fetch(url)
        await asyncio.to_thread(read, result)  # the parsers are CPU-bound
    except FetchError as error:
        return SourceCheck(owner, kind, url, "failing", error.message)
    except ParseError as error:
        return SourceCheck(owner, kind, url, "failing", f"{unreadable}: {error}")
    if result.permanent_url:
        return SourceCheck(owner, kind, url, "moved", result.permanent_url)
    return SourceCheck(owner, kind, url, "ok")


async def _check_site(owner: str, url: str, fetcher: Fetcher) -> SourceCheck:
    try:
        found = await discover(fetcher, url)
    except CrieurError as error:  # a URL the fetcher refuses outright
        return SourceCheck(owner, "site", url, "failing", str(error))
    if not found.feeds:
        return SourceCheck(owner, "site", url, "failing", f"no feed found: {found.reason}")
    return SourceCheck(owner, "site", url, "discovered", found.feeds[0].url)


def format_check(check: SourceCheck) -> str:
    """Return the line `check --online` prints for a source, with secrets in URLs masked."""
    where = f"{check.owner} {check.kind} {mask_url(check.url)}"
    if check.state == "ok":
        return f"{where}: ok"
    if check.state == "failing":
        return f"{where}: failing: {mask_urls(check.detail)}"
    return f"{where}: {check.state} → {mask_url(check.detail)}"


def summary(checks: Sequence[SourceCheck]) -> str:
    """Return the closing line: how many sources answered, and how many fail."""
    failing = sum(not check.sound for check in checks)
    return f"{len(checks)} sources checked, {failing} failing"
