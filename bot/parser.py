"""Turn a fetched feed body into normalised entries: pure (no I/O, no clock), run in a thread.

The rules the rest of Crieur relies on:

- Charset: the one of the HTTP Content-Type when the server gave one (whatever the media
  type, and even under an XML declaration without an encoding), else the document's own.
- Count: the ``MAX_ENTRIES`` newest entries of a fetch, the older ones ignored.
- Order: oldest first. Dated entries are sorted by date (published, else updated, else
  created). The base order is the reverse of the document order, since feeds list newest first,
  unless the feed's own dates mostly rise down the document, in which case the document order
  is kept. An undated entry stays right after the entry that precedes it in the base order (it
  is sorted with that entry's date, or before every dated entry if none precedes it); so a feed
  without dates comes out in reverse document order.
- Key: the entry id (RSS guid, Atom id), else its link, else ``sha256:`` and the hex digest of
  title, date and summary. Keys are as feedparser reports them, never normalised, and depend on
  the body alone: the feed URL is not given to feedparser, which would resolve guids against it
  (it still resolves Atom ids and permalink guids against an ``xml:base`` found in the body).
  An id longer than ``MAX_KEY`` is replaced by ``sha256:`` and its digest.
- Duplicate keys within one fetch: the oldest entry keeps the key; each later entry with other
  content gets ``key + "\\x00" + 16 hex digits`` of a digest of its title, link, date and
  summary. XML cannot carry U+0000, so no id of a well-formed feed looks like that, and the
  suffix does not move when entries come and go around it. A later entry identical to an
  earlier one is dropped.
- Title: plain text (tags stripped, entities decoded, white space collapsed, no-break spaces
  kept), at most ``MAX_TITLE`` characters. An untitled entry (Mastodon) is titled with the start
  of its summary's text (``UNTITLED_TITLE`` characters, cut on a word boundary, ``…``), else with
  its link. An entry with no title, no summary and no link is dropped.
- Link: the first ``rel="alternate"`` HTML link, else ``link``, resolved against the feed URL;
  only http and https links are kept, control and format characters (bidirectional overrides,
  zero-width spaces) percent-encoded.
- Summary: the summary, else the first HTML content, else the first content, as HTML (plain text
  escaped), relative URLs resolved, at most ``MAX_SUMMARY_BYTES`` of UTF-8. Not safe to show:
  feedparser's sanitiser is a first layer only; sanitise.py owns safety.
- Failure: an empty body, a document that is not a feed, a truncated feed (expat stopped at the
  end of the document), a body feedparser chokes on, a DTD with nested entities, entities
  whose references would expand past ``feed_xml.MAX_ENTITY_EXPANSION`` characters (a "quadratic
  blowup") or a feed without usable entries raises ``ParseError``, never ``[]``.

Known limit (feedparser 6): when the root element has no ``xml:base``, the ``xml:base`` of an
element also applies to the elements after it, so a relative URL there may be resolved wrongly.
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import html
import io
import re
import time
import xml.parsers.expat
import xml.sax
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from html.parser import HTMLParser
from itertools import pairwise
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.parsers.expat import errors as expat_errors

import feedparser
from feedparser.urls import resolve_relative_uris

from . import links
from .errors import ParseError
from .feed_xml import refuse_entity_bombs, response_headers
from .model import Entry

MAX_TITLE = 500
MAX_FEED_TITLE = 200
UNTITLED_TITLE = 80
MAX_SUMMARY_BYTES = 64 * 1024
MAX_KEY = 1024
MAX_ENTRIES = 1000  # per fetch, the newest ones

# Enough markup around a title's text without letting a hostile feed make us parse megabytes.
_MAX_RAW_TITLE = 16 * MAX_TITLE
_DUPLICATE_SEPARATOR = "\x00"
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "html", "xhtml"})
_LINK_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_DATE_FIELDS = ("published", "updated", "created")
_DAWN = datetime.min.replace(tzinfo=UTC)

# Expat's errors for a document that stops before its end: the last entry would be partial.
_TRUNCATION_ERRORS = frozenset(
    {
        expat_errors.XML_ERROR_NO_ELEMENTS,
        expat_errors.XML_ERROR_UNCLOSED_TOKEN,
        expat_errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
        expat_errors.XML_ERROR_PARTIAL_CHAR,
    }
)

# An attribute that may hold a URL, whose value does not start with a scheme. Only a shortcut:
# summaries without one skip a second pass of feedparser's HTML processor.
_MAYBE_RELATIVE_URL = re.compile(
    r"""\s(?:href|src|cite|poster|longdesc|usemap|data|action|background|codebase|classid|profile)"""
    r"""\s*=\s*["']?(?![a-z][a-z0-9+.-]*:)""",
    re.IGNORECASE,
)
_TAG = re.compile(r"<[^>]*>?")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
# No-break spaces are typography in French ("Libre à vous !"), not layout: keep them.
_SPACES = re.compile(r"[^\S\u00a0\u202f]+")


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A feed's own title (plain text, at most ``MAX_FEED_TITLE`` characters) and its entries."""

    title: str  # empty when the feed has none
    entries: list[Entry]
    link: str | None = None  # the site the feed belongs to, as an absolute http(s) URL


