"""The demo's sample feeds: bundled French news served as RSS 2.0 on 127.0.0.1, growing over time.

Each organisation's feed starts with its `published` items. Then `release()` adds the next
`upcoming` item of one organisation, rotating over the regions first and over each region's
organisations second, so that consecutive posts land in different rooms. When an organisation
has released all its upcoming items it starts over with new guids (a rerun of the same news).

What was released, and when, is kept in a small JSON file, so a rerun of the demo serves the
same feeds and goes on where the previous run stopped (the bot's database remembers them too).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import itertools
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from importlib import resources
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import yaml
from aiohttp import web

from ..config import Organisation, Region
from . import DemoError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
ITEMS_FILE = "items.yaml"
CATALOGUE_FILE = "config.yaml.example"
FEED_LENGTH = 10  # items in a feed, newest first, as blogs do
PUBLISHED_SPACING = 26 * 3600.0  # seconds between two already-published items
FIRST_FETCH_WAIT = 30.0  # seconds to wait for the bot's first fetch of every feed


@dataclass(frozen=True, slots=True)
class SampleItem:
    """One bundled news item of an organisation."""

    organisation: str  # slug
    number: int  # 1-based position in the organisation's list (published, then upcoming)
    title: str  # as <title> carries it: text that may hold HTML entities
    summary_html: str
    category: str | None = None


@dataclass(frozen=True, slots=True)
class SampleNews:
    """The bundled items, per organisation slug."""

    published: Mapping[str, tuple[SampleItem, ...]]
    upcoming: Mapping[str, tuple[SampleItem, ...]]


def read_data(name: str) -> str:
    """Return a bundled data file of the demo as text."""
    return resources.files("bot.demo").joinpath("data", name).read_text(encoding="utf-8")


def load_news(organisations: Iterable[str]) -> SampleNews:
    """Load the bundled items of these organisations; raise DemoError if one has none."""
    data = yaml.safe_load(read_data(ITEMS_FILE))
    published: dict[str, tuple[SampleItem, ...]] = {}
    upcoming: dict[str, tuple[SampleItem, ...]] = {}
    for slug in organisations:
        lists = data.get(slug) if isinstance(data, dict) else None
        if not isinstance(lists, dict) or not lists.get("published") or not lists.get("upcoming"):
            raise DemoError(f"{ITEMS_FILE}: no published and upcoming items for '{slug}'")
        items = [
            SampleItem(
                organisation=slug,
                number=number,
                title=str(raw["title"]),
                summary_html=str(raw["summary"]),
                category=raw.get("category"),
            )
            for number, raw in enumerate([*lists["published"], *lists["upcoming"]], start=1)
        ]
        count = len(lists["published"])
        published[slug] = tuple(items[:count])
        upcoming[slug] = tuple(items[count:])
    return SampleNews(published, upcoming)


def rotation(regions: Sequence[Sequence[str]]) -> Iterator[str]:
    """Yield organisation slugs forever: region after region, each region's organisations in turn.

    `regions` lists the organisations of each region; empty regions are skipped.
    """
    groups = [group for group in regions if group]
    if not groups:
        return
    for visit in itertools.count():
        for group in groups:
            yield group[visit % len(group)]


@dataclass(frozen=True, slots=True)
class Release:
    """An upcoming item that appeared in its feed at `at` (a Unix time)."""

    item: SampleItem
    round: int  # 0 the first time the organisation's upcoming items are released, then 1, …
    at: float


class FeedState:
    """What the feeds hold: when they started, what was released since, on which port."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.created: float = clock()
        self.port: int | None = None
        self.released: list[tuple[str, float]] = []  # (organisation slug, time), oldest first
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except ValueError:
            log.warning("%s is not valid JSON: the sample feeds start over", path)
            return
        with contextlib.suppress(TypeError, ValueError, KeyError):
            self.created = float(stored["created"])
            self.port = int(stored["port"]) if stored.get("port") else None
            self.released = [(str(slug), float(at)) for slug, at in stored["released"]]

    def save(self) -> None:
        """Write the state atomically (a crash leaves the old or the new file, never half)."""
        data = {"created": self.created, "port": self.port, "released": self.released}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)


