"""What the catalogue holds: `!orgs`, `!regions`, and the latest posts with `!latest`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from ..catalogue import normalise
from ..config import Organisation, Region
from ..dates import format_date
from ..errors import CommandError
from ..i18n import plural_key
from ..links import web_link
from ..model import Entry
from ..zones import Zone
from .context import MAX_ARGUMENT, Context, Reply
from .lines import Lines, linked, one_line, shown
from .names import MAX_SPAN, unknown_name
from .registry import Arguments, Token
from .sources import latest_of_source

MAX_LISTED: Final = 50  # lines of !orgs before "… and N more"
LATEST_DEFAULT: Final = 3
LATEST_MAX: Final = 5

_COUNT: Final = re.compile(r"[0-9]{1,4}")


async def orgs_command(ctx: Context, args: Arguments) -> Reply:
    """List organisations with their region, all or those of a region or matching a text."""
    catalogue = ctx.catalogue
    text = args.text
    if len(text) > MAX_ARGUMENT:
        raise CommandError("error.argument_too_long", max=MAX_ARGUMENT)
    out = Lines(ctx.language)
    if not text:
        found = list(catalogue.organisations)
        out.add("orgs.header", count=len(found))
    else:
        region = catalogue.find_region(text)
        name = region.name if region is not None else shown(text)
        # A filter of nothing but punctuation or emoji would otherwise match everything.
        found = catalogue.search_organisations(text) if normalise(text) else []
        if not found:
            out.add("orgs.none", filter=name)
            return out.reply()
        out.add("orgs.header_filtered", filter=name, count=len(found))
    for organisation in found[:MAX_LISTED]:
        out.add(
            "orgs.line",
            name=organisation.name,
            slug=organisation.slug,
            region=catalogue.region_of(organisation).name,
        )
    if len(found) > MAX_LISTED:
        out.add("orgs.truncated", count=len(found) - MAX_LISTED)
    return out.reply()


async def regions_command(ctx: Context, args: Arguments) -> Reply:
    """List regions with their number of organisations."""
    regions = ctx.catalogue.regions
    out = Lines(ctx.language)
    out.add("regions.header", count=len(regions))
    for region in regions:
        count = len(ctx.catalogue.organisations_in(region.slug))
        out.add(
            plural_key(ctx.language, "regions.line", count),
            name=region.name,
            slug=region.slug,
            count=count,
        )
    return out.reply()


async def latest_command(ctx: Context, args: Arguments) -> Reply:
    """Show the N latest posts of an organisation, a region's organisations, or a room source."""
    own = await latest_of_source(ctx, args.tokens, default=LATEST_DEFAULT, limit=LATEST_MAX)
    if own is not None:
        name, entries = own
        zone = ctx.catalogue.zone_of(None)  # a room source belongs to no region
        return _latest_reply(ctx, name, [(name, zone, entry) for entry in entries])
    item, count = _latest_arguments(ctx, args.tokens)
    if isinstance(item, Region):
        slugs = [organisation.slug for organisation in ctx.catalogue.organisations_in(item.slug)]
    else:
        slugs = [item.slug]
    found = []
    for slug, entry in await ctx.store.latest_entries(slugs, count):
        organisation = ctx.catalogue.get_organisation(slug)
        name = organisation.name if organisation is not None else slug
        found.append((name, ctx.catalogue.zone_of(organisation), entry))
    return _latest_reply(ctx, item.name, found)


def _latest_reply(ctx: Context, name: str, found: Sequence[tuple[str, Zone, Entry]]) -> Reply:
    """Answer `!latest`: a header, then one line per entry with the name of its source."""
    out = Lines(ctx.language)
    if not found:
        out.add("latest.none", name=name)
        return out.reply()
    out.add("latest.header", name=name)
    for source, zone, entry in found:
        title = one_line(entry.title, 200) or ctx.t("entry.untitled")
        plain, marked = linked(title, web_link(entry.link))
        date = (
            format_date(entry.published, ctx.language, zone)
            if entry.published is not None
            else ctx.t("latest.undated")
        )
        out.add(
            "latest.line",
            date=date,
            organisation=source,
            title=plain,
            markup={"title": marked},
        )
    return out.reply()


def _latest_arguments(ctx: Context, tokens: Sequence[Token]) -> tuple[Organisation | Region, int]:
    """Split `NAME [N]`: the whole text as a name first, else the last word as N."""
    whole = " ".join(token.text for token in tokens)
    item = ctx.catalogue.resolve(whole) if len(tokens) <= MAX_SPAN else None
    if item is not None:
        return item, LATEST_DEFAULT
    if len(tokens) < 2:
        raise unknown_name(ctx, whole)
    name = " ".join(token.text for token in tokens[:-1])
    item = ctx.catalogue.resolve(name)
    if item is None:
        raise unknown_name(ctx, name)
    value = tokens[-1].text
    if _COUNT.fullmatch(value) is None or not 1 <= int(value) <= LATEST_MAX:
        raise CommandError("error.invalid_number", value=shown(value), max=LATEST_MAX)
    return item, int(value)