def parse(body: bytes, *, feed_url: str, content_type: str | None = None) -> list[Entry]:
    """Turn a fetched body into entries, oldest first; raise ParseError if it holds none.

    ``content_type`` is the response's Content-Type header: its charset, when it has one,
    decodes the body whatever the document says of itself.
    """
    return parse_feed(body, feed_url=feed_url, content_type=content_type).entries


def parse_feed(body: bytes, *, feed_url: str, content_type: str | None = None) -> ParsedFeed:
    """Like `parse`, also giving the feed's own title and site."""
    if not body.strip():
        raise ParseError("the body is empty")
    headers = response_headers(content_type)
    # A stream, never bytes or str: feedparser treats those as a file name or a URL to open.
    # No Content-Location either: feedparser would resolve guids against it, mangling keys.
    try:
        refuse_entity_bombs(body, headers)
        result = feedparser.parse(
            io.BytesIO(body),
            response_headers=headers,
            sanitize_html=True,
            resolve_relative_uris=True,
        )
    except (ValueError, TypeError) as error:
        # feedparser 6 crashes on some broken bodies (an encoding it cannot decode after all, a
        # stray <width> end tag): an unreadable feed, which must count as a failed poll.
        raise ParseError(f"unreadable feed ({type(error).__name__}: {error})") from error
    _check(result)
    entries = [entry for raw in result.entries if (entry := _entry(raw, feed_url)) is not None]
    if not entries:
        raise ParseError("the feed has no usable entries (no title, summary or link)")
    # Only the newest: a feed regenerating thousands of ids on every fetch would otherwise add
    # that many rows to the database at each poll. Stable for real feeds, whose newest entries
    # stay the newest from one fetch to the next.
    entries = _disambiguate(_oldest_first(entries))[-MAX_ENTRIES:]
    channel = result.get("feed") or {}
    title = plain_title(_title(channel), MAX_FEED_TITLE)
    return ParsedFeed(title, entries, _link(channel, feed_url))


def plain_title(text: str, limit: int) -> str:
    """Return text on one line without control characters, cut on a word to `limit` characters."""
    return _shorten(_clean_text(text), limit)


def _check(result: Mapping[str, Any]) -> None:
    """Raise ParseError unless feedparser found a complete feed with entries."""
    problem = result.get("bozo_exception")
    if not result.get("version"):
        detail = f" ({_describe(problem)})" if problem is not None else ""
        raise ParseError(f"not an RSS or Atom feed{detail}")
    message = problem.getMessage() if isinstance(problem, xml.sax.SAXParseException) else None
    if message in _TRUNCATION_ERRORS:
        raise ParseError(f"the feed is truncated ({_describe(problem)})")
    if not result.get("entries"):
        raise ParseError("the feed holds no entries")


def _describe(problem: object) -> str:
    """Say where a document went wrong, in one short phrase."""
    if isinstance(problem, xml.sax.SAXParseException):
        return f"{problem.getMessage()} at line {problem.getLineNumber()}"
    return str(problem)


