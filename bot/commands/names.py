"""Names of organisations and regions typed in commands, matched by the catalogue.

Matching ignores case, accents, spaces and punctuation. In a list of names
(`!subscribe april ile de france`), the longest run of words that names something is taken at
each step, so multi-word names need no quoting; a quoted argument is always one name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ..catalogue import Catalogue
from ..config import Organisation, Region
from ..errors import CommandError
from ..i18n import join_list, quote
from .context import Context
from .lines import shown
from .registry import Token

MAX_NAMES: Final = 20  # names in one !subscribe or !unsubscribe
MAX_SPAN: Final = 8  # words tried together as one name; no real name has more


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
            raise unknown_name(ctx, " ".join(token.text for token in tokens[position:end]))
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


def unknown_name(ctx: Context, text: str) -> CommandError:
    """Return the error for a name that matches nothing, with up to three suggestions."""
    suggestions = ctx.catalogue.suggest(text)
    if not suggestions:
        return CommandError(
            "error.unknown_name.no_suggestion",
            name=shown(text),
            orgs=ctx.command("orgs"),
            regions=ctx.command("regions"),
        )
    return CommandError(
        "error.unknown_name",
        name=shown(text),
        suggestions=join_list(
            ctx.language, (quote(ctx.language, name) for name in suggestions), last="or"
        ),
    )