class SampleFeeds:
    """The sample feeds of a catalogue, served over HTTP with ETag and Last-Modified."""

    def __init__(
        self,
        organisations: Mapping[str, Organisation],
        regions: Mapping[str, Region],
        news: SampleNews,
        state: FeedState,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._organisations = dict(organisations)
        self._regions = dict(regions)
        self._news = news
        self._state = state
        self._clock = clock
        by_region: dict[str, list[str]] = {}
        for slug, organisation in organisations.items():
            by_region.setdefault(organisation.region, []).append(slug)
        self._rotation = rotation(list(by_region.values()))
        # Skip what earlier runs released, so a rerun goes on with the next organisation.
        for _ in state.released:
            next(self._rotation)
        self._fetched: set[str] = set()
        self._all_fetched = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # -- content ------------------------------------------------------------------------------

    def releases(self, organisation: str) -> list[Release]:
        """The upcoming items of an organisation released so far, oldest first."""
        upcoming = self._news.upcoming[organisation]
        found: list[Release] = []
        for slug, at in self._state.released:
            if slug == organisation:
                count = len(found)
                found.append(Release(upcoming[count % len(upcoming)], count // len(upcoming), at))
        return found

    def release(self) -> Release:
        """Publish the next upcoming item, in rotation; return it."""
        slug = next(self._rotation)
        self._state.released.append((slug, self._clock()))
        self._state.save()
        release = self.releases(slug)[-1]
        log.info("new sample item for %s: %s", slug, html.unescape(release.item.title))
        return release

    def feed_path(self, organisation: str) -> str:
        """The URL path of an organisation's feed."""
        return f"/{organisation}/rss.xml"

    def url(self, path: str) -> str:
        """An absolute URL on this server."""
        if self.port is None:
            raise RuntimeError("the sample feed server is not started")
        return f"http://{HOST}:{self.port}{path}"

    def feed_urls(self) -> dict[str, str]:
        """Each organisation's feed URL."""
        return {slug: self.url(self.feed_path(slug)) for slug in self._organisations}

    def item_path(self, item: SampleItem, round_: int) -> str:
        """The URL path of an item's page."""
        suffix = f"?reprise={round_}" if round_ else ""
        return f"/{item.organisation}/{item.number}.html{suffix}"

    def _entries(self, organisation: str) -> list[tuple[SampleItem, int, float]]:
        """The feed's (item, round, date), newest first."""
        published = self._news.published[organisation]
        index = list(self._organisations).index(organisation)
        # Dated back from the first run, a day or so apart, organisations an hour apart.
        entries = [
            (item, 0, self._state.created - (len(published) - n) * PUBLISHED_SPACING - index * 3600)
            for n, item in enumerate(published)
        ]
        entries.extend((r.item, r.round, r.at) for r in self.releases(organisation))
        entries.sort(key=lambda entry: entry[2], reverse=True)
        return entries[:FEED_LENGTH]

    def rss(self, organisation: str) -> tuple[bytes, float]:
        """An organisation's RSS 2.0 document and the date of its newest item."""
        org = self._organisations[organisation]
        home = org.url or f"http://{HOST}/"
        entries = self._entries(organisation)
        newest = entries[0][2]
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<rss version="2.0">',
            "<channel>",
            f"<title>{escape(org.name)}</title>",
            f"<link>{escape(home)}</link>",
            f"<description>{escape(f'Actualités de {org.name}')}</description>",
            "<language>fr-FR</language>",
            f"<lastBuildDate>{_http_date(newest)}</lastBuildDate>",
        ]
        for item, round_, at in entries:
            # Like WordPress: a guid on the site, not a permalink; a rerun gets a guid of its own.
            guid = f"{home.rstrip('/')}/?p={item.number}" + (f"&reprise={round_}" if round_ else "")
            lines += [
                "<item>",
                # The title goes in escaped, entities included, as many CMSs double-encode it.
                f"<title>{escape(item.title)}</title>",
                f"<link>{escape(self.url(self.item_path(item, round_)))}</link>",
                f"<guid isPermaLink={quoteattr('false')}>{escape(guid)}</guid>",
                f"<pubDate>{_http_date(at)}</pubDate>",
            ]
            if item.category:
                lines.append(f"<category>{escape(item.category)}</category>")
            lines += [f"<description>{escape(item.summary_html)}</description>", "</item>"]
        lines += ["</channel>", "</rss>", ""]
        return "\n".join(lines).encode("utf-8"), newest

    # -- serving ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1, on the port of the previous run if it is free."""
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/{organisation}/rss.xml", self._feed)
        app.router.add_get("/{organisation}/{number:[0-9]+}.html", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = _listening_socket(self._state.port)
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()
        if self._state.port != self.port:
            self._state.port = self.port
            self._state.save()

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def release_forever(self, every: float) -> None:
        """Wait for the bot's first fetch of every feed, then release an item every `every` s."""
        # Items released before the bot has read a feed once would be recorded, never posted.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_FETCH_WAIT):
                await self._all_fetched.wait()
        while True:
            self.release()
            await asyncio.sleep(every)

    def _organisation(self, request: web.Request) -> str:
        slug = request.match_info["organisation"]
        if slug not in self._organisations:
            raise web.HTTPNotFound(text="unknown organisation\n")
        return slug

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        slug = self._organisation(request)
        body, newest = self.rss(slug)
        self._fetched.add(slug)
        if len(self._fetched) == len(self._organisations):
            self._all_fetched.set()
        etag = f'"{hashlib.sha256(body).hexdigest()[:20]}"'
        headers = {"ETag": etag, "Last-Modified": _http_date(newest)}
        if _not_modified(request, etag, newest):
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=body, headers=headers, content_type="application/rss+xml", charset="utf-8"
        )

    async def _page(self, request: web.Request) -> web.StreamResponse:
        slug = self._organisation(request)
        number = int(request.match_info["number"])
        round_ = int(request.query.get("reprise", "0") or 0)
        found = [
            (item, at)
            for item, r, at in self._entries(slug)
            if item.number == number and r == round_
        ]
        if not found:
            raise web.HTTPNotFound(text="no such item (or no longer in the feed)\n")
        item, at = found[0]
        org = self._organisations[slug]
        region = self._regions[org.region].name
        date = datetime.fromtimestamp(at, UTC).strftime("%d/%m/%Y %H:%M UTC")
        title = html.escape(html.unescape(item.title))
        home = f'<a href="{html.escape(org.url)}">{html.escape(org.url)}</a>' if org.url else ""
        page = f"""<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>{title}</title></head>
<body style="max-width: 40em; margin: 2em auto; font-family: sans-serif; line-height: 1.5">
<p><b>{html.escape(org.name)}</b> · {html.escape(region)} · {date}</p>
<h1>{title}</h1>
{item.summary_html}
<hr><p><small>Article d'exemple de la démo de Crieur. {home}</small></p>
</body></html>
"""
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    async def _index(self, request: web.Request) -> web.StreamResponse:
        lines = ["Sample feeds of the Crieur demo:", ""]
        for slug, org in self._organisations.items():
            lines.append(
                f"{org.name} ({self._regions[org.region].name}): {self.url(self.feed_path(slug))}"
            )
        return web.Response(text="\n".join(lines) + "\n", charset="utf-8")


def _listening_socket(preferred: int | None) -> socket.socket:
    """A socket bound to 127.0.0.1: on `preferred` if free, else on any free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            sock.bind((HOST, preferred or 0))
        except OSError:
            sock.bind((HOST, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def _http_date(timestamp: float) -> str:
    return format_datetime(datetime.fromtimestamp(int(timestamp), UTC), usegmt=True)


def _not_modified(request: web.Request, etag: str, newest: float) -> bool:
    """Tell whether the client's copy is current (If-None-Match wins over If-Modified-Since)."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        return etag in (tag.strip() for tag in if_none_match.split(",")) or if_none_match == "*"
    if_modified_since = request.headers.get("If-Modified-Since")
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError):
            return False
        return int(newest) <= since
    return False
