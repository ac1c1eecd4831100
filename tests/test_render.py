"""Rendering entries and digests into Matrix content."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from bot.config import Organisation, Region
from bot.model import Entry
from bot.render import (
    ALLOWED_TAGS,
    MAX_CONTENT_SIZE,
    SUMMARY_BUDGET,
    content_size,
    plain_text,
    render_digest,
    render_entry,
    sanitise_html,
    truncate_html,
)

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
LOREM = (
    "Le logiciel libre donne à chacun le droit d'utiliser, d'étudier, de modifier et de "
    "redistribuer les programmes, et l'April défend ces libertés depuis 1996. "
)


# The tags the Matrix spec recommends for m.room.message HTML.
MATRIX_RECOMMENDED_TAGS = frozenset(
    {"font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol"}
    | {"sup", "sub", "li", "b", "i", "u", "strong", "em", "strike", "code", "hr", "br", "div"}
    | {"table", "thead", "tbody", "tr", "th", "td", "caption", "pre", "span", "img"}
    | {"details", "summary"}
)
# Styling-only tags (font, span), headings (rewritten as bold paragraphs), tables (as lines).
DROPPED_TAGS = frozenset(
    {"font", "span", "h1", "h2", "h3", "h4", "h5", "h6"}
    | {"table", "thead", "tbody", "tr", "th", "td", "caption"}
)


def entry(
    summary: str = "<p>Bonjour.</p>",
    *,
    title: str = "Libre en Fête 2026",
    link: str | None = "https://www.april.org/libre-en-fete-2026",
    published: datetime | None = WHEN,
) -> Entry:
    return Entry(key="k", title=title, link=link, published=published, summary_html=summary)


def render(summary: str = "<p>Bonjour.</p>", **fields: Any) -> dict[str, Any]:
    return render_entry(entry(summary, **fields), APRIL, FRANCE, "fr")


class Elements(HTMLParser):
    """Collect every start tag and its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(fragment: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(fragment)
    parser.close()
    return parser.tags


def assert_safe(fragment: str) -> None:
    lowered = fragment.lower()
    for tag in ("script", "style", "iframe", "object", "embed", "applet", "form"):
        assert f"<{tag}" not in lowered
    assert not re.search(r"\son[a-z]+\s*=", lowered)
    assert not re.search(r"=\s*[\"']?\s*(javascript|vbscript|data):", lowered)
    for tag, attrs in elements(fragment):
        assert tag in MATRIX_RECOMMENDED_TAGS - DROPPED_TAGS
        assert "style" not in attrs
        for value in attrs.values():
            assert (
                not (value or "").strip().lower().startswith(("javascript:", "vbscript:", "data:"))
            )
        if tag == "a":
            assert set(attrs) <= {"href"}
            href = attrs.get("href") or ""
            assert href.startswith(("http://", "https://", "mailto:"))
        elif tag == "img":
            assert set(attrs) == {"src"}
            assert (attrs["src"] or "").startswith("mxc://")
        else:
            assert not attrs


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


def test_the_date_follows_the_room_language() -> None:
    content = render_entry(entry(), APRIL, FRANCE, "en")
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


def test_a_long_summary_is_cut_on_a_word_boundary_with_an_ellipsis() -> None:
    summary = "<p>" + LOREM * 10 + "</p>"
    text = plain_text(truncate_html(summary, SUMMARY_BUDGET))
    assert text.endswith("…")
    kept = text.removesuffix("…")
    assert SUMMARY_BUDGET - 20 <= len(kept) <= SUMMARY_BUDGET
    assert (LOREM * 10).startswith(kept)
    assert (LOREM * 10)[len(kept)] in " ,"


def test_a_short_summary_is_not_cut() -> None:
    assert truncate_html("<p>Un <b>deux</b> trois.</p>", 500) == "<p>Un <b>deux</b> trois.</p>"


def test_a_cut_inside_markup_closes_the_open_tags() -> None:
    cut = truncate_html("<ul><li>Un <b>deux trois</b> quatre</li><li>cinq</li></ul>", 9)
    assert cut == "<ul><li>Un <b>deux…</b></li></ul>"


def test_a_word_longer_than_the_budget_is_cut_hard() -> None:
    assert truncate_html("<p>" + "a" * 50 + "</p>", 10) == "<p>" + "a" * 10 + "…</p>"


def test_the_summary_is_cut_on_text_length_not_markup_length() -> None:
    words = " ".join(f'<a href="https://example.org/{i}">mot{i}</a>' for i in range(200))
    text = plain_text(truncate_html(f"<p>{words}</p>", SUMMARY_BUDGET))
    assert SUMMARY_BUDGET - 10 <= len(text) <= SUMMARY_BUDGET + 1


def test_headings_become_bold_paragraphs() -> None:
    assert sanitise_html("<h2>Agenda</h2><p>Texte</p>") == (
        "<p><strong>Agenda</strong></p><p>Texte</p>"
    )


def test_tables_become_lines_of_text() -> None:
    table = "<table><tr><th>Date</th><th>Lieu</th></tr><tr><td>8 mars</td><td>Paris</td></tr>"
    cleaned = sanitise_html(table + "</table>")
    assert "<table" not in cleaned and "<td" not in cleaned
    assert plain_text(cleaned) == "Date Lieu\n8 mars Paris"


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


def test_web_images_are_removed_and_mxc_images_kept() -> None:
    cleaned = sanitise_html('<p><img src="https://x.org/a.png" alt="a">Texte</p>')
    assert cleaned == "<p>Texte</p>"
    assert sanitise_html('<img src="mxc://example.org/abc">') == '<img src="mxc://example.org/abc">'


def test_a_mxc_url_is_not_accepted_as_a_link() -> None:
    assert sanitise_html('<a href="mxc://example.org/abc">x</a>') == "x"


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


def test_the_allow_list_is_the_matrix_recommended_tags_minus_the_dropped_ones() -> None:
    assert ALLOWED_TAGS == MATRIX_RECOMMENDED_TAGS - DROPPED_TAGS


def test_hostile_payloads_keep_only_tags_of_the_allow_list() -> None:
    for payload in PAYLOADS:
        tags = {tag for tag, _ in elements(render(payload["html"])["formatted_body"])}
        assert tags <= MATRIX_RECOMMENDED_TAGS - DROPPED_TAGS


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "java&#x09;script:alert(1)",
        "&#106;avascript:alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "mxc://example.org/abc",
    ],
)
def test_dangerous_link_schemes_are_removed(href: str) -> None:
    cleaned = sanitise_html(f'<a href="{href}">clic</a>')
    assert cleaned == "clic"


