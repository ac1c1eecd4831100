"""Turn calendar events into Matrix message content: plain text plus sanitised HTML; pure.

An announcement names where the event comes from (its organisation when known, and its
region), links its title (to its own URL, else its source's site), says when it takes place in
the region's zone, where, how a series repeats and when it next meets, and gives a summary
sanitised and cut as entries' are. A change or a cancellation is the same message headed
"Modifié :" / "Annulé :" (the reply relation to the first announcement is the sender's part).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .calendar import Event, When
from .config import Language
from .event_words import event_when, rule_words, span
from .i18n import t
from .links import web_link
from .render import (
    MAX_CONTENT_SIZE,
    TITLE_BUDGET,
    clip,
    content_size,
    message,
    one_line,
    shrinking,
)
from .sanitise import sanitise_summary
from .zones import Zone

Change = Literal["new", "changed", "cancelled"]


@dataclass(frozen=True, slots=True)
class EventSource:
    """Where an event comes from, as its message names it."""

    region: str  # the region's display name
    organisation: str | None = None  # the organisation's display name, when the calendar is one's
    site: str | None = None  # the source's web site: the link of an event without URL


def render_event(
    event: Event,
    source: EventSource,
    language: Language,
    *,
    zone: Zone,
    change: Change = "new",
) -> dict[str, Any]:
    """Return the `m.notice` content announcing `event`, never above MAX_CONTENT_SIZE bytes."""
    link = web_link(event.url) or web_link(source.site)
    summary = sanitise_summary(event.description_html, base_url=link)
    for shrunk in shrinking(summary):
        content = _content(event, source, language, zone, change, link, shrunk, TITLE_BUDGET)
        if content_size(content) <= MAX_CONTENT_SIZE:
            return content
    # Only absurd titles, places or links get here: clip them to a size that always fits.
    short = link if link is not None and len(link) <= 2000 else None
    return _content(event, _clipped(source), language, zone, change, short, "", 200)


def _content(
    event: Event,
    source: EventSource,
    language: Language,
    zone: Zone,
    change: Change,
    link: str | None,
    summary: str,
    title_budget: int,
) -> dict[str, Any]:
    title = clip(one_line(event.title) or t(language, "event.untitled"), title_budget)
    region = one_line(source.region)
    organisation = one_line(source.organisation) if source.organisation else None
    header = f"{organisation} · {region}" if organisation else region
    header_html = (
        f"<b>{_escape(organisation)}</b> · {_escape(region)}"
        if organisation
        else f"<b>{_escape(region)}</b>"
    )
    heading = title if change == "new" else t(language, f"event.{change}", title=title)
    heading_html = f"<b>{_escape(heading)}</b>"
    plain = [header, heading]
    marked = [header_html]
    if link is not None:
        plain.append(link)
        heading_html = f'<a href="{html.escape(link)}">{heading_html}</a>'
    marked.append(heading_html)
    for line, emphasised in _details(event, language, zone):
        plain.append(line)
        marked.append(f"<i>{_escape(line)}</i>" if emphasised else _escape(line))
    return message(plain, marked, summary)


def _details(event: Event, language: Language, zone: Zone) -> list[tuple[str, bool]]:
    """Return the lines saying when (emphasised) and where the event takes place."""
    lines: list[tuple[str, bool]] = []
    if event.rule is not None and event.next_start is not None:
        words = rule_words(event.rule, _local_start(event.next_start, zone), language)
        upcoming = span(event.next_start, shifted_end(event, event.next_start), language, zone)
        lines.append((t(language, "event.series", rule=words, next=upcoming), True))
    else:
        lines.append((event_when(event, language, zone), True))
        if event.rule is not None:
            lines.append((rule_words(event.rule, _local_start(event.start, zone), language), True))
    where = ", ".join(part for part in (event.place, event.city) if part)
    if where:
        lines.append((t(language, "event.place", place=clip(one_line(where), 300)), False))
    return lines


def shifted_end(event: Event, start: When) -> When | None:
    """Return the end of the occurrence starting at `start`: the series' duration after it."""
    end, first = event.end, event.start
    if isinstance(end, datetime) and isinstance(first, datetime):
        return start + (end - first)
    if end is not None and not isinstance(end, datetime) and not isinstance(first, datetime):
        return start + (end - first)
    return None


def _local_start(start: When, zone: Zone) -> When:
    return zone.local(start) if isinstance(start, datetime) else start


def _clipped(source: EventSource) -> EventSource:
    organisation = clip(one_line(source.organisation), 200) if source.organisation else None
    return EventSource(clip(one_line(source.region), 200), organisation, None)


def _escape(text: str) -> str:
    return html.escape(text, quote=False)
