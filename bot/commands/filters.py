"""`!filter`: the words a room keeps or leaves out, for the whole room or one source.

`!filter [SOURCE] +word -word "a phrase"` adds terms; `!filter` alone lists them (anyone);
`!filter clear [SOURCE]` removes them. SOURCE is written first, without quotes: one of the
room's own feeds (the URL typed, the feed's URL or its title), an organisation or a region of
the catalogue. Terms carry their sign (`+` keep, `-` leave out); a phrase between quotes
("…", « … », “…”) without a sign is a `+` phrase.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ..catalogue import normalise
from ..config import Region
from ..errors import CommandError
from ..filters import MAX_TERMS, ROOM_WIDE, Scope, Term, words
from ..i18n import plural_key
from ..store import RoomSource
from .context import Context, Reply
from .lines import Lines, one_line, shown
from .names import unknown_name
from .registry import Arguments
from .sources import find_source, is_url, title_of

log = logging.getLogger(__name__)

MAX_PHRASE: Final = 8  # words in one phrase
MAX_SHOWN: Final = 80  # characters of a term in a list
CLEAR: Final = "clear"
_CLOSING: Final = {'"': '"', "«": "»", "“": "”", "„": "“"}
_SIGNS: Final = {"+": True, "-": False, "−": False}  # "−": the minus sign some keyboards give


@dataclass(frozen=True, slots=True)
class TypedTerm:
    """A term as the store keeps it: folded, and as the room will see it listed."""

    term: Term
    shown: str


@dataclass(frozen=True, slots=True)
class FilterRequest:
    """What one `!filter` asks: terms for a source (or the whole room), or clearing."""

    source: str  # "" for the whole room
    terms: tuple[TypedTerm, ...] = ()
    clear: bool = False


@dataclass(frozen=True, slots=True)
class _Piece:
    sign: str  # "+", "-" or "" when none was typed
    text: str
    quoted: bool


async def filter_command(ctx: Context, args: Arguments) -> Reply:
    """List, add to or clear the room's filters."""
    if not args.tokens:
        return await _listing(ctx, Lines(ctx.language))
    request = parse_request(ctx, args.raw)
    if request.clear:
        return await _clear(ctx, request.source)
    if not request.terms:
        raise CommandError("filter.no_terms", example=_example(ctx))
    scope, name = await _scope(ctx, request.source)
    typed = [(item.term, item.shown) for item in request.terms]
    change = await ctx.store.add_filter_terms(
        ctx.room_id, scope, typed, now=ctx.now, max_terms=MAX_TERMS
    )
    if change.refused:
        raise CommandError(
            "filter.too_many",
            max=MAX_TERMS,
            count=change.total,
            adding=change.new,
            clear=f"{ctx.command('filter')} {CLEAR}",
        )
    changed = change.new + change.switched
    log.info("room %s: %d terms changed in its %s filter", ctx.room_id, changed, scope.kind)
    out = Lines(ctx.language)
    out.add("filter.updated" if changed else "filter.unchanged", scope=name)
    return await _listing(ctx, out)


def parse_request(ctx: Context, text: str) -> FilterRequest:
    """Read `[SOURCE] +word -word "a phrase"` or `clear [SOURCE]`; raise CommandError."""
    pieces = _pieces(ctx, text)
    if pieces and not pieces[0].sign and normalise(pieces[0].text) == CLEAR:
        return FilterRequest(" ".join(piece.text for piece in pieces[1:]), clear=True)
    source: list[str] = []
    terms: dict[str, TypedTerm] = {}
    for piece in pieces:
        if not piece.sign and not piece.quoted:
            if terms:
                raise CommandError("filter.unsigned", word=shown(piece.text), example=_example(ctx))
            source.append(piece.text)
            continue
        typed = _typed_term(piece)
        earlier = terms.get(typed.term.key)
        if earlier is not None and earlier.term.keep != typed.term.keep:
            raise CommandError("filter.both_signs", term=shown(piece.text))
        terms.setdefault(typed.term.key, typed)
    return FilterRequest(" ".join(source), tuple(terms.values()))


