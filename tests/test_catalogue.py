"""Finding organisations and regions by the names people type."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.catalogue import Catalogue, normalise, slugify
from bot.config import Organisation, Region, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "config.yaml.example"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.from_config(load_config(EXAMPLE, env={}))


def small_catalogue() -> Catalogue:
    regions = {
        "bretagne": Region("bretagne", "Bretagne"),
        "france": Region("france", "France"),
    }
    organisations = {
        "bzh-asso": Organisation("bzh-asso", "Bretagne", "france", feeds=("https://b.org/f",)),
        "april": Organisation("april", "April", "france", feeds=("https://april.org/f",)),
    }
    return Catalogue(regions, organisations)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("Île-de-France", "ile de france"),
        ("Île-de-France", "ile-de-france"),
        ("GUTenberg", "gutenberg"),
        ("Provence-Alpes-Côte d'Azur", "provence-alpes-cote-d-azur"),
        ("MJC Chenôve", "mjcchenove"),
    ],
)
def test_normalised_names_ignore_case_accents_and_punctuation(left: str, right: str) -> None:
    assert normalise(left) == normalise(right)


def test_normalising_keeps_only_letters_and_digits() -> None:
    assert normalise("  Clic & Cetera — 2026 !") == "cliccetera2026"


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("MJC Chenôve", "mjc-chenove"),
        ("Clic & Cetera", "clic-et-cetera"),
        ("Mageia.org", "mageia-org"),
        ("  ---  ", ""),
    ],
)
def test_names_become_slugs(name: str, slug: str) -> None:
    assert slugify(name) == slug


@pytest.mark.parametrize("text", ["gutenberg", "GUTenberg", "Gutenberg", " gutenberg "])
def test_an_organisation_is_found_whatever_the_case(catalogue: Catalogue, text: str) -> None:
    found = catalogue.find_organisation(text)
    assert found is not None and found.slug == "gutenberg"


@pytest.mark.parametrize(
    "text", ["Île-de-France", "ile-de-france", "ile de france", "ILE DE FRANCE"]
)
def test_a_region_is_found_by_slug_or_name(catalogue: Catalogue, text: str) -> None:
    found = catalogue.find_region(text)
    assert found is not None and found.slug == "ile-de-france"


def test_an_organisation_is_found_by_its_slug_when_its_name_differs(catalogue: Catalogue) -> None:
    found = catalogue.find_organisation("telecom-valley-open-source")
    assert found is not None and found.name == "Commission Open Source de Telecom Valley"


def test_unknown_names_find_nothing(catalogue: Catalogue) -> None:
    assert catalogue.find_organisation("idf") is None
    assert catalogue.find_region("april") is None
    assert catalogue.resolve("nothing like it") is None
    assert catalogue.resolve("") is None
    assert catalogue.resolve("!!!") is None


def test_resolve_returns_an_organisation_or_a_region(catalogue: Catalogue) -> None:
    assert catalogue.resolve("april") == catalogue.get_organisation("april")
    assert catalogue.resolve("Genève") == catalogue.get_region("geneve")


def test_a_name_shared_by_a_region_and_an_organisation_resolves_to_the_region() -> None:
    catalogue = small_catalogue()
    assert catalogue.resolve("bretagne") == Region("bretagne", "Bretagne")
    resolved = catalogue.resolve("bzh-asso")
    assert isinstance(resolved, Organisation) and resolved.name == "Bretagne"


def test_suggestions_offer_near_misses(catalogue: Catalogue) -> None:
    assert catalogue.suggest("framsoft")[0] == "Framasoft"
    assert catalogue.suggest("gutemberg")[0] == "GUTenberg"
    assert "Île-de-France" in catalogue.suggest("ile de franc")


def test_suggestions_include_prefixes_and_substrings(catalogue: Catalogue) -> None:
    assert catalogue.suggest("mjc") == ["MJC Chenôve", "OMJC"]
    assert catalogue.suggest("telecom") == ["Commission Open Source de Telecom Valley"]


def test_suggestions_are_limited(catalogue: Catalogue) -> None:
    assert len(catalogue.suggest("g")) == 3
    assert len(catalogue.suggest("g", limit=1)) == 1
    assert catalogue.suggest("") == []


def test_suggestions_for_nonsense_are_empty(catalogue: Catalogue) -> None:
    assert catalogue.suggest("qzxwv") == []


def test_a_ten_thousand_character_name_is_handled_fast(catalogue: Catalogue) -> None:
    huge = "Île-de-France " * 715
    started = time.perf_counter()
    assert catalogue.find_organisation(huge) is None
    assert catalogue.find_region(huge) is None
    assert catalogue.resolve(huge) is None
    catalogue.suggest(huge)
    catalogue.suggest("abcdefghij" * 1000)
    assert catalogue.search_organisations(huge) == []
    assert time.perf_counter() - started < 0.5


def test_organisations_of_a_region_are_sorted_by_name(catalogue: Catalogue) -> None:
    names = [org.name for org in catalogue.organisations_in("france")]
    assert names == ["April", "Framasoft", "GUTenberg", "Mageia.org"]
    assert catalogue.organisations_in("corse") == []
    assert catalogue.organisations_in("nowhere") == []


def test_searching_a_region_name_lists_its_organisations(catalogue: Catalogue) -> None:
    names = [org.name for org in catalogue.search_organisations("ile de france")]
    assert names == ["Ethiciel", "Parinux"]


def test_searching_other_text_matches_inside_names_and_slugs(catalogue: Catalogue) -> None:
    assert [org.slug for org in catalogue.search_organisations("Valley")] == [
        "telecom-valley-open-source"
    ]
    assert [org.slug for org in catalogue.search_organisations("chenove")] == ["mjc-chenove"]


def test_searching_nothing_lists_every_organisation(catalogue: Catalogue) -> None:
    assert catalogue.search_organisations("") == list(catalogue.organisations)


def test_regions_and_organisations_are_sorted_by_name_ignoring_accents(
    catalogue: Catalogue,
) -> None:
    regions = [region.name for region in catalogue.regions]
    assert regions.index("Hauts-de-France") < regions.index("Île-de-France")
    assert regions.index("Île-de-France") < regions.index("Internet")
    organisations = [org.name for org in catalogue.organisations]
    assert organisations == sorted(organisations, key=normalise)
    assert len(organisations) == 16


def test_the_region_of_an_organisation(catalogue: Catalogue) -> None:
    itopie = catalogue.get_organisation("itopie")
    assert itopie is not None
    assert catalogue.region_of(itopie).name == "Genève"


def test_an_organisation_in_an_unknown_region_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown region"):
        Catalogue({}, {"a": Organisation("a", "A", "nowhere")})
