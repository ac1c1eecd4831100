"""A room's filters: which items it keeps, by whole words and phrases; all pure.

Text is cut into words on anything that is not a letter or a digit, folded (case, accents,
œ/æ), so "d'emploi" holds "emploi" and "Installation" does not hold "install". A filter keeps
an item whose title or summary holds one of its `+` terms (if it has any) and none of its `-`
terms; a phrase is a sequence of whole words. Matching is linear in the text: its words are
read once, single words are set look-ups, phrases a Knuth-Morris-Pratt scan of the words. No
pattern a person typed is ever compiled.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from .model import Entry
from .sanitise import plain_text

MAX_TERMS: Final = 20  # words and phrases per room, all its filters together

ScopeKind = Literal["room", "region", "organisation", "feed"]

_WORD: Final = re.compile(r"[^\W_]+")  # letters and digits; `\w` alone would keep "_"
_LIGATURES: Final = str.maketrans({"œ": "oe", "æ": "ae"})  # after casefold: lower case only
_BOUNDARY: Final = ""  # between title and summary: no word equals it, so no phrase spans it


def words(text: str) -> list[str]:
    """Return the folded words of `text`: `"L'Été du Libre"` → `["l", "ete", "du", "libre"]`."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_LIGATURES))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WORD.findall(bare)


@dataclass(frozen=True, slots=True)
class Term:
    """One `+` or `-` word or phrase of a filter, folded."""

    words: tuple[str, ...]  # one for a word, more for a phrase
    keep: bool  # True for `+`, False for `-`

    @property
    def key(self) -> str:
        """Return how the store knows the term: its words joined by spaces."""
        return " ".join(self.words)


@dataclass(frozen=True, slots=True)
class Scope:
    """What a filter applies to in its room: all of it, or one region, organisation or feed."""

    kind: ScopeKind = "room"
    key: str = ""  # a region's or organisation's slug, a feed's id; "" for the whole room


ROOM_WIDE: Final = Scope()


class Text:
    """The words of an item's title and summary, read once, asked about many terms."""

    __slots__ = ("_vocabulary", "_words")

    def __init__(self, *parts: str) -> None:
        sequence: list[str] = []
        for part in parts:
            if sequence:
                sequence.append(_BOUNDARY)
            sequence.extend(words(part))
        self._words = sequence
        self._vocabulary = frozenset(sequence)

    @classmethod
    def of(cls, entry: Entry) -> Text:
        """Return the words a reader sees in an entry: its title, then its summary's text."""
        return cls(entry.title, plain_text(entry.summary_html))

    def holds(self, term: Sequence[str]) -> bool:
        """Tell whether the text holds the word, or the phrase as consecutive words."""
        if not term or any(word not in self._vocabulary for word in term):
            return False
        return len(term) == 1 or _occurs(term, self._words)


@dataclass(frozen=True, slots=True)
class Filter:
    """The terms of one scope in one room: one of `include` (if any), none of `exclude`."""

    include: tuple[tuple[str, ...], ...] = ()
    exclude: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def of(cls, terms: Iterable[Term]) -> Filter:
        """Return the filter made of these terms."""
        listed = list(terms)
        return cls(
            tuple(term.words for term in listed if term.keep),
            tuple(term.words for term in listed if not term.keep),
        )

    def keeps(self, text: Text) -> bool:
        """Tell whether an item with this text passes the filter."""
        if self.include and not any(text.holds(term) for term in self.include):
            return False
        return not any(text.holds(term) for term in self.exclude)


def keeps_all(filters: Iterable[Filter], text: Text) -> bool:
    """Tell whether an item passes every filter that applies to it in a room."""
    return all(item.keeps(text) for item in filters)


def _occurs(phrase: Sequence[str], text: Sequence[str]) -> bool:
    """Tell whether `phrase` occurs in `text` as consecutive words (Knuth-Morris-Pratt)."""
    # Each word of the text is compared a bounded number of times: no backtracking, so a
    # 100 KB summary of "a a a …" against "a a … b" costs as much as any other.
    fallback = [0] * len(phrase)
    matched = 0
    for position in range(1, len(phrase)):
        while matched and phrase[position] != phrase[matched]:
            matched = fallback[matched - 1]
        if phrase[position] == phrase[matched]:
            matched += 1
        fallback[position] = matched
    matched = 0
    for word in text:
        while matched and word != phrase[matched]:
            matched = fallback[matched - 1]
        if word == phrase[matched]:
            matched += 1
            if matched == len(phrase):
                return True
    return False
