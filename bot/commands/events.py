"""`!events`: the next events of what the room follows, or of one region or organisation."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from ..config import Organisation, Region
from ..errors import CommandError
from ..event_words import span
from ..links import web_link
from ..render_event import shifted_end
from ..store import StoredEvent
from .context import Context, Reply
from .lines import Lines, linked, one_line, shown
from .names import MAX_SPAN, unknown_name
from .registry import Arguments, Token

EVENTS_DEFAULT: Final = 5
EVENTS_MAX: Final = 10

_COUNT: Final = re.compile(r"[0-9]{1,4}")


async def events_command(ctx: Context, args: Arguments) -> Reply:
    """List the next events, soonest first, in the room's time zone."""
    item, count = _arguments(ctx, args.tokens)
    if item is None:
        regions, organisations = await _followed(ctx)
    elif isinstance(item, Region):
        regions = [item.slug]
        organisations = [org.slug for org in ctx.catalogue.organisations_in(item.slug)]
    else:
        regions, organisations = [], [item.slug]
    found = await ctx.store.upcoming_events(regions, organisations, now=ctx.now, limit=count)
    out = Lines(ctx.language)
    if not found:
        if item is None:
            out.add("events.none_room", command=ctx.command("subscriptions"))
        else:
            out.add("events.none", name=item.name)
        return out.reply()
    if item is None:
        out.add("events.header_room")
    else:
        out.add("events.header", name=item.name)
    zone = ctx.catalogue.room_zone(await ctx.store.followed_regions(ctx.room_id))
    for stored in found:
        event = stored.event
        start = event.next_start or event.start
        end = shifted_end(event, start) if event.next_start is not None else event.end
        title = one_line(event.title, 200) or ctx.t("event.untitled")
        plain, marked = linked(title, web_link(event.url))
        out.add(
            "events.line",
            when=span(start, end, ctx.language, zone),
            source=_source_name(ctx, stored),
            title=plain,
            markup={"title": marked},
        )
    return out.reply()


async def _followed(ctx: Context) -> tuple[list[str], list[str]]:
    """Return the regions and organisations whose events belong to the room: as routing says."""
    subscriptions = await ctx.store.subscriptions(ctx.room_id)
    organisations = set(subscriptions.organisations)
    for slug in subscriptions.regions:
        organisations.update(org.slug for org in ctx.catalogue.organisations_in(slug))
    organisations -= set(subscriptions.muted)
    return list(subscriptions.regions), sorted(organisations)


def _source_name(ctx: Context, stored: StoredEvent) -> str:
    organisation = ctx.catalogue.get_organisation(stored.organisation)
    if organisation is not None:
        return organisation.name
    region = ctx.catalogue.get_region(stored.region)
    return region.name if region is not None else stored.region or stored.organisation


def _arguments(ctx: Context, tokens: Sequence[Token]) -> tuple[Organisation | Region | None, int]:
    """Split `[NAME] [N]`: the whole text as a name first, else the last word as N."""
    if not tokens:
        return None, EVENTS_DEFAULT
    whole = " ".join(token.text for token in tokens)
    item = ctx.catalogue.resolve(whole) if len(tokens) <= MAX_SPAN else None
    if item is not None:
        return item, EVENTS_DEFAULT
    *words, last = tokens
    if _COUNT.fullmatch(last.text) is None:
        raise unknown_name(ctx, whole)
    if not 1 <= int(last.text) <= EVENTS_MAX:
        raise CommandError("error.invalid_number", value=shown(last.text), max=EVENTS_MAX)
    if not words:
        return None, int(last.text)
    name = " ".join(token.text for token in words)
    found = ctx.catalogue.resolve(name)
    if found is None:
        raise unknown_name(ctx, name)
    return found, int(last.text)
