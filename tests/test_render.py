"""Rendering entries and digests into Matrix content."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.catalogue import Catalogue
from bot.config import Organisation, Region
from bot.dispatcher import DeliveryRenderer
from bot.model import Delivery, Entry
from bot.render import MAX_CONTENT_SIZE, content_size, render_digest, render_entry
from bot.zones import Zone
from tests.html_safety import DROPPED_TAGS, MATRIX_RECOMMENDED_TAGS, assert_safe, elements

PAYLOADS = json.loads(
    (Path(__file__).parent / "data" / "sanitize" / "payloads.json").read_text(encoding="utf-8")
)
APRIL = Organisation(
    slug="april",
    name="April",
    region="france",
    url="https://www.april.org",
    feeds=("https://www.april.org/fr/rss.xml",),
)
FRANCE = Region(slug="france", name="France")
WHEN = datetime(2026, 1, 8, 21, 1, tzinfo=UTC)  # 22:01 in Paris
PARIS = Zone("Europe/Paris")


def entry(
    summary: str = "<p>Bonjour.</p>",
    *,
    title: str = "Libre en Fête 2026",
    link: str | None = "https://www.april.org/libre-en-fete-2026",
    published: datetime | None = WHEN,
) -> Entry:
    return Entry(key="k", title=title, link=link, published=published, summary_html=summary)


def render(summary: str = "<p>Bonjour.</p>", **fields: Any) -> dict[str, Any]:
    return render_entry(entry(summary, **fields), APRIL, FRANCE, "fr", zone=PARIS)


def test_an_entry_is_a_notice_with_plain_and_html_bodies() -> None:
    content = render()
    assert content["msgtype"] == "m.notice"
    assert content["format"] == "org.matrix.custom.html"
    assert content["body"] == (
        "April · France\n"
        "Libre en Fête 2026\n"
        "https://www.april.org/libre-en-fete-2026\n"
        "Publié le jeudi 8 janvier 2026 à 22 h 01\n"
        "\n"
        "Bonjour."
    )
    assert content["formatted_body"] == (
        "<p><b>April</b> · France<br>"
        '<a href="https://www.april.org/libre-en-fete-2026"><b>Libre en Fête 2026</b></a><br>'
        "<i>Publié le jeudi 8 janvier 2026 à 22 h 01</i></p>"
        "<blockquote><p>Bonjour.</p></blockquote>"
    )


def test_an_entry_of_a_reunion_organisation_shows_reunion_time_named() -> None:
    reunion = Region(slug="la-reunion", name="La Réunion", timezone="Indian/Reunion")
    lug = Organisation(slug="lug974", name="LUG 974", region="la-reunion", feeds=("https://x/",))
    catalogue = Catalogue({"la-reunion": reunion}, {"lug974": lug}, timezone="Europe/Paris")
    content = render_entry(entry(), lug, reunion, "fr", zone=catalogue.zone_of(lug))
    # 21:01 UTC is 1:01 the next day in Saint-Denis (UTC+4, no daylight saving time).
    expected = "Publié le vendredi 9 janvier 2026 à 1 h 01 (heure de La Réunion, UTC+4)"
    assert expected in content["body"]
    assert expected in content["formatted_body"]


def test_deliveries_are_rendered_in_the_zone_of_their_organisations_region() -> None:
    reunion = Region(slug="la-reunion", name="La Réunion", timezone="Indian/Reunion")
    lug = Organisation(slug="lug974", name="LUG 974", region="la-reunion", feeds=("https://x/",))
    catalogue = Catalogue({"la-reunion": reunion}, {"lug974": lug})
    delivery = Delivery(id=1, room_id="!r:x", txn_id="t", organisation="lug974", entry=entry())
    content = DeliveryRenderer(catalogue, "en")(delivery)
    assert "Published on Friday 9 January 2026, 01:01 (La Réunion time, UTC+4)" in content["body"]


def test_a_region_in_the_top_level_zone_leaves_the_zone_unnamed() -> None:
    geneve = Region(slug="geneve", name="Genève", timezone="Europe/Zurich")
    catalogue = Catalogue({"geneve": geneve}, {}, timezone="Europe/Zurich")
    content = render_entry(entry(), APRIL, geneve, "fr", zone=catalogue.zone_of(geneve))
    assert "Publié le jeudi 8 janvier 2026 à 22 h 01\n" in content["body"]
    assert "heure de" not in content["body"]


def test_the_date_follows_the_room_language() -> None:
    content = render_entry(entry(), APRIL, FRANCE, "en", zone=PARIS)
    assert "Published on Thursday 8 January 2026, 22:01" in content["body"]
    assert "Published on Thursday 8 January 2026, 22:01" in content["formatted_body"]


def test_an_entry_without_date_or_link_shows_neither() -> None:
    content = render(link=None, published=None)
    assert "Publié" not in content["body"]
    assert "<a " not in content["formatted_body"]
    assert "<b>Libre en Fête 2026</b>" in content["formatted_body"]


def test_a_link_that_is_not_http_is_not_linked() -> None:
    content = render(link="javascript:alert(1)")
    assert "javascript" not in content["formatted_body"]
    assert "javascript" not in content["body"]


def test_an_empty_title_is_replaced_by_a_placeholder() -> None:
    assert "(sans titre)" in render(title="  ")["body"]


def test_title_markup_stays_plain_text_and_is_escaped() -> None:
    content = render(title="Les <b>balises</b> &amp; le reste")
    assert "Les <b>balises</b> &amp; le reste" in content["body"]
    assert "Les &lt;b&gt;balises&lt;/b&gt; &amp;amp; le reste" in content["formatted_body"]
    assert [tag for tag, _ in elements(content["formatted_body"])].count("b") == 2


def test_bidi_overrides_are_removed_from_titles_but_marks_and_joiners_kept() -> None:
    content = render(title="Facture \u202egpj.exe\u2066 \u200fشكرا\u200d\u200b")
    assert "Facture gpj.exe \u200fشكرا\u200d\u200b" in content["body"].splitlines()
    for text in (content["body"], content["formatted_body"]):
        assert not set(text) & set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def test_relative_links_are_resolved_against_the_entry_link() -> None:
    content = render('<p><a href="/evenements">Agenda</a></p>')
    assert '<a href="https://www.april.org/evenements">Agenda</a>' in content["formatted_body"]


def test_relative_links_are_dropped_without_an_entry_link() -> None:
    content = render('<p><a href="/evenements">Agenda</a></p>', link=None)
    assert "evenements" not in content["formatted_body"]
    assert "Agenda" in content["formatted_body"]


def test_mailto_links_are_kept() -> None:
    content = render('<p><a href="mailto:contact@april.org">Écrire</a></p>')
    assert '<a href="mailto:contact@april.org">Écrire</a>' in content["formatted_body"]


def test_the_wordpress_footer_is_stripped_from_summaries() -> None:
    summary = (
        "<p>Le printemps du libre arrive [&#8230;]</p>\n"
        '<p>L&#8217;article <a rel="nofollow" href="https://www.april.org/p">Libre en Fête</a>'
        ' est apparu en premier sur <a rel="nofollow" href="https://www.april.org">April</a>.</p>'
    )
    content = render(summary)
    assert "apparu en premier" not in content["body"]
    assert content["formatted_body"].endswith(
        "<blockquote><p>Le printemps du libre arrive […]</p></blockquote>"
    )


def test_the_english_wordpress_footer_is_stripped_from_summaries() -> None:
    summary = (
        'Spring is coming.\nThe post <a href="https://ex.org/p">Spring</a> appeared first on '
        '<a href="https://ex.org">Example</a>.'
    )
    assert render(summary)["body"].endswith("\n\nSpring is coming.")


def test_a_summary_merely_mentioning_an_article_is_kept() -> None:
    summary = (
        "<p>L'article 13 est apparu en premier sur la liste des sujets chauds.</p><p>Suite.</p>"
    )
    assert "L'article 13" in render(summary)["body"]


def test_hostile_payloads_leave_only_allowed_markup() -> None:
    for payload in PAYLOADS:
        content = render(payload["html"])
        assert_safe(content["formatted_body"])
        assert content_size(content) <= MAX_CONTENT_SIZE


def test_hostile_payloads_keep_only_tags_of_the_allow_list() -> None:
    for payload in PAYLOADS:
        tags = {tag for tag, _ in elements(render(payload["html"])["formatted_body"])}
        assert tags <= MATRIX_RECOMMENDED_TAGS - DROPPED_TAGS


def test_a_digest_names_the_count_and_links_the_organisation() -> None:
    content = render_digest(APRIL, 7, "fr")
    assert content["msgtype"] == "m.notice"
    assert content["body"] == "… et 7 autres articles publiés par April\nhttps://www.april.org"
    assert content["formatted_body"] == (
        '… et 7 autres articles publiés par <a href="https://www.april.org">April</a>'
    )


def test_a_digest_in_english_uses_the_singular_for_one() -> None:
    content = render_digest(APRIL, 1, "en")
    assert content["formatted_body"] == (
        '… and 1 more post from <a href="https://www.april.org">April</a>'
    )


def test_a_digest_without_organisation_url_has_no_link() -> None:
    organisation = Organisation(slug="x", name="Tom & Jerry", region="france")
    content = render_digest(organisation, 3, "en")
    assert content["body"] == "… and 3 more posts from Tom & Jerry"
    assert content["formatted_body"] == "… and 3 more posts from Tom &amp; Jerry"


def test_content_size_is_the_length_of_canonical_utf8_json() -> None:
    assert content_size({"b": "é", "a": 1}) == len('{"a":1,"b":"é"}'.encode())


def test_a_megabyte_summary_of_text_is_cut_and_fits() -> None:
    started = time.perf_counter()
    content = render("<p>" + "libre " * 180_000 + "</p>")
    assert time.perf_counter() - started < 5
    assert content_size(content) <= MAX_CONTENT_SIZE
    assert content["formatted_body"].endswith("libre…</p></blockquote>")


def test_a_megabyte_summary_of_huge_links_is_shrunk_below_the_limit() -> None:
    link = '<a href="https://example.org/' + "x" * 8000 + '">lien</a> '
    content = render("<p>" + link * 130 + "</p>")
    assert content_size(content) <= MAX_CONTENT_SIZE
    assert "lien lien" in content["body"]
    assert_safe(content["formatted_body"])


def test_a_megabyte_of_empty_markup_fits() -> None:
    content = render("<p><b></b><br></p>" * 60_000)
    assert content_size(content) <= MAX_CONTENT_SIZE


def test_an_absurd_title_and_link_still_fit() -> None:
    content = render(title="titre " * 100_000, link="https://example.org/" + "x" * 100_000)
    assert content_size(content) <= MAX_CONTENT_SIZE
    assert "titre titre" in content["body"]


@pytest.mark.parametrize(
    "summary",
    [
        "x" * 500 + "<br><br><br><br>Ok",
        "<p>" + "mot " * 125 + "</p>" + "<br>" * 5 + "<p>Fin</p>",
        "<p>" + "a" * 499 + "</p>" + '<img src="mxc://h/i">' * 10 + "<p>après</p>",
    ],
)
def test_breaks_after_a_spent_budget_end_the_summary_cleanly(summary: str) -> None:
    entry = Entry("k", "Titre", "https://example.org/a", None, summary)
    content = render_entry(
        entry, Organisation("o", "Org", "r"), Region("r", "Région"), "fr", zone=PARIS
    )
    assert content["formatted_body"].count("…") >= 1
    assert "Fin" not in content["formatted_body"] and "après" not in content["formatted_body"]