def _entry(raw: Mapping[str, Any], feed_url: str) -> Entry | None:
    """Normalise one feedparser entry, or return None if it has nothing to show."""
    summary_html = _summary(raw, feed_url)
    link = _link(raw, feed_url)
    title = _title(raw)
    if not title:
        title = _shorten(_html_to_text(summary_html), UNTITLED_TITLE) or link or ""
    if not title and not summary_html and link is None:
        return None
    published = _published(raw)
    return Entry(
        key=_key(raw, title, published, summary_html),
        title=title,
        link=link,
        published=published,
        summary_html=summary_html,
    )


def _key(raw: Mapping[str, Any], title: str, published: datetime | None, summary: str) -> str:
    """Return the entry's id, else its link, else a digest of what it says."""
    for candidate in (raw.get("id"), raw.get("link")):
        if isinstance(candidate, str) and candidate.strip():
            if len(candidate) > MAX_KEY:
                return "sha256:" + _sha256(candidate)
            return candidate
    return "sha256:" + _sha256(title, published.isoformat() if published else "", summary)


def _sha256(*parts: str) -> str:
    """Return the hex SHA-256 of the parts joined with NUL, which XML text cannot hold."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _title(raw: Mapping[str, Any]) -> str:
    """Return the entry's title as plain text, or an empty string."""
    value = raw.get("title")
    if not isinstance(value, str) or not value:
        return ""
    value = value[:_MAX_RAW_TITLE]
    detail = raw.get("title_detail") or {}
    # feedparser says text/plain when the title holds no markup: "<div> en CSS" stays as is.
    text = value if detail.get("type") == "text/plain" else _html_to_text(value)
    return _shorten(_clean_text(text), MAX_TITLE)


def _summary(raw: Mapping[str, Any], feed_url: str) -> str:
    """Return the entry's summary (else its content) as HTML with absolute URLs, capped."""
    detail = _summary_detail(raw)
    if detail is None:
        return ""
    value: str = detail.get("value") or ""
    content_type = detail.get("type") or "text/html"
    if content_type not in _HTML_TYPES:
        value = html.escape(value, quote=False)
    elif _MAYBE_RELATIVE_URL.search(value):
        # Without a Content-Location, feedparser only resolved against xml:base; finish the job
        # against the feed URL so that sanitise.py, which keeps http(s) links only, keeps them.
        try:
            base = urljoin(feed_url, detail.get("base") or "")
        except ValueError:  # an xml:base urllib cannot read, e.g. "http://[::1"
            base = feed_url
        value = resolve_relative_uris(value, base, "utf-8", content_type)
    return _cap_utf8(value.strip(), MAX_SUMMARY_BYTES)


def _summary_detail(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Pick the summary, else the first HTML content, else the first content."""
    summary: Mapping[str, Any] | None = raw.get("summary_detail")
    if summary and (summary.get("value") or "").strip():
        return summary
    contents: list[Mapping[str, Any]] = [
        content for content in raw.get("content") or () if (content.get("value") or "").strip()
    ]
    for content in contents:
        if content.get("type") in _HTML_TYPES:
            return content
    return contents[0] if contents else None


def _cap_utf8(markup: str, limit: int) -> str:
    """Cut markup to at most `limit` bytes of UTF-8, never inside a character or a tag."""
    data = markup.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return markup
    cut = data[:limit].decode("utf-8", "ignore")
    # Half a tag would reach the sanitiser as text, showing attributes to readers.
    opening = cut.rfind("<")
    if opening > cut.rfind(">"):
        cut = cut[:opening]
    return cut


def _link(raw: Mapping[str, Any], feed_url: str) -> str | None:
    """Return the entry's web page as an absolute http(s) URL, or None."""
    for candidate, must_be_absolute in _link_candidates(raw):
        url = _web_url(candidate, feed_url, must_be_absolute=must_be_absolute)
        if url is not None:
            return url
    return None


def _link_candidates(raw: Mapping[str, Any]) -> Iterator[tuple[object, bool]]:
    """Yield possible links, best first, each with whether it must already be absolute."""
    for link in raw.get("links") or ():
        if link.get("rel", "alternate") == "alternate" and link.get("type") in _LINK_TYPES:
            yield link.get("href"), False
    link = raw.get("link")
    # feedparser copies a permalink guid into `link`; a guid like "4812" is no address, and
    # resolving it against the feed URL would invent one.
    copied_from_guid = bool(raw.get("guidislink")) and link == raw.get("id")
    yield link, copied_from_guid


def _web_url(candidate: object, feed_url: str, *, must_be_absolute: bool) -> str | None:
    """Resolve a link against the feed URL; keep it only if it is http(s)."""
    if not isinstance(candidate, str):
        return None
    href = candidate.strip()
    if not href or len(href) > links.MAX_LENGTH:
        return None
    try:
        parts = urlsplit(href)
        # Only a relative reference is resolved: urljoin would turn "https://" into the feed URL.
        if not parts.scheme and not must_be_absolute:
            href = urljoin(feed_url, href)
            parts = urlsplit(href)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    if parts.scheme.lower() not in links.WEB_SCHEMES or not parts.hostname:
        return None
    return links.visible(href)  # shown as text in messages: nothing may hide in it


def _published(raw: Mapping[str, Any]) -> datetime | None:
    """Return the entry's date (published, else updated, else created) in UTC, or None."""
    for field in _DATE_FIELDS:
        when = _from_iso(raw.get(field)) or _from_struct(raw.get(f"{field}_parsed"))
        if when is not None:
            return when
    return None


def _from_iso(value: object) -> datetime | None:
    """Parse an ISO 8601 date; naive ones are UTC, as feedparser takes them."""
    # feedparser reads compact ISO dates ("20260108T103200Z") through time.mktime, in the
    # machine's zone; datetime reads them, and every other ISO date, without a zone.
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip())
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return when.replace(microsecond=0)


