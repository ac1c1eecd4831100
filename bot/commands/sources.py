"""Feeds a room adds itself: `!subscribe URL`, `!unsubscribe URL or NAME`, and their lines in
`!subscriptions`, `!status` and `!latest`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from ..catalogue import normalise
from ..discovery import Discovery, FoundFeed, check_url
from ..errors import CommandError, InvalidURL
from ..i18n import join_list, quote
from ..model import Entry
from ..redact import mask_url, mask_urls
from ..scheduler import next_slot
from ..store import FeedState, FoundSource, RoomSource
from .context import Context, Reply
from .lines import Lines, one_line
from .registry import Token

log = logging.getLogger(__name__)

MAX_TITLE: Final = 80  # characters of a feed's title in an answer
MAX_URL_SHOWN: Final = 200  # characters of a URL in an answer
MAX_OTHERS: Final = 3  # other feeds of a site mentioned after subscribing to its main one
_SCHEMES: Final = ("http://", "https://")


def is_url(text: str) -> bool:
    """Tell whether an argument is a URL (http or https) rather than a name."""
    return text.strip().lower().startswith(_SCHEMES)


def title_of(feed: FeedState) -> str:
    """Return a feed's title as answers show it: plain text on one line, short."""
    return one_line(feed.name, MAX_TITLE)


def _url_shown(url: str) -> str:
    return one_line(mask_url(url), MAX_URL_SHOWN)


async def subscribe_url(ctx: Context, text: str) -> Reply:
    """Make the room follow the feed at `text` (a feed, or a site whose feed is found)."""
    try:
        url = check_url(text)
    except InvalidURL as error:
        raise CommandError(
            "error.invalid_url", reason=one_line(mask_urls(str(error)), 300)
        ) from None
    policy = ctx.sources
    sources = await ctx.store.room_sources(ctx.room_id)
    known = find_source(sources, url)
    if known is not None:
        return _answer(ctx, "sources.already", known.feed)
    if policy.finder is None or policy.max_own_feeds == 0:
        raise CommandError("error.sources_off")
    if len(sources) >= policy.max_own_feeds:
        raise CommandError("error.sources_full", max=policy.max_own_feeds)
    refused = await policy.finder.refused(url)
    if refused is not None:
        log.info("refused !subscribe %s in %s: %s", url, ctx.room_id, refused)
        raise CommandError("error.private_address", address=one_line(refused, 120))
    try:
        found = await policy.finder.find(url)
    except TimeoutError:
        raise CommandError("error.site_too_slow", url=_url_shown(url)) from None
    if not found.feeds:
        reason = one_line(mask_urls(found.reason), 300)
        raise CommandError("error.no_feed", url=_url_shown(url), reason=reason)
    main = found.feeds[0]
    source, added = await ctx.store.add_room_source(
        ctx.room_id,
        url,
        FoundSource(main.url, main.title, _site_of(found, main), main.entries),
        now=ctx.now,
        next_poll=next_slot(main.url, ctx.now, policy.interval),
    )
    if not added:
        return _answer(ctx, "sources.already", source.feed)
    log.info("room %s follows %s (typed %s)", ctx.room_id, source.feed.url, url)
    out = Lines(ctx.language)
    _add(out, "sources.added", source.feed)
    others = [feed for feed in found.feeds[1:] if feed.url != source.feed.url][:MAX_OTHERS]
    if others:
        out.add("sources.others", feeds=join_list(ctx.language, _described(ctx, others)))
    return out.reply()


async def unsubscribe_source(ctx: Context, text: str) -> Reply | None:
    """Stop the room following one of its own feeds; None when `text` names none (a name)."""
    source = find_source(await ctx.store.room_sources(ctx.room_id), text)
    if source is None:
        if is_url(text):
            raise CommandError("error.source_not_followed", url=_url_shown(text))
        return None
    await ctx.store.remove_room_source(ctx.room_id, source.feed.id)
    log.info("room %s no longer follows %s", ctx.room_id, source.feed.url)
    return _answer(ctx, "sources.removed", source.feed)


def find_source(sources: Sequence[RoomSource], text: str) -> RoomSource | None:
    """Return the room source `text` names: the URL typed, the feed's URL, or its title."""
    wanted = {_comparable(text)}
    with contextlib.suppress(InvalidURL):
        wanted.add(_comparable(check_url(text)))
    for source in sources:
        urls = {source.typed_url, source.feed.url, source.feed.config_url}
        if wanted & {_comparable(url) for url in urls}:
            return source
    name = normalise(text)
    if name:
        for source in sources:
            if source.feed.title and normalise(source.feed.title) == name:
                return source
    return None


def source_names(ctx: Context, sources: Sequence[RoomSource]) -> list[str]:
    """Return how `!subscriptions` lists a room's own feeds."""
    return [f"{title_of(source.feed)} ({_url_shown(source.feed.url)})" for source in sources]


async def latest_of_source(
    ctx: Context, tokens: Sequence[Token], *, default: int, limit: int
) -> tuple[str, list[Entry]] | None:
    """Return the title and newest entries of the room source `TITLE [N]` names, if any."""
    sources = await ctx.store.room_sources(ctx.room_id)
    if not sources:
        return None
    whole = " ".join(token.text for token in tokens)
    source, count = find_source(sources, whole), default
    if source is None and len(tokens) > 1 and tokens[-1].text.isdigit():
        source = find_source(sources, " ".join(token.text for token in tokens[:-1]))
        count = min(max(int(tokens[-1].text[:4]), 1), limit)
    if source is None:
        return None
    return title_of(source.feed), await ctx.store.latest_feed_entries(source.feed.id, count)


def _comparable(url: str) -> str:
    # "https://lug.example" and "https://lug.example/" are one address to the person typing.
    return url.strip().rstrip("/")


def _site_of(found: Discovery, main: FoundFeed) -> str | None:
    """Return the site a feed belongs to: its own link, else the page it was found from."""
    if main.site_url:
        return main.site_url
    if found.url != main.url:
        return found.url
    parts = urlsplit(main.url)
    return f"{parts.scheme}://{parts.netloc}/"


def _described(ctx: Context, feeds: Sequence[FoundFeed]) -> list[str]:
    return [
        f"{quote(ctx.language, one_line(feed.title, MAX_TITLE))} ({_url_shown(feed.url)})"
        for feed in feeds
    ]


def _add(out: Lines, key: str, feed: FeedState) -> None:
    out.add(key, title=title_of(feed), url=_url_shown(feed.url))


def _answer(ctx: Context, key: str, feed: FeedState) -> Reply:
    out = Lines(ctx.language)
    _add(out, key, feed)
    return out.reply()
