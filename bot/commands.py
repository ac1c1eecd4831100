"""Chat commands: a registry of declared commands, and the guard every one of them runs behind.

Each command is declared once with `@REGISTRY.command(...)` (name, aliases, usage, whether it
changes the room's state); `!help` is generated from those declarations. `Commands` wraps every
handler in the same steps: parsing, per-user rate limiting, length limits, permission, logging,
and turning errors into replies in the configured language.

Names of organisations and regions are matched by the catalogue, ignoring case, accents, spaces
and punctuation. In a list of names (`!subscribe april ile de france`), the longest run of
words that names something is taken at each step, so multi-word names need no quoting; a name
between double quotes ("…"), guillemets (« … ») or curly quotes (“…”) is taken as one name,
which settles the rare case where words of two names would also form a third.
"""

from __future__ import annotations

import difflib
import html
import logging
import math
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, Protocol

from .catalogue import Catalogue, normalise
from .config import Language, Organisation, Region
from .errors import CrieurError
from .i18n import format_date, join_list, plural, plural_key, quote, t, t_html
from .links import web_link
from .store import FeedState, Store

log = logging.getLogger(__name__)

MAX_BODY: Final = 2000  # characters in a command message
MAX_ARGUMENT: Final = 200  # characters in one argument; configured names have at most 200
MAX_NAMES: Final = 20  # names in one !subscribe or !unsubscribe
MAX_SPAN: Final = 8  # words tried together as one name; no real name has more
MAX_COMMAND_WORD: Final = 64  # characters of the command word looked at
MAX_ECHO: Final = 64  # characters of a person's text quoted back in a reply
MAX_LISTED: Final = 50  # lines of !orgs before "… and N more"
MAX_FAILING_SHOWN: Final = 10  # failing feeds detailed in !status
MAX_HEALTHY_SHOWN: Final = 10  # a room's healthy feeds are detailed up to this many, else counted
LATEST_DEFAULT: Final = 3
LATEST_MAX: Final = 5
LONG_FAILURE: Final = 86400.0  # seconds without a success after which a failing feed stands out
LONG_FAILURE_ERRORS: Final = 3  # failures in a row after which a never-fetched feed stands out
RATE: Final = 1.0  # commands per second a user may sustain
BURST: Final = 3  # commands a user may send at once
MAX_TRACKED_USERS: Final = 10_000
# Stricter than the catalogue's 0.6: short aliases ("subs") look like half of every typo.
COMMAND_CUTOFF: Final = 0.7
# Under Matrix's 64 KiB event limit with room to spare for encryption and the reply envelope,
# like the relayed messages (render.MAX_CONTENT_SIZE).
MAX_REPLY_SIZE: Final = 16 * 1024

# Direction overrides and isolates can make an echoed name rewrite the reply around it.
_BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_TOKEN: Final = re.compile(r'"([^"]*)"?|«([^»]*)»?|“([^”]*)”?|(\S+)')
_COUNT: Final = re.compile(r"[0-9]{1,4}")


class CommandError(CrieurError):
    """A mistake the person can fix; answered with the message `key` filled from `params`."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


@dataclass(frozen=True, slots=True)
class Reply:
    """What a command answers: plain text, and HTML when the text carries markup."""

    text: str
    html: str | None = None


@dataclass(frozen=True, slots=True)
class Token:
    """One argument; `quoted` when it was written between quotes."""

    text: str
    quoted: bool = False


@dataclass(frozen=True, slots=True)
class Arguments:
    """The arguments of a command, as words and as the text they came from."""

    tokens: tuple[Token, ...]

    @property
    def text(self) -> str:
        """Return the arguments joined by single spaces, quotes removed."""
        return " ".join(token.text for token in self.tokens)


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler may use: the room and sender, the bot's data, and the time."""

    store: Store
    catalogue: Catalogue
    language: Language
    prefix: str
    manage_power_level: int
    room_id: str
    sender: str
    is_admin: bool
    now: float
    # (the bot encrypts, the room is encrypted); None when the caller does not say
    encryption: tuple[bool, bool] | None = None

    def t(self, key: str, **params: object) -> str:
        """Return the message `key` in the configured language."""
        return t(self.language, key, **params)

    def command(self, name: str) -> str:
        """Return how a person types the command `name` (`!help`)."""
        return f"{self.prefix}{name}"