def _from_struct(value: object) -> datetime | None:
    """Turn feedparser's UTC struct_time into an aware datetime."""
    if not isinstance(value, time.struct_time):
        return None
    try:
        # timegm, not mktime: the struct is UTC, whatever the machine's zone.
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _oldest_first(entries: list[Entry]) -> list[Entry]:
    """Order entries oldest first (see the module docstring for the rule)."""
    dates = [entry.published for entry in entries if entry.published is not None]
    rising = sum(1 for earlier, later in pairwise(dates) if later > earlier)
    falling = sum(1 for earlier, later in pairwise(dates) if later < earlier)
    base = entries if rising > falling else entries[::-1]
    sort_keys: list[datetime] = []
    last = _DAWN
    for entry in base:
        if entry.published is not None:
            last = entry.published
        sort_keys.append(last)
    order = sorted(range(len(base)), key=sort_keys.__getitem__)
    return [base[index] for index in order]


def _disambiguate(entries: list[Entry]) -> list[Entry]:
    """Make keys unique: later entries sharing a key get a content suffix, copies are dropped."""
    seen: dict[str, set[str]] = {}
    unique: list[Entry] = []
    for entry in entries:
        digest = _sha256(
            entry.title,
            entry.link or "",
            entry.published.isoformat() if entry.published else "",
            entry.summary_html,
        )[:16]
        digests = seen.setdefault(entry.key, set())
        if digest in digests:
            continue
        if digests:
            entry = dataclasses.replace(entry, key=entry.key + _DUPLICATE_SEPARATOR + digest)
        digests.add(digest)
        unique.append(entry)
    return unique


def _html_to_text(markup: str) -> str:
    """Return the visible text of an HTML fragment, white space collapsed."""
    if not markup:
        return ""
    extractor = _TextExtractor()
    try:
        extractor.feed(markup)
        extractor.close()
    except AssertionError:  # how html.parser rejects some broken declarations ("<![x[")
        return _clean_text(html.unescape(_TAG.sub(" ", markup)))
    return _clean_text(extractor.text())


def _clean_text(text: str) -> str:
    """Turn control characters into spaces and collapse white space, keeping no-break spaces."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()


def _shorten(text: str, limit: int) -> str:
    """Cut text to at most `limit` characters on a word boundary, ending with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip().rstrip(",;:.…-–—«(").rstrip() + "…"


class _TextExtractor(HTMLParser):
    """Collect the text of an HTML fragment; blocks and line breaks become spaces."""

    _BLOCKS = frozenset(
        {
            "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
            "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header",
            "hr", "li", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
        }
    )  # fmt: skip
    _HIDDEN = frozenset({"script", "style", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCKS:
            self._parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCKS:
            self._parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._parts.append(data)

    def text(self) -> str:
        """Return the text collected so far."""
        return "".join(self._parts)
