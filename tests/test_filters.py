"""Filters, pure: whole words and phrases, ignoring case and accents, `+` and `-` terms."""

from __future__ import annotations

import pytest

from bot.filters import Filter, Term, Text, keeps_all, words
from bot.model import Entry


def term(text: str, keep: bool = True) -> Term:
    return Term(tuple(words(text)), keep)


def keeps(text: str, *terms: Term, summary: str = "") -> bool:
    return Filter.of(terms).keeps(Text.of(Entry("k", text, None, None, summary)))


def test_words_split_on_anything_but_letters_and_digits() -> None:
    assert words("Offre d'emploi : développeur·se (H/F) — C++_2026") == [
        "offre",
        "d",
        "emploi",
        "developpeur",
        "se",
        "h",
        "f",
        "c",
        "2026",
    ]


def test_words_fold_case_accents_and_ligatures() -> None:
    assert words("ÎLE-DE-FRANCE Cœur Æther Straße") == [
        "ile",
        "de",
        "france",
        "coeur",
        "aether",
        "strasse",
    ]


def test_an_apostrophe_separates_words_whichever_its_kind() -> None:
    assert keeps("Offre d'emploi", term("emploi"))
    assert keeps("Offre d’emploi", term("emploi"))
    assert keeps("L'Été du Libre", term("ete"))


def test_a_word_matches_whole_never_inside_another() -> None:
    assert not keeps("Installation de Debian", term("install"))
    assert keeps("Install party de Debian", term("install"))
    assert not keeps("Linuxfr", term("linux"))


def test_matching_ignores_case_and_accents_on_both_sides() -> None:
    assert keeps("RÉUNION mensuelle", term("réunion"))
    assert keeps("reunion mensuelle", term("Réunion"))
    assert keeps("Événement", term("EVENEMENT"))


def test_a_phrase_matches_its_words_in_sequence() -> None:
    phrase = term("logiciel libre")
    assert keeps("Le Logiciel-Libre à l'école", phrase)
    assert keeps("Du logiciel, libre", phrase)  # punctuation between words is no word
    assert not keeps("Libre logiciel", phrase)
    assert not keeps("Logiciel vraiment libre", phrase)


def test_a_phrase_never_spans_the_title_and_the_summary() -> None:
    assert not keeps("Un logiciel", term("logiciel libre"), summary="<p>libre</p>")
    assert keeps("Un titre", term("logiciel libre"), summary="<p>Logiciel <b>libre</b></p>")


def test_plus_terms_keep_an_item_holding_any_of_them() -> None:
    terms = (term("linux"), term("bsd"))
    assert keeps("Atelier Linux", *terms)
    assert keeps("FreeBSD ou OpenBSD ? Un BSD", *terms)
    assert not keeps("Atelier Windows", *terms)


def test_minus_terms_drop_an_item_holding_any_of_them() -> None:
    terms = (term("emploi", False), term("offre de stage", False))
    assert not keeps("Offre d'emploi", *terms)
    assert not keeps("Une offre de stage", *terms)
    assert keeps("Offre spéciale de Noël", *terms)


def test_plus_and_minus_together_keep_what_has_a_plus_and_no_minus() -> None:
    terms = (term("linux"), term("emploi", False))
    assert keeps("Install party Linux", *terms)
    assert not keeps("Emploi : admin Linux", *terms)
    assert not keeps("Install party Windows", *terms)


def test_a_filter_without_terms_keeps_everything() -> None:
    assert keeps("Anything at all")


def test_the_summary_is_read_as_its_text_not_its_markup() -> None:
    entry = Entry(
        "k",
        "Réunion",
        None,
        None,
        '<p>Voir <a href="https://emploi.example/linux">ici</a> &eacute;t&eacute;</p>',
    )
    text = Text.of(entry)
    assert not text.holds(("emploi",))
    assert not text.holds(("linux",))
    assert text.holds(("ete",))


def test_blocks_of_the_summary_are_separate_words() -> None:
    entry = Entry("k", "T", None, None, "<p>atelier</p><p>linux</p>")
    assert Text.of(entry).holds(("atelier", "linux"))
    assert not Text.of(entry).holds(("atelierlinux",))


def test_an_item_passes_only_if_every_filter_that_applies_keeps_it() -> None:
    room = Filter.of([term("emploi", False)])
    organisation = Filter.of([term("atelier")])
    assert keeps_all([room, organisation], Text("Atelier Linux"))
    assert not keeps_all([room, organisation], Text("Atelier emploi"))
    assert not keeps_all([room, organisation], Text("Conférence"))
    assert keeps_all([], Text("Conférence"))


@pytest.mark.parametrize(
    ("text", "phrase", "found"),
    [
        ("a a a b", "a a b", True),
        ("a b a b a b c", "a b a b c", True),
        ("a b a b a c", "a b a b c", False),
        ("x y x y x y z", "x y x y z", True),
        ("a a", "a a a", False),
    ],
)
def test_phrases_with_repeated_words_are_found_exactly(text: str, phrase: str, found: bool) -> None:
    assert Text(text).holds(tuple(words(phrase))) is found


def test_a_100_kb_summary_of_near_misses_is_answered_correctly() -> None:
    # A summary built to make a naive phrase search backtrack at every word, and a word
    # that occurs only at its very end.
    near_miss = " ".join(["libre"] * 20)
    summary = "<p>" + " ".join([near_miss] * 850) + " logiciel libre fin</p>"
    assert len(summary) > 100_000
    entry = Entry("k", "Titre", None, None, summary)
    text = Text.of(entry)
    assert not text.holds(tuple(words(near_miss + " logiciel libre logiciel")))
    assert text.holds(tuple(words("libre libre logiciel libre fin")))
    assert text.holds(("fin",))
    assert not Filter.of([term(near_miss + " absent")]).keeps(text)