def _pieces(ctx: Context, text: str) -> list[_Piece]:
    """Cut the arguments into signed words and quoted phrases, in one pass."""
    pieces: list[_Piece] = []
    position, end = 0, len(text)
    while position < end:
        char = text[position]
        if char.isspace():
            position += 1
            continue
        sign = ""
        if char in _SIGNS:
            sign = "+" if _SIGNS[char] else "-"
            position += 1
            if position == end or text[position].isspace():
                raise CommandError("filter.empty_term", sign=char)
            char = text[position]
        if char in _CLOSING:
            closing = text.find(_CLOSING[char], position + 1)
            if closing < 0:
                raise CommandError(
                    "filter.unterminated", text=shown(text[position:]), example=_example(ctx)
                )
            pieces.append(_Piece(sign, text[position + 1 : closing], quoted=True))
            position = closing + 1
            continue
        stop = position
        while stop < end and not text[stop].isspace():
            stop += 1
        pieces.append(_Piece(sign, text[position:stop], quoted=False))
        position = stop
    return pieces


def _typed_term(piece: _Piece) -> TypedTerm:
    folded = tuple(words(piece.text))
    sign = piece.sign or "+"
    written = f'{sign}"{piece.text.strip()}"' if piece.quoted else f"{sign}{piece.text}"
    if not folded:
        raise CommandError("filter.no_letters", term=shown(written))
    if len(folded) > MAX_PHRASE:
        raise CommandError("filter.term_too_long", term=shown(written), max=MAX_PHRASE)
    return TypedTerm(Term(folded, sign == "+"), one_line(written, MAX_SHOWN))


async def _scope(ctx: Context, text: str) -> tuple[Scope, str]:
    """Return what SOURCE names in this room, and its name; the whole room when empty."""
    if not text:
        return ROOM_WIDE, ctx.t("filter.whole_room")
    source = find_source(await ctx.store.room_sources(ctx.room_id), text)
    if source is not None:
        return Scope("feed", str(source.feed.id)), title_of(source.feed)
    if is_url(text):
        raise CommandError("error.source_not_followed", url=one_line(text, 200))
    item = ctx.catalogue.resolve(text)
    if item is None:
        raise unknown_name(ctx, text)
    if isinstance(item, Region):
        return Scope("region", item.slug), item.name
    return Scope("organisation", item.slug), item.name


async def _clear(ctx: Context, source: str) -> Reply:
    out = Lines(ctx.language)
    if not source:
        removed = await ctx.store.clear_filters(ctx.room_id)
        out.add("filter.cleared" if removed else "filter.nothing_to_clear")
        return out.reply()
    scope, name = await _scope(ctx, source)
    removed = await ctx.store.clear_filters(ctx.room_id, scope)
    if removed:
        out.add("filter.cleared_scope", scope=name)
    else:
        out.add("filter.nothing_to_clear")
    return await _listing(ctx, out) if removed else out.reply()


async def _listing(ctx: Context, out: Lines) -> Reply:
    """Add the room's filters, scope by scope, and what they held back, to `out`."""
    stored = await ctx.store.room_filters(ctx.room_id)
    if not stored:
        out.add("filter.none", example=_example(ctx))
        return out.reply()
    out.add("filter.header", count=len(stored), max=MAX_TERMS)
    sources = await ctx.store.room_sources(ctx.room_id)
    by_scope: dict[Scope, list[str]] = {}
    for item in stored:
        by_scope.setdefault(item.scope, []).append(item.shown)
    for scope, shown_terms in by_scope.items():
        out.add(
            "filter.scope", scope=_scope_name(ctx, scope, sources), terms=", ".join(shown_terms)
        )
    out.add("filter.rule")
    held = await ctx.store.held_back(ctx.room_id)
    out.add(plural_key(ctx.language, "filter.held_back", held), count=held)
    return out.reply()


async def filter_status_line(ctx: Context, out: Lines) -> None:
    """Add to `!status` how many words the room filters on and what they held back."""
    stored = await ctx.store.room_filters(ctx.room_id)
    held = await ctx.store.held_back(ctx.room_id)
    if stored or held:
        key = plural_key(ctx.language, "filter.status", held)
        out.add(key, count=held, words=len(stored), max=MAX_TERMS)


def _scope_name(ctx: Context, scope: Scope, sources: Sequence[RoomSource]) -> str:
    if scope.kind == "room":
        return ctx.t("filter.whole_room")
    if scope.kind == "feed":
        for source in sources:
            if str(source.feed.id) == scope.key:
                return title_of(source.feed)
        return scope.key
    item = (
        ctx.catalogue.get_region(scope.key)
        if scope.kind == "region"
        else ctx.catalogue.get_organisation(scope.key)
    )
    return item.name if item is not None else scope.key


def _example(ctx: Context) -> str:
    return f'{ctx.command("filter")} +linux -emploi "logiciel libre"'