Handler = Callable[[Context, Arguments], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A declared command: how it is called, what help says about it, who may run it."""

    name: str
    handler: Handler
    aliases: tuple[str, ...] = ()
    usage: str | None = None  # i18n key of the arguments, like `usage.subscribe`
    description: str = ""  # i18n key of the one-line description
    changes_state: bool = False  # moderators only
    min_args: int = 0


class Registry:
    """Commands by name and alias, matched ignoring case and accents."""

    def __init__(self) -> None:
        self._specs: list[CommandSpec] = []
        self._index: dict[str, CommandSpec] = {}

    def command(
        self,
        name: str,
        *,
        aliases: tuple[str, ...] = (),
        usage: str | None = None,
        changes_state: bool = False,
        min_args: int = 0,
    ) -> Callable[[Handler], Handler]:
        """Declare the decorated coroutine as the handler of command `name`."""

        def register(handler: Handler) -> Handler:
            spec = CommandSpec(
                name=name,
                handler=handler,
                aliases=aliases,
                usage=usage,
                description=f"help.{name}",
                changes_state=changes_state,
                min_args=min_args,
            )
            keys = [normalise(word) for word in (name, *aliases)]
            for key in keys:
                if not key or key in self._index:
                    raise ValueError(f"command name {key!r} of {name!r} is empty or taken")
            self._specs.append(spec)
            self._index.update(dict.fromkeys(keys, spec))
            return handler

        return register

    @property
    def specs(self) -> tuple[CommandSpec, ...]:
        """Every command, in the order help shows them."""
        return tuple(self._specs)

    def find(self, word: str) -> CommandSpec | None:
        """Return the command named or aliased `word`, ignoring case and accents."""
        return self._index.get(normalise(word[:MAX_COMMAND_WORD]))

    def suggest(self, word: str, limit: int = 3) -> list[str]:
        """Return the names of up to `limit` commands whose name or alias looks like `word`."""
        key = normalise(word[:MAX_COMMAND_WORD])
        names: list[str] = []
        close_keys = difflib.get_close_matches(
            key, list(self._index), n=limit * 3, cutoff=COMMAND_CUTOFF
        )
        for close in close_keys:
            name = self._index[close].name
            if name not in names:
                names.append(name)
        return names[:limit]


REGISTRY: Final = Registry()


class RateLimiter:
    """Per-user token buckets: a burst of `burst` commands, then `rate` per second.

    A user who runs dry is told once, then ignored until their bucket is full again, so a
    flood costs the room at most one extra message per burst.
    """

    def __init__(
        self, *, rate: float = RATE, burst: int = BURST, max_users: int = MAX_TRACKED_USERS
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max_users = max_users
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, user: str, now: float) -> Literal["run", "warn", "ignore"]:
        """Take one token for `user`: run the command, warn once, or ignore it."""
        bucket = self._buckets.get(user)
        if bucket is None:
            self._forget_idle(now)
            bucket = self._buckets[user] = _Bucket(self._burst, now)
        self._refill(bucket, now)
        if bucket.silenced:
            if bucket.tokens < self._burst:
                return "ignore"
            bucket.silenced = False
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return "run"
        bucket.silenced = True
        return "warn"

    def wait(self, user: str, now: float) -> int:
        """Return the whole seconds until `user` may send commands again."""
        bucket = self._buckets.get(user)
        if bucket is None:
            return 0
        self._refill(bucket, now)
        return max(1, math.ceil((self._burst - bucket.tokens) / self._rate))

    def _refill(self, bucket: _Bucket, now: float) -> None:
        # A clock stepping backwards must not drain anyone's bucket.
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
        bucket.updated = max(bucket.updated, now)

    def _forget_idle(self, now: float) -> None:
        """Keep the table bounded: drop full buckets, then the longest idle ones."""
        if len(self._buckets) < self._max_users:
            return
        full_after = self._burst / self._rate
        for user, bucket in list(self._buckets.items()):
            if now - bucket.updated >= full_after:
                del self._buckets[user]
        if len(self._buckets) >= self._max_users:
            by_age = sorted(self._buckets, key=lambda user: self._buckets[user].updated)
            for user in by_age[: len(by_age) - self._max_users // 2]:
                del self._buckets[user]


class _Bucket:
    __slots__ = ("silenced", "tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated
        self.silenced = False


class RoomView(Protocol):
    """What commands read of the room they run in; the Matrix side implements it."""

    async def power_level(self, room_id: str, user_id: str) -> int:
        """Return the user's power level in the room."""
        ...

    def encryption(self, room_id: str) -> tuple[bool, bool]:
        """Return (the bot encrypts, the room is encrypted)."""
        ...


class Commands:
    """Answers chat commands: `await commands(room, room_id, sender, event_id, body)`.

    Returns the Reply to send as a threaded notice, or None to stay silent (not a command,
    or a rate-limited sender already told to slow down).
    """

    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        *,
        language: Language,
        prefix: str,
        admins: Collection[str],
        manage_power_level: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not prefix or any(ch.isspace() for ch in prefix):
            raise ValueError("the command prefix must be non-empty text without spaces")
        self._store = store
        self._catalogue = catalogue
        self._language = language
        self._prefix = prefix
        self._admins = frozenset(admins)
        self._manage_power_level = manage_power_level
        self._clock = clock
        self._registry = REGISTRY
        self._limiter = RateLimiter()

    async def __call__(
        self, room: RoomView, room_id: str, sender: str, event_id: str, body: str
    ) -> Reply | None:
        """Run the command in `body`; return the reply to send, or None."""
        reply = await self._answer(room, room_id, sender, event_id, body)
        return None if reply is None else _fit(reply)

    async def _answer(
        self, room: RoomView, room_id: str, sender: str, event_id: str, body: str
    ) -> Reply | None:
        text = body.lstrip()
        if not text.startswith(self._prefix):
            return None
        rest = text[len(self._prefix) :]
        # "! hello" or "!!!" is someone's punctuation, not a command.
        if not rest or rest[0].isspace():
            return None
        word, *remainder = rest.split(maxsplit=1)
        if not normalise(word[:MAX_COMMAND_WORD]):
            return None
        now = self._clock()
        admission = self._limiter.admit(sender, now)
        if admission == "ignore":
            return None
        if admission == "warn":
            log.info("rate limited %s in %s", sender, room_id)
            seconds = self._limiter.wait(sender, now)
            return _error_reply(self._language, CommandError("error.slow_down", seconds=seconds))
        name = "?"
        try:
            spec, arguments = self._parse(word, "".join(remainder), body)
            name = spec.name
            context = self._context(room, room_id, sender, now)
            if spec.changes_state and not await self._may_manage(room, context):
                log.info("refused %s to %s in %s (event %s)", name, sender, room_id, event_id)
                raise CommandError("error.permission", level=self._manage_power_level)
            if len(arguments.tokens) < spec.min_args:
                raise CommandError("error.missing_argument", usage=_usage(context, spec))
            log.info("command %s from %s in %s (event %s)", name, sender, room_id, event_id)
            return await spec.handler(context, arguments)
        except CommandError as exc:
            return _error_reply(self._language, exc)
        # The one broad catch: whatever a handler hits, the person gets an answer and the
        # traceback lands in the log; CancelledError is a BaseException and goes through.
        except Exception:
            log.exception(
                "command %s from %s in %s (event %s) failed", name, sender, room_id, event_id
            )
            return Reply(t(self._language, "error.internal"))

    def _parse(self, word: str, remainder: str, body: str) -> tuple[CommandSpec, Arguments]:
        """Find the command and split its arguments; raise CommandError on bad input."""
        if len(body) > MAX_BODY:
            raise CommandError("error.argument_too_long", max=MAX_BODY)
        if len(word) > MAX_ARGUMENT:
            raise CommandError("error.argument_too_long", max=MAX_ARGUMENT)
        spec = self._registry.find(word)
        if spec is None:
            shown = _shown(self._prefix + word)
            suggestions = self._registry.suggest(word)
            if not suggestions:
                raise CommandError(
                    "error.unknown_command.no_suggestion",
                    command=shown,
                    help=self._prefix + "help",
                )
            raise CommandError(
                "error.unknown_command",
                command=shown,
                suggestions=join_list(
                    self._language,
                    (quote(self._language, self._prefix + name) for name in suggestions),
                    last="or",
                ),
            )
        tokens = tokenise(remainder)
        if any(len(token.text) > MAX_ARGUMENT for token in tokens):
            raise CommandError("error.argument_too_long", max=MAX_ARGUMENT)
        return spec, Arguments(tokens)

    def _context(self, room: RoomView, room_id: str, sender: str, now: float) -> Context:
        return Context(
            store=self._store,
            catalogue=self._catalogue,
            language=self._language,
            prefix=self._prefix,
            manage_power_level=self._manage_power_level,
            room_id=room_id,
            sender=sender,
            is_admin=sender in self._admins,
            now=now,
            encryption=room.encryption(room_id),
        )

    async def _may_manage(self, room: RoomView, context: Context) -> bool:
        if context.is_admin:
            return True
        level = await room.power_level(context.room_id, context.sender)
        return level >= self._manage_power_level


def tokenise(text: str) -> tuple[Token, ...]:
    """Split arguments on whitespace; text between "…", « … » or “…” is one argument.

    An opening quote without its closing one runs to the end of the text.
    """
    tokens: list[Token] = []
    for match in _TOKEN.finditer(text):
        bare = match.group(4)
        if bare is not None:
            tokens.append(Token(bare))
            continue
        inner = next(group for group in match.groups()[:3] if group is not None).strip()
        if inner:
            tokens.append(Token(inner, quoted=True))
    return tuple(tokens)


# --- the commands -----------------------------------------------------------------------------


@REGISTRY.command("help", aliases=("aide",))
async def help_command(ctx: Context, args: Arguments) -> Reply:
    """List every command, one line each, marking those for moderators."""
    out = _Lines(ctx.language)
    out.add("help.header")
    for spec in REGISTRY.specs:
        command = ctx.command(spec.name)
        if spec.usage is not None:
            command = f"{command} {ctx.t(spec.usage)}"
        notes = [ctx.t(spec.description)]
        if spec.changes_state:
            notes.append(ctx.t("help.moderators_only"))
        if spec.aliases:
            aliases = ", ".join(ctx.command(alias) for alias in spec.aliases)
            notes.append(ctx.t("help.aliases", aliases=aliases))
        out.add(
            "help.line",
            command=command,
            description=" ".join(notes),
            markup={"command": f"<code>{_escape(command)}</code>"},
        )
    out.add("help.footer", level=ctx.manage_power_level)
    return out.reply()


@REGISTRY.command("orgs", aliases=("organisations", "organizations"), usage="usage.orgs")
async def orgs_command(ctx: Context, args: Arguments) -> Reply:
    """List organisations with their region, all or those of a region or matching a text."""
    catalogue = ctx.catalogue
    text = args.text
    if len(text) > MAX_ARGUMENT:
        raise CommandError("error.argument_too_long", max=MAX_ARGUMENT)
    out = _Lines(ctx.language)
    if not text:
        found = list(catalogue.organisations)
        out.add("orgs.header", count=len(found))
    else:
        region = catalogue.find_region(text)
        shown = region.name if region is not None else _shown(text)
        # A filter of nothing but punctuation or emoji would otherwise match everything.
        found = catalogue.search_organisations(text) if normalise(text) else []
        if not found:
            out.add("orgs.none", filter=shown)
            return out.reply()
        out.add("orgs.header_filtered", filter=shown, count=len(found))
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


@REGISTRY.command("regions")
async def regions_command(ctx: Context, args: Arguments) -> Reply:
    """List regions with their number of organisations."""
    regions = ctx.catalogue.regions
    out = _Lines(ctx.language)
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


@REGISTRY.command(
    "subscribe",
    aliases=("sub", "abonner"),
    usage="usage.subscribe",
    changes_state=True,
    min_args=1,
)
async def subscribe_command(ctx: Context, args: Arguments) -> Reply:
    """Make the room follow organisations or regions; lift the mute of a named organisation."""
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
    out = _Lines(ctx.language)
    if done:
        out.add("subscribe.done", names=join_list(ctx.language, done))
    for name in unmuted:
        out.add("subscribe.unmuted", name=name)
    if already:
        out.add("subscribe.already", names=join_list(ctx.language, already))
    return out.reply()


@REGISTRY.command(
    "unsubscribe",
    aliases=("unsub", "desabonner"),
    usage="usage.unsubscribe",
    changes_state=True,
    min_args=1,
)
async def unsubscribe_command(ctx: Context, args: Arguments) -> Reply:
    """Stop following; an organisation of a region the room still follows is muted instead."""
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
    out = _Lines(ctx.language)
    if done:
        out.add("unsubscribe.done", names=join_list(ctx.language, done))
    for organisation_name, region_name in muted:
        out.add("unsubscribe.muted", organisation=organisation_name, region=region_name)
    for name in absent:
        out.add("unsubscribe.not_subscribed", name=name)
    return out.reply()


@REGISTRY.command("subscriptions", aliases=("subs", "abonnements"))
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

    out = _Lines(ctx.language)
    if not (subscriptions.regions or subscriptions.organisations or subscriptions.muted):
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
    return out.reply()


@REGISTRY.command("latest", aliases=("derniers",), usage="usage.latest", min_args=1)
async def latest_command(ctx: Context, args: Arguments) -> Reply:
    """Show the N latest posts of an organisation, or of a region's organisations."""
    item, count = _latest_arguments(ctx, args.tokens)
    if isinstance(item, Region):
        slugs = [organisation.slug for organisation in ctx.catalogue.organisations_in(item.slug)]
    else:
        slugs = [item.slug]
    found = await ctx.store.latest_entries(slugs, count)
    out = _Lines(ctx.language)
    if not found:
        out.add("latest.none", name=item.name)
        return out.reply()
    out.add("latest.header", name=item.name)
    for slug, entry in found:
        organisation = ctx.catalogue.get_organisation(slug)
        title = _one_line(entry.title, 200) or ctx.t("entry.untitled")
        link = web_link(entry.link)
        date = (
            format_date(entry.published, ctx.language)
            if entry.published is not None
            else ctx.t("latest.undated")
        )
        out.add(
            "latest.line",
            date=date,
            organisation=organisation.name if organisation is not None else slug,
            title=f"{title} — {link}" if link is not None else title,
            markup={
                "title": (
                    f'<a href="{html.escape(link)}">{_escape(title)}</a>'
                    if link is not None
                    else _escape(title)
                )
            },
        )
    return out.reply()


@REGISTRY.command("status", aliases=("etat",))
async def status_command(ctx: Context, args: Arguments) -> Reply:
    """Show the health of the feeds the room receives (admins: of every feed)."""
    out = _Lines(ctx.language)
    if ctx.is_admin:
        feeds = await ctx.store.feeds()
        out.add("status.header_all", count=len(feeds))
        detail_healthy = False
    else:
        feeds = await ctx.store.feeds(await _received_organisations(ctx))
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
    state = await ctx.store.room_state(ctx.room_id)
    if state is not None and state.paused_reason is not None:
        out.add(
            "status.paused",
            when=_date(ctx, state.paused_at if state.paused_at is not None else ctx.now),
            error=_one_line(state.paused_reason, 200),
        )
    pending = await ctx.store.outbox_size(ctx.room_id)
    if pending:
        out.add("status.pending", count=pending)
    if ctx.is_admin:
        out.add("status.pending_all", count=await ctx.store.outbox_size())
        out.add("status.paused_rooms", count=len(await ctx.store.paused_rooms()))
    if ctx.encryption is not None:
        bot_encrypts, room_encrypted = ctx.encryption
        if not bot_encrypts:
            out.add("status.encryption_off")
        elif room_encrypted:
            out.add("status.encryption_on_encrypted")
        else:
            out.add("status.encryption_on_plain")
    return out.reply()


# --- helpers ----------------------------------------------------------------------------------


def resolve_names(ctx: Context, tokens: Sequence[Token]) -> list[Organisation | Region]:
    """Resolve a list of names, longest match first; raise CommandError before any change.

    At each position the longest run of up to MAX_SPAN unquoted words that names an
    organisation or a region wins, so `ile de france april` is two names. A quoted argument is
    always one name. Duplicates are dropped.
    """
    found: list[Organisation | Region] = []
    seen: set[tuple[str, str]] = set()
    position = 0
    while position < len(tokens):
        match = _longest_match(ctx.catalogue, tokens, position)
        if match is None:
            # Report the whole run of words that names nothing: "ile de fronce", not "ile".
            end = position + 1
            while end < len(tokens) and _longest_match(ctx.catalogue, tokens, end) is None:
                end += 1
            raise _unknown_name(ctx, " ".join(token.text for token in tokens[position:end]))
        item, length = match
        position += length
        key = ("region" if isinstance(item, Region) else "organisation", item.slug)
        if key not in seen:
            seen.add(key)
            found.append(item)
            if len(found) > MAX_NAMES:
                raise CommandError("error.too_many_names", max=MAX_NAMES)
    return found


def _longest_match(
    catalogue: Catalogue, tokens: Sequence[Token], start: int
) -> tuple[Organisation | Region, int] | None:
    if tokens[start].quoted:
        item = catalogue.resolve(tokens[start].text)
        return (item, 1) if item is not None else None
    span = 0
    while span < MAX_SPAN and start + span < len(tokens) and not tokens[start + span].quoted:
        span += 1
    for length in range(span, 0, -1):
        item = catalogue.resolve(" ".join(token.text for token in tokens[start : start + length]))
        if item is not None:
            return item, length
    return None


def _latest_arguments(ctx: Context, tokens: Sequence[Token]) -> tuple[Organisation | Region, int]:
    """Split `NAME [N]`: the whole text as a name first, else the last word as N."""
    whole = " ".join(token.text for token in tokens)
    item = ctx.catalogue.resolve(whole) if len(tokens) <= MAX_SPAN else None
    if item is not None:
        return item, LATEST_DEFAULT
    if len(tokens) < 2:
        raise _unknown_name(ctx, whole)
    name = " ".join(token.text for token in tokens[:-1])
    item = ctx.catalogue.resolve(name)
    if item is None:
        raise _unknown_name(ctx, name)
    value = tokens[-1].text
    if _COUNT.fullmatch(value) is None or not 1 <= int(value) <= LATEST_MAX:
        raise CommandError("error.invalid_number", value=_shown(value), max=LATEST_MAX)
    return item, int(value)


def _unknown_name(ctx: Context, text: str) -> CommandError:
    suggestions = ctx.catalogue.suggest(text)
    if not suggestions:
        return CommandError(
            "error.unknown_name.no_suggestion",
            name=_shown(text),
            orgs=ctx.command("orgs"),
            regions=ctx.command("regions"),
        )
    return CommandError(
        "error.unknown_name",
        name=_shown(text),
        suggestions=join_list(
            ctx.language, (quote(ctx.language, name) for name in suggestions), last="or"
        ),
    )


async def _received_organisations(ctx: Context) -> list[str]:
    """Return the organisations whose entries reach the room: followed, or in a followed
    region, and not muted (the store's routing rule)."""
    subscriptions = await ctx.store.subscriptions(ctx.room_id)
    slugs = set(subscriptions.organisations)
    for region in subscriptions.regions:
        slugs.update(organisation.slug for organisation in ctx.catalogue.organisations_in(region))
    return sorted(slugs - set(subscriptions.muted))


def _feed_line(ctx: Context, out: _Lines, feed: FeedState) -> None:
    organisation = ctx.catalogue.get_organisation(feed.organisation)
    name = organisation.name if organisation is not None else feed.organisation
    details = [
        ctx.t("status.last_success", when=_date(ctx, feed.last_success))
        if feed.last_success is not None
        else ctx.t("status.never_succeeded")
    ]
    if feed.error_count:
        details.append(plural(ctx.language, "status.errors", feed.error_count))
        if feed.last_error:
            details.append(ctx.t("status.last_error", error=_one_line(feed.last_error, 160)))
    details.append(
        ctx.t("status.next_poll", when=_date(ctx, feed.next_poll))
        if feed.next_poll > ctx.now
        else ctx.t("status.next_poll_due")
    )
    url = _one_line(feed.url, 160)
    line = ctx.t("status.feed", organisation=name, url=url)
    line_html = t_html(
        ctx.language, "status.feed", organisation=f"<b>{_escape(name)}</b>", url=_escape(url)
    )
    plain = f"{line} — {' · '.join(details)}"
    marked = f"{line_html} — {' · '.join(_escape(detail) for detail in details)}"
    if _failing_long(feed, ctx.now):
        warning = ctx.t("status.failing_long")
        plain = f"{warning} — {plain}"
        marked = f"<strong>{_escape(warning)}</strong> — {marked}"
    out.add_raw(plain, marked)


def _failing_long(feed: FeedState, now: float) -> bool:
    if feed.error_count == 0:
        return False
    if feed.last_success is None:
        return feed.error_count >= LONG_FAILURE_ERRORS
    return now - feed.last_success >= LONG_FAILURE


def _usage(ctx: Context, spec: CommandSpec) -> str:
    command = ctx.command(spec.name)
    return f"{command} {ctx.t(spec.usage)}" if spec.usage is not None else command


def _date(ctx: Context, epoch: float) -> str:
    return format_date(datetime.fromtimestamp(epoch, UTC), ctx.language)


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _one_line(text: str, budget: int) -> str:
    """Return text on one line, without control or direction characters, cut to `budget`."""
    kept = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in text[: budget * 4]
        if ch not in _BIDI_CONTROLS and unicodedata.category(ch) != "Cs"
    )
    line = " ".join(kept.split())
    return line if len(line) <= budget else line[: budget - 1].rstrip() + "…"


