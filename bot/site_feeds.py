"""Organisations' feeds found from their site: at start for those that list no feed, and again
for a configured feed that keeps answering 404/410 or no feed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Final

from .config import Config, Organisation
from .discovery import Discovery, discover
from .errors import CrieurError
from .fetcher import Fetcher
from .redact import mask_url, mask_urls
from .store import Store

__all__ = [
    "GONE_POLLS",
    "KEY_SITE_FEED",
    "Finder",
    "find_again",
    "finder_for",
    "site_feeds",
]

log = logging.getLogger(__name__)

KEY_SITE_FEED: Final = "site_feed."  # + organisation slug: the feed last discovered on its site
GONE_POLLS: Final = 3  # polls in a row answering 404/410 or no feed before looking again

Finder = Callable[[str], Awaitable[Discovery]]


async def site_feeds(
    config: Config, store: Store, fetcher: Fetcher, *, remember: bool = True
) -> list[tuple[str, str]]:
    """Return (organisation, feed URL) for the organisations with a `url` and no `feeds`.

    The feed found is remembered, so that a site down at start keeps its last feed. A site
    with no feed, and none remembered, is polled as it is: its polls fail, so that `!status`
    shows it failing, until a later look finds a feed there.
    """
    sites = [(slug, org) for slug, org in config.organisations.items() if org.url and not org.feeds]
    found = await asyncio.gather(
        *(_site_feed(slug, org, store, fetcher, remember) for slug, org in sites)
    )
    return [(slug, url) for (slug, _), url in zip(sites, found, strict=True)]


async def _site_feed(
    slug: str, org: Organisation, store: Store, fetcher: Fetcher, remember: bool
) -> str:
    site = org.url or ""
    try:
        found = await discover(fetcher, site)
    except CrieurError as error:  # a URL the fetcher refuses outright
        found = Discovery(site, (), 0, str(error))
    known = await store.get_value(KEY_SITE_FEED + slug)
    if found.feeds:
        url = found.feeds[0].url
        log.info("%s: feed discovered at %s (from %s)", org.name, mask_url(url), mask_url(site))
        if remember and url != known:
            await store.set_value(KEY_SITE_FEED + slug, url)
        return url
    reason = mask_urls(found.reason)
    if known:
        log.warning(
            "%s: no feed found at %s (%s); polling the one found before, %s",
            org.name, mask_url(site), reason, mask_url(known),
        )  # fmt: skip
        return known
    log.warning("%s: no feed found at %s: %s", org.name, mask_url(site), reason)
    return site


def finder_for(fetcher: Fetcher) -> Finder:
    """Return discovery through this fetcher, as the pipeline calls it."""

    async def find(url: str) -> Discovery:
        return await discover(fetcher, url)

    return find


async def find_again(
    find: Finder, organisation: Organisation, current: str, taken: Collection[str] = ()
) -> str | None:
    """Return a feed its site offers other than `current` and `taken` (its other feeds)."""
    if not organisation.url:
        return None
    try:
        found = await find(organisation.url)
    except CrieurError as error:
        log.warning("%s: cannot look for a feed again: %s", organisation.name, error)
        return None
    urls = [feed.url for feed in found.feeds]
    if not urls:
        log.warning(
            "%s: feed %s is gone and no other was found at %s: %s",
            organisation.name, mask_url(current), mask_url(organisation.url),
            mask_urls(found.reason),
        )  # fmt: skip
        return None
    fresh = [url for url in urls if url != current and url not in taken]
    return fresh[0] if fresh and current not in urls else None
