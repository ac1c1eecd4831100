"""Turn entries and digests into Matrix message content: plain text plus sanitised HTML.

Every function here is pure. Summaries go through nh3 (ammonia) with an allow-list drawn from the
tags the Matrix spec recommends for `m.room.message` HTML, minus:

- `font` and `span`: they exist to carry styling attributes, which are never kept;
- `h1`-`h6`: a heading shouts in a chat line, so it becomes a bold paragraph;
- `table` and its parts: chat clients render them poorly, so rows become lines and cells are
  separated by spaces;
- `img` unless its `src` is `mxc://`: Matrix clients display no other images, and feeds only
  point to the web, so in practice every feed image goes.

Attributes: only `a href` (http, https, mailto; relative links are resolved against the entry's
link, or dropped) and `img src` (mxc only). WordPress's "L'article X est apparu en premier sur Y."
/ "The post X appeared first on Y." footer is stripped: it repeats the title and the
organisation, which the message already shows.

Titles, organisation and region names are shown on one line, without control characters nor the
bidirectional embedding, override and isolate controls (U+202A-U+202E, U+2066-U+2069): left
open, one of these reverses what follows it, up to the date and the link of the message, which
lets a title disguise itself. Marks (U+200E, U+200F) and zero-width joiners stay: right-to-left
scripts and emoji need them.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from html.parser import HTMLParser
from typing import Any, Final
from urllib.parse import urlsplit

import nh3

from .config import Language, Organisation, Region
from .i18n import format_date, plural_key, t, t_html
from .links import visible, web_link
from .model import Entry

SUMMARY_BUDGET: Final = 500  # characters of summary text shown, cut on a word boundary
TITLE_BUDGET: Final = 300  # characters; a longer title is cut on a word boundary
# Far under Matrix's 64 KiB event limit even once encrypted (base64 and the megolm envelope
# inflate the content by about 40 %) and with the event's own envelope around it.
MAX_CONTENT_SIZE: Final = 16 * 1024
ELLIPSIS: Final = "…"
_LONG_WORD: Final = 30  # characters; a longer "word" is cut anywhere rather than dropped

# What the output may contain (a subset of the Matrix spec's recommended tags).
ALLOWED_TAGS: Final = frozenset(
    {
        "a",
        "b",
        "blockquote",
        "br",
        "code",
        "del",
        "details",
        "div",
        "em",
        "hr",
        "i",
        "img",
        "li",
        "ol",
        "p",
        "pre",
        "strike",
        "strong",
        "sub",
        "summary",
        "sup",
        "u",
        "ul",
    }
)
# Kept by the first sanitising pass only so that the cut can rewrite them into allowed tags.
_REWRITTEN: Final[Mapping[str, tuple[str, ...]]] = {
    **{f"h{level}": ("p", "strong") for level in range(1, 7)},
    "table": ("div",),
    "caption": ("div",),
    "tr": ("div",),
    "thead": (),
    "tbody": (),
    "tfoot": (),
    "th": (),
    "td": (),
}
_FIRST_PASS_TAGS: Final = ALLOWED_TAGS | _REWRITTEN.keys()
# Removed with their content: code, styling, embedded documents and their fallbacks.
_DROPPED_WITH_CONTENT: Final = frozenset(
    {
        "applet",
        "embed",
        "frame",
        "frameset",
        "iframe",
        "math",
        "noembed",
        "noframes",
        "noscript",
        "object",
        "script",
        "select",
        "style",
        "svg",
        "template",
        "textarea",
        "title",
        "xmp",
    }
)
_ATTRIBUTES: Final[Mapping[str, frozenset[str]]] = {
    "a": frozenset({"href"}),
    "img": frozenset({"src"}),
}
_LINK_SCHEMES: Final = frozenset({"http", "https", "mailto"})
_URL_SCHEMES: Final = _LINK_SCHEMES | {"mxc"}
_VOID_TAGS: Final = frozenset({"br", "hr", "img"})
_BLOCK_TAGS: Final = frozenset(
    {
        "blockquote",
        "br",
        "caption",
        "details",
        "div",
        "hr",
        "li",
        "ol",
        "p",
        "pre",
        "summary",
        "table",
        "tr",
        "ul",
        *(f"h{level}" for level in range(1, 7)),
    }
)
# Tags whose text never shows, when plain_text() is given unsanitised HTML.
_INVISIBLE_TAGS: Final = _DROPPED_WITH_CONTENT | {"head"}

_HTML_SPACE: Final = re.compile(r"[ \t\n\r\f]+")  # not \s: a no-break space is meaningful
_FOOTER_START: Final = re.compile(r"L[’']article\s|The post\s")
_FOOTER: Final = re.compile(
    r"(?:L[’']article|The\ post)\s"
    r"(?:(?!</?p>).){1,2000}?"
    r"\s(?:est\ apparu\ en\ premier\ sur|appeared\ first\ on)\s"
    r"(?:(?!</?p>).){1,2000}?"
    r"(?:</p>)?\s*\Z",
    re.DOTALL,
)
_EMPTY_ELEMENT: Final = re.compile(
    r"<(p|div|blockquote|li|ul|ol|b|i|u|strong|em|del|strike|sub|sup|code|pre|details|summary)>"
    r"(?:[ \t\n\r\f]|<br>)*</\1>"
    r'|<a href="[^"]*">[ \t\n\r\f]*</a>'
)
_FOOTER_MAX: Final = 5000  # a footer is shorter: only the end of a summary is searched
_BIDI_CONTROLS: Final = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_EDGE_TOKENS: Final = (" ", "\t", "\n", "\r", "\f", "<br>", "<hr>")


def render_entry(
    entry: Entry, organisation: Organisation, region: Region, language: Language
) -> dict[str, Any]:
    """Return the `m.notice` content announcing `entry`, never above MAX_CONTENT_SIZE bytes."""
    link = web_link(entry.link)
    summary = _sanitise_summary(entry.summary_html, base_url=link)
    title = _one_line(entry.title) or t(language, "entry.untitled")
    for shrunk in _shrinking(summary):
        content = _entry_content(
            title=_clip(title, TITLE_BUDGET),
            link=link,
            organisation=organisation.name,
            region=region.name,
            entry=entry,
            summary=shrunk,
            language=language,
        )
        if content_size(content) <= MAX_CONTENT_SIZE:
            return content
    # Only absurd titles, links or names get here: clip everything to a size that always fits.
    return _entry_content(
        title=_clip(title, 200),
        link=link if link is not None and len(link) <= 2000 else None,
        organisation=_clip(_one_line(organisation.name), 200),
        region=_clip(_one_line(region.name), 200),
        entry=entry,
        summary="",
        language=language,
    )


def render_digest(organisation: Organisation, count: int, language: Language) -> dict[str, Any]:
    """Return the one-line `m.notice` content standing for `count` entries not posted."""
    key = plural_key(language, "digest.more", count)
    name = _clip(_one_line(organisation.name), 200)
    url = web_link(organisation.url)
    if url is not None and len(url) > 2000:
        url = None
    body = t(language, key, count=count, organisation=name)
    name_html = html.escape(name, quote=False)
    if url is not None:
        body = f"{body}\n{url}"
        name_html = f'<a href="{html.escape(url)}">{name_html}</a>'
    formatted = t_html(language, key, count=str(count), organisation=name_html)
    return _notice(body, formatted)


def content_size(content: Mapping[str, Any]) -> int:
    """Return the size in bytes of `content` as canonical JSON (sorted keys, compact, UTF-8)."""
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return len(text.encode("utf-8"))


def sanitise_html(fragment: str, *, base_url: str | None = None, budget: int = 100_000) -> str:
    """Return `fragment` reduced to the allow-list and cut after `budget` characters of text.

    Relative links are resolved against `base_url` (http or https), or dropped.
    """
    return truncate_html(_first_pass(fragment, web_link(base_url)), budget)


def truncate_html(fragment: str, budget: int) -> str:
    """Cut sanitised HTML after about `budget` characters of text, on a word boundary, with "…".

    The result is well-formed and inside the allow-list. Line breaks and images count as one
    character, and at most `budget` tags are kept, so the output's size is bounded too.
    """
    cutter = _Cutter(budget)
    try:
        cutter.feed(fragment)
        cutter.close()
    except _BudgetSpent:
        pass
    result = _clean(cutter.result(), ALLOWED_TAGS, base_url=None)
    previous = None
    while previous != result:
        previous, result = result, _EMPTY_ELEMENT.sub("", result)
    return _strip_edges(result)


def plain_text(fragment: str) -> str:
    """Return the text a reader sees in an HTML fragment: one line per block, entities decoded."""
    parser = _TextParser()
    parser.feed(fragment)
    parser.close()
    return parser.result()


def _entry_content(
    *,
    title: str,
    link: str | None,
    organisation: str,
    region: str,
    entry: Entry,
    summary: str,
    language: Language,
) -> dict[str, Any]:
    source = f"{organisation} · {region}"
    body_lines = [source, title]
    title_html = f"<b>{html.escape(title, quote=False)}</b>"
    if link is not None:
        body_lines.append(link)
        title_html = f'<a href="{html.escape(link)}">{title_html}</a>'
    html_lines = [
        f"<b>{html.escape(organisation, quote=False)}</b> · {html.escape(region, quote=False)}"
    ]
    html_lines.append(title_html)
    if entry.published is not None:
        date = format_date(entry.published, language)
        body_lines.append(t(language, "entry.published", date=date))
        published = t_html(language, "entry.published", date=html.escape(date, quote=False))
        html_lines.append(f"<i>{published}</i>")
    body = "\n".join(body_lines)
    formatted = "<p>" + "<br>".join(html_lines) + "</p>"
    if summary:
        text = plain_text(summary)
        if text:
            body = f"{body}\n\n{text}"
        formatted = f"{formatted}<blockquote>{summary}</blockquote>"
    return _notice(body, formatted)


def _shrinking(summary: str) -> Iterator[str]:
    """Yield ever smaller forms of a sanitised summary, lazily, ending with none at all."""
    first = truncate_html(summary, SUMMARY_BUDGET)
    yield first
    yield truncate_html(summary, SUMMARY_BUDGET // 2)
    # Links and markup are what can be huge, so the text alone comes before giving up.
    yield _text_as_html(plain_text(first))
    yield ""


def _notice(body: str, formatted_body: str) -> dict[str, Any]:
    return {
        "msgtype": "m.notice",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": formatted_body,
    }


def _sanitise_summary(summary_html: str, *, base_url: str | None) -> str:
    return _strip_footer(_first_pass(summary_html, base_url))


def _first_pass(fragment: str, base_url: str | None) -> str:
    return _clean(fragment, _FIRST_PASS_TAGS, base_url=base_url)


def _clean(fragment: str, tags: frozenset[str], *, base_url: str | None) -> str:
    try:
        relative: nh3.UrlRelative = (
            ("rewrite_with_base", base_url) if base_url is not None else "deny"
        )
        return nh3.clean(
            fragment,
            tags=tags,
            clean_content_tags=_DROPPED_WITH_CONTENT,
            attributes=_ATTRIBUTES,
            attribute_filter=_filter_attribute,
            link_rel=None,
            url_schemes=_URL_SCHEMES,
            url_relative=relative,
        )
    except ValueError:
        # nh3 refuses a base it cannot parse; relative links then go, like without a base.
        if base_url is None:
            raise
        return _clean(fragment, tags, base_url=None)


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    # nh3 checks schemes too; this narrows them per attribute (no mxc links, only mxc images).
    if tag == "a" and attribute == "href":
        scheme = _scheme(value)
        # A relative link ("" scheme) is left to nh3, which resolves it or drops it.
        return visible(value) if scheme == "" or scheme in _LINK_SCHEMES else None
    if tag == "img" and attribute == "src":
        return visible(value) if _scheme(value) == "mxc" else None
    return None


def _scheme(url: str) -> str | None:
    try:
        return urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None


def _strip_footer(fragment: str) -> str:
    # The last candidate wins, so that a summary merely starting with "L'article" survives.
    tail = max(0, len(fragment) - _FOOTER_MAX)
    for start in reversed([m.start() for m in _FOOTER_START.finditer(fragment, tail)]):
        if _FOOTER.match(fragment, start):
            # The footer's own paragraph opened before its first word: drop that "<p>" too.
            return _strip_edges(fragment[:start], (*_EDGE_TOKENS, "<p>"), leading=False)
    return fragment


def _strip_edges(
    fragment: str, tokens: tuple[str, ...] = _EDGE_TOKENS, *, leading: bool = True
) -> str:
    # Index walking, not a regex anchored at the end: that would be quadratic on long runs.
    start, end = 0, len(fragment)
    while leading and start < end:
        token = next((tok for tok in tokens if fragment.startswith(tok, start, end)), None)
        if token is None:
            break
        start += len(token)
    while end > start:
        token = next((tok for tok in tokens if fragment.endswith(tok, start, end)), None)
        if token is None:
            break
        end -= len(token)
    return fragment[start:end]


def _text_as_html(text: str) -> str:
    return "<br>".join(html.escape(line, quote=False) for line in text.split("\n"))


def _one_line(text: str) -> str:
    printable = "".join(c if unicodedata.category(c) != "Cc" else " " for c in text)
    return " ".join(printable.translate(_BIDI_CONTROLS).split())


def _clip(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    return _cut_words(text, budget, word_started=False) + ELLIPSIS


def _cut_words(text: str, budget: int, *, word_started: bool) -> str:
    """Return the longest prefix of `text` within `budget` that ends on a word boundary.

    A word that began before `text` (`word_started`) or that is too long to be a word (a URL, a
    run of symbols) is cut where the budget ends: dropping it would lose too much.
    """
    if budget <= 0:
        return ""
    head = text[: budget + 1]
    space = max(head.rfind(" "), head.rfind("\n"))
    if len(text) <= budget or text[budget].isspace():
        cut = text[:budget]
    elif space > 0:
        cut = text[:space]
    elif word_started or len((text.split(maxsplit=1) or [""])[0]) > _LONG_WORD:
        cut = text[:budget]
    else:
        cut = ""
    # Punctuation that opens or joins what was cut away would dangle before the ellipsis.
    return cut.rstrip(" \t\n,;:«(—–-")


class _BudgetSpent(Exception):
    """Raised inside the parser to stop reading once the text budget is spent."""


class _Cutter(HTMLParser):
    """Re-emit sanitised HTML, rewriting headings and tables, until a text budget is spent."""

    def __init__(self, budget: int) -> None:
        super().__init__(convert_charrefs=True)
        self._budget = budget
        self._used = 0
        self._tags = 0
        self._out: list[str] = []
        # One item per open source tag: its name and the output tags it opened.
        self._open: list[tuple[str, tuple[str, ...]]] = []
        self._line_start = True  # no text since the last block boundary
        self._space_pending = False
        self._pre = 0

    def result(self) -> str:
        closing = [f"</{tag}>" for _, tags in reversed(self._open) for tag in reversed(tags)]
        return "".join(self._out + closing)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img" and not dict(attrs).get("src"):
            return  # nh3 kept the tag but dropped its non-mxc source
        if tag in _BLOCK_TAGS:
            self._line_start, self._space_pending = True, False
        elif self._space_pending:
            # Written before an inline tag opens, so that "a <b>b</b>" keeps its space outside.
            self._out.append(" ")
            self._used += 1
            self._space_pending = False
        self._tags += 1
        if self._tags > self._budget:
            self._out.append(ELLIPSIS)
            raise _BudgetSpent
        if tag in _VOID_TAGS:
            self._void(tag, dict(attrs))
            return
        if tag in _REWRITTEN:
            emitted = _REWRITTEN[tag]
        elif tag == "a":
            href = dict(attrs).get("href")
            emitted = ("a",) if href else ()
            if href:
                self._out.append(f'<a href="{html.escape(href)}">')
                self._open.append((tag, emitted))
                return
        elif tag in ALLOWED_TAGS:
            emitted = (tag,)
        else:
            emitted = ()
        if tag == "pre":
            self._pre += 1
        self._out.extend(f"<{name}>" for name in emitted)
        self._open.append((tag, emitted))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK_TAGS:
            self._line_start, self._space_pending = True, False
        elif tag in ("td", "th"):
            self._space_pending = not self._line_start
        names = [name for name, _ in self._open]
        if tag not in names:
            return
        depth = len(names) - 1 - names[::-1].index(tag)
        for name, emitted in reversed(self._open[depth:]):
            if name == "pre":
                self._pre -= 1
            self._out.extend(f"</{emitted_tag}>" for emitted_tag in reversed(emitted))
        del self._open[depth:]

    def handle_data(self, data: str) -> None:
        if self._pre:
            text = data
        else:
            collapsed = _HTML_SPACE.sub(" ", data)
            text = collapsed.strip(" ")
            if not text:
                self._space_pending |= bool(collapsed) and not self._line_start
                return
            if (self._space_pending or collapsed.startswith(" ")) and not self._line_start:
                text = " " + text
            # Held back: a space before a block boundary or the end is not shown.
            self._space_pending = collapsed.endswith(" ")
        # Breaks and images count too, so the budget may already be spent (never negative).
        remaining = max(self._budget - self._used, 0)
        if len(text) > remaining:
            word_started = not self._line_start and not text.startswith(" ")
            cut = _cut_words(text, remaining, word_started=word_started)
            self._out.append(html.escape(cut, quote=False) + ELLIPSIS)
            raise _BudgetSpent
        self._used += len(text)
        self._line_start = False
        self._out.append(html.escape(text, quote=False))

    def _void(self, tag: str, attrs: Mapping[str, str | None]) -> None:
        if self._used >= self._budget:
            self._out.append(ELLIPSIS)
            raise _BudgetSpent
        if tag == "img":
            self._out.append(f'<img src="{html.escape(attrs.get("src") or "")}">')
        else:
            self._out.append(f"<{tag}>")
        # Counted as text, so that a run of breaks or images cannot slip past the budget.
        self._used += 1


class _TextParser(HTMLParser):
    """Collect the visible text of HTML, one line per block."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._hidden: list[str] = []
        self._pre = 0

    def result(self) -> str:
        lines = "".join(self._parts).split("\n")
        return "\n".join(line.rstrip(" ") for line in lines if line.strip(" \t")).strip("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE_TAGS:
            self._hidden.append(tag)
        elif tag in _BLOCK_TAGS:
            self._parts.append("\n")
        if tag == "li":
            self._parts.append("• ")
        elif tag in ("td", "th") and self._parts and not self._parts[-1].endswith(("\n", " ")):
            self._parts.append(" ")
        elif tag == "pre":
            self._pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._hidden:
            del self._hidden[len(self._hidden) - 1 - self._hidden[::-1].index(tag) :]
        elif tag in _BLOCK_TAGS:
            self._parts.append("\n")
        if tag == "pre" and self._pre:
            self._pre -= 1

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._pre:
            self._parts.append(data)
            return
        text = _HTML_SPACE.sub(" ", data)
        if not self._parts or self._parts[-1].endswith(("\n", " ")):
            text = text.lstrip(" ")
        self._parts.append(text)
