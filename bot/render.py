"""Turn entries and digests into Matrix message content: plain text plus sanitised HTML.

Every function here is pure; `sanitise` makes summaries safe and cuts them. Titles,
organisation and region names are shown on one line, without control characters nor the
bidirectional embedding, override and isolate controls (U+202A-U+202E, U+2066-U+2069): left
open, one of these reverses what follows it, up to the date and the link of the message, which
lets a title disguise itself. Marks (U+200E, U+200F) and zero-width joiners stay: right-to-left
scripts and emoji need them.
"""

from __future__ import annotations

import html
import json
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any, Final

from .config import Language, Organisation, Region
from .dates import format_date
from .i18n import plural_key, t, t_html
from .links import web_link
from .model import Entry, Source
from .sanitise import ELLIPSIS, cut_words, plain_text, sanitise_summary, text_as_html, truncate_html
from .zones import Zone

SUMMARY_BUDGET: Final = 500  # characters of summary text shown, cut on a word boundary
TITLE_BUDGET: Final = 300  # characters; a longer title is cut on a word boundary
# Far under Matrix's 64 KiB event limit even once encrypted (base64 and the megolm envelope
# inflate the content by about 40 %) and with the event's own envelope around it.
MAX_CONTENT_SIZE: Final = 16 * 1024
_BIDI_CONTROLS: Final = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def render_entry(
    entry: Entry, organisation: Organisation, region: Region, language: Language, *, zone: Zone
) -> dict[str, Any]:
    """Return the `m.notice` content announcing `entry`, never above MAX_CONTENT_SIZE bytes.

    A region without a name (a room source's) leaves the organisation's name alone on its line.
    Its date is shown in `zone`, the zone of the organisation's region.
    """
    link = web_link(entry.link)
    summary = sanitise_summary(entry.summary_html, base_url=link)
    title = one_line(entry.title) or t(language, "entry.untitled")
    for shrunk in shrinking(summary):
        content = _entry_content(
            title=clip(title, TITLE_BUDGET),
            link=link,
            organisation=organisation.name,
            region=region.name,
            entry=entry,
            summary=shrunk,
            language=language,
            zone=zone,
        )
        if content_size(content) <= MAX_CONTENT_SIZE:
            return content
    # Only absurd titles, links or names get here: clip everything to a size that always fits.
    return _entry_content(
        title=clip(title, 200),
        link=link if link is not None and len(link) <= 2000 else None,
        organisation=clip(one_line(organisation.name), 200),
        region=clip(one_line(region.name), 200),
        entry=entry,
        summary="",
        language=language,
        zone=zone,
    )


def render_digest(organisation: Organisation, count: int, language: Language) -> dict[str, Any]:
    """Return the one-line `m.notice` content standing for `count` entries not posted."""
    key = plural_key(language, "digest.more", count)
    name = clip(one_line(organisation.name), 200)
    url = web_link(organisation.url)
    if url is not None and len(url) > 2000:
        url = None
    body = t(language, key, count=count, organisation=name)
    name_html = html.escape(name, quote=False)
    if url is not None:
        body = f"{body}\n{url}"
        name_html = f'<a href="{html.escape(url)}">{name_html}</a>'
    formatted = t_html(language, key, count=str(count), organisation=name_html)
    return notice(body, formatted)


def source_as_organisation(source: Source) -> Organisation:
    """Return a room source as messages name it: its title, its site as its homepage."""
    # A feed's title is the feed's say: one line, no direction controls, as entry titles.
    return Organisation("", clip(one_line(source.title), 200), "", url=source.site_url)


def content_size(content: Mapping[str, Any]) -> int:
    """Return the size in bytes of `content` as canonical JSON (sorted keys, compact, UTF-8)."""
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return len(text.encode("utf-8"))


def _entry_content(
    *,
    title: str,
    link: str | None,
    organisation: str,
    region: str,
    entry: Entry,
    summary: str,
    language: Language,
    zone: Zone,
) -> dict[str, Any]:
    # A room source has no region: its title alone names it.
    source = f"{organisation} · {region}" if region else organisation
    body_lines = [source, title]
    title_html = f"<b>{html.escape(title, quote=False)}</b>"
    if link is not None:
        body_lines.append(link)
        title_html = f'<a href="{html.escape(link)}">{title_html}</a>'
    source_html = f"<b>{html.escape(organisation, quote=False)}</b>"
    if region:
        source_html = f"{source_html} · {html.escape(region, quote=False)}"
    html_lines = [source_html]
    html_lines.append(title_html)
    if entry.published is not None:
        date = format_date(entry.published, language, zone)
        body_lines.append(t(language, "entry.published", date=date))
        published = t_html(language, "entry.published", date=html.escape(date, quote=False))
        html_lines.append(f"<i>{published}</i>")
    return message(body_lines, html_lines, summary)


def message(lines: list[str], html_lines: list[str], summary: str) -> dict[str, Any]:
    """Return a notice of lines (plain, and safe HTML) followed by a sanitised summary."""
    body = "\n".join(lines)
    formatted = "<p>" + "<br>".join(html_lines) + "</p>"
    if summary:
        text = plain_text(summary)
        if text:
            body = f"{body}\n\n{text}"
        formatted = f"{formatted}<blockquote>{summary}</blockquote>"
    return notice(body, formatted)


def shrinking(summary: str) -> Iterator[str]:
    """Yield ever smaller forms of a sanitised summary, lazily, ending with none at all."""
    first = truncate_html(summary, SUMMARY_BUDGET)
    yield first
    yield truncate_html(summary, SUMMARY_BUDGET // 2)
    # Links and markup are what can be huge, so the text alone comes before giving up.
    yield text_as_html(plain_text(first))
    yield ""


def notice(body: str, formatted_body: str) -> dict[str, Any]:
    """Return `m.notice` content with its plain and HTML bodies."""
    return {
        "msgtype": "m.notice",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": formatted_body,
    }


def one_line(text: str) -> str:
    """Return text on one line, without control nor bidirectional embedding characters."""
    printable = "".join(c if unicodedata.category(c) != "Cc" else " " for c in text)
    return " ".join(printable.translate(_BIDI_CONTROLS).split())


def clip(text: str, budget: int) -> str:
    """Return text cut on a word boundary to `budget` characters, with an ellipsis if cut."""
    if len(text) <= budget:
        return text
    return cut_words(text, budget, word_started=False) + ELLIPSIS
