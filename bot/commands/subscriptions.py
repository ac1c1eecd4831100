"""What a room follows: `!subscribe`, `!unsubscribe` and `!subscriptions`."""

from __future__ import annotations

from ..catalogue import normalise
from ..config import Organisation, Region
from ..errors import CommandError
from ..i18n import join_list
from .context import Context, Reply
from .lines import Lines
from .names import resolve_names
from .registry import Arguments
from .sources import is_url, source_names, subscribe_url, unsubscribe_source


async def subscribe_command(ctx: Context, args: Arguments) -> Reply:
    """Make the room follow organisations, regions, or a site's feed given by its URL."""
    if any(is_url(token.text) for token in args.tokens):
        if len(args.tokens) > 1:
            raise CommandError("error.one_url")
        return await subscribe_url(ctx, args.tokens[0].text)
    done: list[str] = []
    already: list[str] = []
    unmuted: list[str] = []
    for item in resolve_names(ctx, args.tokens):
        if isinstance(item, Region):
            added = await ctx.store.follow(ctx.room_id, "region", item.slug, now=ctx.now)
        else:
            added = await ctx.store.follow(ctx.room_id, "organisation", item.slug, now=ctx.now)
            if await ctx.store.unmute(ctx.room_id, item.slug):
                unmuted.append(item.name)
        (done if added else already).append(item.name)
    out = Lines(ctx.language)
    if done:
        out.add("subscribe.done", names=join_list(ctx.language, done))
    for name in unmuted:
        out.add("subscribe.unmuted", name=name)
    if already:
        out.add("subscribe.already", names=join_list(ctx.language, already))
    return out.reply()


async def unsubscribe_command(ctx: Context, args: Arguments) -> Reply:
    """Stop following; an organisation of a region the room still follows is muted instead.

    A room's own feed is named by its URL or its title.
    """
    own = await unsubscribe_source(ctx, args.text)
    if own is not None:
        return own
    items = resolve_names(ctx, args.tokens)
    subscriptions = await ctx.store.subscriptions(ctx.room_id)
    followed_regions = set(subscriptions.regions)
    done: list[str] = []
    absent: list[str] = []
    muted: list[tuple[str, str]] = []
    # Regions first, so "!unsubscribe france april" does not mute April in a region just left.
    regions = [item for item in items if isinstance(item, Region)]
    organisations = [item for item in items if isinstance(item, Organisation)]
    for region in regions:
        if await ctx.store.unfollow(ctx.room_id, "region", region.slug):
            followed_regions.discard(region.slug)
            done.append(region.name)
        else:
            absent.append(region.name)
    for organisation in organisations:
        removed = await ctx.store.unfollow(ctx.room_id, "organisation", organisation.slug)
        region = ctx.catalogue.region_of(organisation)
        if region.slug in followed_regions:
            await ctx.store.mute(ctx.room_id, organisation.slug, now=ctx.now)
            muted.append((organisation.name, region.name))
        elif removed:
            done.append(organisation.name)
        else:
            absent.append(organisation.name)
    out = Lines(ctx.language)
    if done:
        out.add("unsubscribe.done", names=join_list(ctx.language, done))
    for organisation_name, region_name in muted:
        out.add("unsubscribe.muted", organisation=organisation_name, region=region_name)
    for name in absent:
        out.add("unsubscribe.not_subscribed", name=name)
    return out.reply()


async def subscriptions_command(ctx: Context, args: Arguments) -> Reply:
    """Show what the room follows and mutes, by display name."""
    subscriptions = await ctx.store.subscriptions(ctx.room_id)
    catalogue = ctx.catalogue

    def region_name(slug: str) -> str:
        region = catalogue.get_region(slug)
        return region.name if region is not None else slug

    def organisation_name(slug: str) -> str:
        organisation = catalogue.get_organisation(slug)
        return organisation.name if organisation is not None else slug

    own = source_names(ctx, await ctx.store.room_sources(ctx.room_id))
    out = Lines(ctx.language)
    if not (subscriptions.regions or subscriptions.organisations or subscriptions.muted or own):
        out.add("subscriptions.none", command=ctx.command("subscribe"))
        return out.reply()
    out.add("subscriptions.header")
    sections = (
        ("subscriptions.regions", [region_name(slug) for slug in subscriptions.regions]),
        (
            "subscriptions.organisations",
            [organisation_name(slug) for slug in subscriptions.organisations],
        ),
        ("subscriptions.muted", [organisation_name(slug) for slug in subscriptions.muted]),
    )
    for key, names in sections:
        if names:
            out.add(key, names=join_list(ctx.language, sorted(names, key=normalise)))
    if own:
        out.add("subscriptions.sources", names=join_list(ctx.language, own))
    return out.reply()


async def received_organisations(ctx: Context) -> list[str]:
    """Return the organisations whose entries reach the room.

    Those followed, or in a followed region, and not muted: the store's routing rule.
    """
    subscriptions = await ctx.store.subscriptions(ctx.room_id)
    slugs = set(subscriptions.organisations)
    for region in subscriptions.regions:
        slugs.update(organisation.slug for organisation in ctx.catalogue.organisations_in(region))
    return sorted(slugs - set(subscriptions.muted))
