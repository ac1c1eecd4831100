"""`!status`: the health of the feeds a room receives, its deliveries, its encryption, the
bot's identity."""

from __future__ import annotations

from typing import Final

from ..config import Organisation
from ..i18n import plural, plural_key, t_html
from ..redact import mask_url, mask_urls
from ..store import FeedState
from .context import Context, Reply
from .filters import filter_status_line
from .lines import Lines, date_of, escape, one_line
from .registry import Arguments
from .sources import title_of
from .subscriptions import received_organisations
from .trust import short_key

MAX_FAILING_SHOWN: Final = 10  # failing feeds detailed in !status
MAX_HEALTHY_SHOWN: Final = 10  # a room's healthy feeds are detailed up to this many, else counted
LONG_FAILURE: Final = 86400.0  # seconds without a success after which a failing feed stands out
LONG_FAILURE_ERRORS: Final = 3  # failures in a row after which a never-fetched feed stands out


async def status_command(ctx: Context, args: Arguments) -> Reply:
    """Show the health of the feeds the room receives (admins: of every feed)."""
    out = Lines(ctx.language)
    if ctx.is_admin:
        feeds = await ctx.store.feeds()
        out.add("status.header_all", count=len(feeds))
        detail_healthy = False
    else:
        feeds = await ctx.store.feeds(await received_organisations(ctx))
        known = {feed.id for feed in feeds}
        own = [source.feed for source in await ctx.store.room_sources(ctx.room_id)]
        # A region's calendars belong to no organisation: the region's followers receive them.
        regions = set(await ctx.store.followed_regions(ctx.room_id))
        own += [feed for feed in await ctx.store.feeds() if feed.region in regions]
        feeds += [feed for feed in own if feed.id not in known]
        out.add("status.header")
        detail_healthy = len(feeds) <= MAX_HEALTHY_SHOWN
    if not feeds and not ctx.is_admin:
        out.add("status.none")
    else:
        # Longest failing first: oldest last success, never-succeeded before everything.
        failing = sorted(
            (feed for feed in feeds if feed.error_count > 0),
            key=lambda feed: (feed.last_success or 0.0, -feed.error_count, feed.id),
        )
        healthy = [feed for feed in feeds if feed.error_count == 0]
        out.add("status.summary", ok=len(healthy), failing=len(failing))
        for feed in failing[:MAX_FAILING_SHOWN]:
            _feed_line(ctx, out, feed)
        hidden = len(failing) - MAX_FAILING_SHOWN
        if hidden > 0:
            out.add(plural_key(ctx.language, "status.more_failing", hidden), count=hidden)
        if detail_healthy:
            for feed in healthy:
                _feed_line(ctx, out, feed)
    await _delivery_lines(ctx, out)
    await filter_status_line(ctx, out)
    bot_encrypts, room_encrypted = ctx.encryption
    if not bot_encrypts:
        out.add("status.encryption_off")
    elif room_encrypted:
        out.add("status.encryption_on_encrypted")
    else:
        out.add("status.encryption_on_plain")
    if bot_encrypts:
        _identity_line(ctx, out)
    return out.reply()


def _identity_line(ctx: Context, out: Lines) -> None:
    """Add the bot's cross-signing identity and the trust policy it applies."""
    policy = ctx.view.trust_policy() or "—"
    key = ctx.view.master_key()
    if key is None:
        out.add("status.identity_none", policy=policy)
    else:
        out.add("status.identity", master_key=short_key(key), policy=policy)


async def _delivery_lines(ctx: Context, out: Lines) -> None:
    """Add whether delivery to the room is paused and what waits to be sent."""
    state = await ctx.store.room_state(ctx.room_id)
    if state is not None and state.paused_reason is not None:
        zone = ctx.catalogue.room_zone(await ctx.store.followed_regions(ctx.room_id))
        paused_at = state.paused_at if state.paused_at is not None else ctx.now
        out.add(
            "status.paused",
            when=date_of(paused_at, ctx.language, zone),
            error=one_line(state.paused_reason, 200),
        )
    pending = await ctx.store.outbox_size(ctx.room_id)
    if pending:
        out.add("status.pending", count=pending)
    if ctx.is_admin:
        out.add("status.pending_all", count=await ctx.store.outbox_size())
        out.add("status.paused_rooms", count=len(await ctx.store.paused_rooms()))


def _feed_line(ctx: Context, out: Lines, feed: FeedState) -> None:
    organisation = ctx.catalogue.get_organisation(feed.organisation)
    region = ctx.catalogue.get_region(feed.region) if feed.region else None
    if feed.room_source:
        name = title_of(feed)
    elif region is not None:
        name = region.name  # a region's calendar
    else:
        name = organisation.name if organisation is not None else feed.organisation
    zone = ctx.catalogue.zone_of(organisation or region)
    details = [
        *_origin(ctx, feed, organisation),
        ctx.t("status.last_success", when=date_of(feed.last_success, ctx.language, zone))
        if feed.last_success is not None
        else ctx.t("status.never_succeeded"),
    ]
    if feed.error_count:
        details.append(plural(ctx.language, "status.errors", feed.error_count))
        if feed.last_error:
            error = one_line(mask_urls(feed.last_error), 160)
            details.append(ctx.t("status.last_error", error=error))
    details.append(
        ctx.t("status.next_poll", when=date_of(feed.next_poll, ctx.language, zone))
        if feed.next_poll > ctx.now
        else ctx.t("status.next_poll_due")
    )
    url = one_line(mask_url(feed.url), 160)
    line = ctx.t("status.feed", organisation=name, url=url)
    line_html = t_html(
        ctx.language, "status.feed", organisation=f"<b>{escape(name)}</b>", url=escape(url)
    )
    plain = f"{line} — {' · '.join(details)}"
    marked = f"{line_html} — {' · '.join(escape(detail) for detail in details)}"
    if _failing_long(feed, ctx.now):
        warning = ctx.t("status.failing_long")
        plain = f"{warning} — {plain}"
        marked = f"<strong>{escape(warning)}</strong> — {marked}"
    out.add_raw(plain, marked)


def _origin(ctx: Context, feed: FeedState, organisation: Organisation | None) -> list[str]:
    """Say where a configured feed's URL comes from when it is not the one configured."""
    if feed.room_source or feed.kind != "feed" or organisation is None:
        return []
    if organisation.url and not organisation.feeds and feed.config_url != organisation.url:
        return [ctx.t("status.discovered", site=one_line(mask_url(organisation.url), 160))]
    if feed.url != feed.config_url:  # found again on the site, or moved by a redirect
        return [ctx.t("status.instead_of", url=one_line(mask_url(feed.config_url), 160))]
    return []


def _failing_long(feed: FeedState, now: float) -> bool:
    if feed.error_count == 0:
        return False
    if feed.last_success is None:
        return feed.error_count >= LONG_FAILURE_ERRORS
    return now - feed.last_success >= LONG_FAILURE
