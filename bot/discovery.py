"""Find a web site's feeds: the URL itself, the page's links, then the usual paths.

The pure parts read a URL a person typed (`check_url`), a page's feed links (`feed_links`) and
the usual places of a feed (`usual_feed_urls`); `discover` fetches through the fetcher, with
all its protections, and makes at most `MAX_REQUESTS` requests in all, redirects included:

1. the URL itself: a feed is used as is;
2. a web page: its `<link rel="alternate">` RSS and Atom feeds, in the page's order (the first
   is the main one), comments feeds skipped, each fetched to check that it is a feed Crieur can
   poll and to read its title;
3. when the page gives none: the usual paths under the URL's path, then at the site's root,
   until one answers with a feed.

A feed is what the parser accepts: a body it refuses (no entries, not RSS or Atom) would fail
every poll, so it is not offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from typing import Final
from urllib.parse import urljoin, urlsplit, urlunsplit

from .errors import FetchError, InvalidURL, ParseError
from .fetcher import Fetcher, RequestBudget
from .model import Entry, FetchResult
from .parser import MAX_FEED_TITLE, parse_feed, plain_title

__all__ = [
    "MAX_REQUESTS",
    "USUAL_PATHS",
    "Discovery",
    "FeedLink",
    "FoundFeed",
    "check_url",
    "discover",
    "feed_links",
    "is_comments_feed",
    "usual_feed_urls",
]

log = logging.getLogger(__name__)

MAX_REQUESTS: Final = 8
MAX_URL: Final = 2048  # characters of a URL typed by a person
MAX_LINKS: Final = 20  # feed links kept from one page, in its order
MAX_PAGE: Final = 1024 * 1024  # characters of a page read for its links
# Relative to the URL's directory, then to the site's root; WordPress, Drupal, Hugo, SPIP…
USUAL_PATHS: Final = (
    "feed/",
    "rss.xml",
    "atom.xml",
    "feed.xml",
    "index.xml",
    "spip.php?page=backend",
    "?feed=rss2",
)
FEED_TYPES: Final = frozenset(
    {"application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/x-rss+xml"}
)
_HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})
_FEED_STARTS: Final = (b"<?xml", b"<rss", b"<feed", b"<rdf")
_HTML_STARTS: Final = (b"<!doctype html", b"<html")


@dataclass(frozen=True, slots=True)
class FeedLink:
    """A feed a page links to with `<link rel="alternate">`: absolute URL and its title."""

    url: str
    title: str  # plain text, maybe empty


@dataclass(frozen=True, slots=True)
class FoundFeed:
    """A feed discovery fetched and the parser accepted."""

    url: str  # where to poll it: as linked or tried, or where a permanent redirect led
    title: str  # plain text, at most MAX_FEED_TITLE characters, never empty
    # What that fetch read: a room adding the feed records them as seen, so that only what
    # the feed publishes afterwards is posted.
    entries: tuple[Entry, ...] = field(default=(), compare=False, repr=False)
    site_url: str | None = field(default=None, compare=False)  # the feed's own site link


@dataclass(frozen=True, slots=True)
class Discovery:
    """What discovery found at a URL: feeds, the main one first, or why there is none."""

    url: str  # the URL looked at, as `check_url` made it
    feeds: tuple[FoundFeed, ...]
    requests: int  # HTTP requests made, redirects included
    reason: str = ""  # why no feed was found; empty when some were


def check_url(text: str) -> str:
    """Return a typed URL as an absolute http(s) URL without fragment; raise InvalidURL.

    A URL without a scheme, as people write them (`april.org/blog`), gets `https://`.
    """
    url = text.strip()
    if not url:
        raise InvalidURL("no URL given")
    if len(url) > MAX_URL:
        raise InvalidURL(f"URL longer than {MAX_URL} characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise InvalidURL("invalid URL: it contains spaces or control characters")
    if "://" not in url:
        url = "https://" + url
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise InvalidURL(f"invalid URL: {error}") from None
    if parts.username is not None or parts.password is not None:
        # Not repeated: the URL holds a secret.
        raise InvalidURL("invalid URL: a user name or password is not accepted")
    try:
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError as error:
        raise InvalidURL(f"invalid URL {url!r}: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidURL(f"unsupported URL {url!r}: only http and https are fetched")
    if not host:
        raise InvalidURL(f"invalid URL {url!r}: no host")
    return urlunsplit(parts._replace(fragment=""))


def usual_feed_urls(url: str) -> list[str]:
    """Return the usual feed URLs of a site: under the URL's directory first, then at its root."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if not path.endswith("/"):
        head, _, last = path.rpartition("/")
        # "/blog/index.php" is a file in /blog/; "/mon-lug" is a directory written without "/".
        path = f"{head}/" if "." in last else f"{path}/"
    root = urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
    bases = [urljoin(root, path), root]
    urls: list[str] = []
    for base in bases:
        for usual in USUAL_PATHS:
            candidate = urljoin(base, usual)
            if candidate not in urls:
                urls.append(candidate)
    return urls