def test_invisible_characters_of_summary_urls_are_percent_encoded() -> None:
    cleaned = sanitise_html('<a href="https://example.org/\u202emoc.elgoog\x01">clic</a>')
    assert cleaned == '<a href="https://example.org/%E2%80%AEmoc.elgoog%01">clic</a>'


def test_plain_text_puts_blocks_on_their_own_lines_and_decodes_entities() -> None:
    fragment = "<p>Un &amp; <b>deux</b></p><ul><li>trois</li><li>quatre</li></ul>x<br>y"
    assert plain_text(fragment) == "Un & deux\n• trois\n• quatre\nx\ny"


def test_plain_text_ignores_scripts_and_styles() -> None:
    assert plain_text("<style>p{}</style><p>texte</p><script>alert(1)</script>") == "texte"


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


def test_plain_text_of_a_raw_table_separates_cells_with_spaces() -> None:
    table = "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>"
    assert plain_text(table) == "a b\nc d"


def test_a_removed_image_leaves_no_stray_space() -> None:
    assert sanitise_html('<p>Fin. <img src="https://x.org/a.png"></p>') == "<p>Fin.</p>"


def test_a_cut_does_not_leave_dangling_punctuation() -> None:
    assert truncate_html("<p>Ils ont dit : « bonjour à tous »</p>", 16) == "<p>Ils ont dit…</p>"
    assert truncate_html("<p>Ils ont dit : bonjour</p>", 13) == "<p>Ils ont dit…</p>"


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
    content = render_entry(entry, Organisation("o", "Org", "r"), Region("r", "Région"), "fr")
    assert content["formatted_body"].count("…") >= 1
    assert "Fin" not in content["formatted_body"] and "après" not in content["formatted_body"]