def _shown(text: str) -> str:
    """Return a person's text fit to quote back: one line, short, no direction tricks."""
    return _one_line(text, MAX_ECHO)


def _error_reply(language: Language, error: CommandError) -> Reply:
    # Error messages carry no markup: plain text is the whole reply.
    return Reply(t(language, error.key, **error.params))


def _fit(reply: Reply) -> Reply:
    """Keep a reply sendable: valid UTF-8, and under MAX_REPLY_SIZE (HTML dropped first)."""
    text = reply.text.encode("utf-8", "replace").decode("utf-8")
    markup = reply.html.encode("utf-8", "replace").decode("utf-8") if reply.html else None
    size = len(text.encode()) + (len(markup.encode()) if markup else 0)
    if size <= MAX_REPLY_SIZE:
        return Reply(text, markup)
    encoded = text.encode()
    if len(encoded) > MAX_REPLY_SIZE:
        text = encoded[: MAX_REPLY_SIZE - 3].decode("utf-8", "ignore") + "…"
    return Reply(text)


class _Lines:
    """A reply built line by line, as plain text and as HTML at the same time."""

    def __init__(self, language: Language) -> None:
        self._language = language
        self._plain: list[str] = []
        self._html: list[str] = []
        self._marked = False

    def add(self, key: str, /, *, markup: dict[str, str] | None = None, **params: object) -> None:
        """Add the message `key`; `markup` gives the HTML of some parameters, others escaped."""
        self._plain.append(t(self._language, key, **params))
        html_params = {name: _escape(str(value)) for name, value in params.items()}
        if markup:
            html_params.update(markup)
            self._marked = True
        self._html.append(t_html(self._language, key, **html_params))

    def add_raw(self, plain: str, markup: str) -> None:
        """Add a line already written in both forms (`markup` must be safe HTML)."""
        self._plain.append(plain)
        self._html.append(markup)
        self._marked = True

    def reply(self) -> Reply:
        """Return the reply; HTML only when some line carries markup."""
        text = "\n".join(self._plain)
        return Reply(text, "<br>".join(self._html) if self._marked else None)