def is_comments_feed(title: str, url: str) -> bool:
    """Return whether a feed link is a comments feed, by its title or its URL's path and query."""
    parts = urlsplit(url)
    # "comment" covers "comments" and the French "commentaires"; the host is left out, so
    # that a site named "comment-faire.example" keeps its feeds.
    where = f"{title} {parts.path} {parts.query}".casefold()
    return "comment" in where


def feed_links(page: str, page_url: str) -> list[FeedLink]:
    """Return the RSS and Atom feeds a page links to, in its order, comments feeds left out.

    Relative links are resolved against the page's `<base href>` if it has one, else against
    `page_url`; links that are not http(s) are dropped, and so are duplicates.
    """
    reader = _LinkReader()
    # html.parser gives up on some broken declarations ("<![x[") with an AssertionError:
    # the links read until then are still the page's.
    with contextlib.suppress(AssertionError):
        reader.feed(page[:MAX_PAGE])
        reader.close()
    base = page_url
    if reader.base is not None:
        base = _absolute(page_url, reader.base) or page_url
    links: list[FeedLink] = []
    seen: set[str] = set()
    for href, raw_title in reader.links:
        url = _absolute(base, href)
        if url is None or url in seen:
            continue
        seen.add(url)
        title = plain_title(raw_title, MAX_FEED_TITLE)
        if not is_comments_feed(title, url):
            links.append(FeedLink(url, title))
            if len(links) == MAX_LINKS:
                break
    return links


def _absolute(base: str, href: str) -> str | None:
    """Resolve `href` against `base`; None unless the result is an http(s) URL with a host."""
    try:
        parts = urlsplit(urljoin(base, href.strip()))
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return None  # credentials in a link would be sent along, and shown
    url = urlunsplit(parts._replace(fragment=""))
    return url if len(url) <= MAX_URL else None


class _LinkReader(HTMLParser):
    """Collect a page's first `<base href>` and its `<link rel="alternate">` feed links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.links: list[tuple[str, str]] = []  # href, title; as written

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("base", "link"):
            return
        values: dict[str, str] = {}
        for name, value in attrs:
            values.setdefault(name, value or "")  # the first of repeated attributes wins
        href = values.get("href", "").strip()
        if not href:
            return
        if tag == "base":
            if self.base is None:  # only the first <base href> counts
                self.base = href
        elif (
            "alternate" in values.get("rel", "").casefold().split()
            and _media_type(values.get("type")) in FEED_TYPES
            and len(self.links) < 4 * MAX_LINKS  # comments feeds and duplicates come out later
        ):
            self.links.append((href, values.get("title", "")))


def _media_type(content_type: str | None) -> str:
    """Return the bare media type of a Content-Type or `type` attribute, in lower case."""
    return (content_type or "").partition(";")[0].strip().casefold()


def _charset(content_type: str | None) -> str | None:
    """Return the charset parameter of a Content-Type header, if any."""
    for parameter in (content_type or "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().casefold() == "charset":
            return value.strip().strip("\"'") or None
    return None


def _looks_like_html(body: bytes, content_type: str | None) -> bool:
    """Return whether a body is a web page rather than (maybe) a feed."""
    start = body[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if start.startswith(_HTML_STARTS):
        return True
    if start.startswith(_FEED_STARTS):  # a feed served as text/html is still a feed
        return False
    return _media_type(content_type) in _HTML_TYPES


def _decode(body: bytes, content_type: str | None) -> str:
    """Decode a page for its links: its declared charset, else UTF-8; bad bytes replaced."""
    try:
        return body.decode(_charset(content_type) or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class _Page:
    """What the first response turned out to be."""

    feed: FoundFeed | None
    links: list[FeedLink]
    problem: str  # why a body that is not a web page is not a feed either


def _read_feed(result: FetchResult, url: str, fallback_title: str) -> FoundFeed:
    """Parse a fetched body as a feed (in a thread); raise ParseError if it is none."""
    parsed = parse_feed(result.body or b"", feed_url=url, content_type=result.content_type)
    title = parsed.title or fallback_title or (urlsplit(url).hostname or url)
    return FoundFeed(url, title, tuple(parsed.entries), parsed.link)


def _read_page(result: FetchResult, url: str) -> _Page:
    """Read the first response: a feed, or a web page's feed links (in a thread)."""
    body = result.body or b""
    problem = ""
    if not _looks_like_html(body, result.content_type):
        try:
            return _Page(_read_feed(result, url, ""), [], "")
        except ParseError as error:
            problem = str(error)
    return _Page(None, feed_links(_decode(body, result.content_type), url), problem)


def _may_go_on(error: FetchError) -> bool:
    """Return whether other URLs of the site are worth trying after the first one failed."""
    # A missing page still leaves the usual paths; an unreachable, refused, overloaded or
    # failing site does not answer them better.
    return error.status is not None and error.status != 429 and error.status < 500


class _Search:
    """One discovery: the requests spent, the URLs tried, what the search learnt."""

    def __init__(self, fetcher: Fetcher, start: str, max_requests: int) -> None:
        self._fetcher = fetcher
        self._start = start
        self._budget = RequestBudget(max_requests)
        self._tried: set[str] = set()
        self._usual_tried = 0
        self._spent = False  # the budget ran out before every candidate was tried

    async def run(self) -> Discovery:
        page_url = self._start
        links: list[FeedLink] = []
        self._tried.add(self._start)
        try:
            result = await self._fetcher.fetch(self._start, budget=self._budget)
        except FetchError as error:
            if not _may_go_on(error):
                return self._done((), error.message)
            said = f"the page could not be read ({error.message})"
        else:
            page_url = result.final_url or self._start
            page = await asyncio.to_thread(_read_page, result, page_url)
            if page.feed is not None:
                # Polled where it was asked for, unless it moved for good.
                feed_url = result.permanent_url or self._start
                return self._done((replace(page.feed, url=feed_url),))
            links = page.links
            said = self._page_said(page)
        feeds: list[FoundFeed] = []
        for link in links:
            if link.url in self._tried:  # a page naming itself as its feed
                continue
            if self._out_of_requests():
                break
            found = await self._try(link.url, link.title)
            if found is not None and all(found.url != feed.url for feed in feeds):
                feeds.append(found)
        if feeds:
            return self._done(tuple(feeds))
        for candidate in usual_feed_urls(page_url):
            if candidate not in self._tried:
                if self._out_of_requests():
                    break
                self._usual_tried += 1
                found = await self._try(candidate, "")
                if found is not None:
                    return self._done((found,))
        return self._done((), self._reason(said))

    async def _try(self, url: str, fallback_title: str) -> FoundFeed | None:
        """Fetch one candidate and read it as a feed; None if it is not one."""
        self._tried.add(url)
        try:
            result = await self._fetcher.fetch(url, budget=self._budget)
            feed_url = result.permanent_url or url
            return await asyncio.to_thread(_read_feed, result, feed_url, fallback_title)
        except (FetchError, ParseError) as error:
            log.debug("discovery from %s: %s is not a feed: %s", self._start, url, error)
            return None

    def _out_of_requests(self) -> bool:
        self._spent = self._budget.used >= self._budget.limit
        return self._spent

    @staticmethod
    def _page_said(page: _Page) -> str:
        if page.problem:
            return f"the address is neither a feed nor a web page ({page.problem})"
        if page.links:
            if len(page.links) == 1:
                return "the feed the page links to could not be read"
            return f"none of the {len(page.links)} feeds the page links to could be read"
        return "the page links to no feed"

    def _reason(self, said: str) -> str:
        if self._usual_tried:
            said += f"; none of the {self._usual_tried} usual addresses tried answered with a feed"
        if self._spent:
            said += f" (gave up after {self._budget.limit} requests)"
        return said

    def _done(self, feeds: tuple[FoundFeed, ...], reason: str = "") -> Discovery:
        return Discovery(self._start, feeds, self._budget.used, reason)


async def discover(fetcher: Fetcher, url: str, *, max_requests: int = MAX_REQUESTS) -> Discovery:
    """Find the feeds at `url`; raise InvalidURL for a bad URL (fetch failures are the reason)."""
    return await _Search(fetcher, check_url(url), max_requests).run()
