"""Sanitising, cutting and reading summary HTML."""

from __future__ import annotations

import pytest

from bot.render import SUMMARY_BUDGET
from bot.sanitise import ALLOWED_TAGS, plain_text, sanitise_html, truncate_html
from tests.html_safety import DROPPED_TAGS, MATRIX_RECOMMENDED_TAGS

LOREM = (
    "Le logiciel libre donne à chacun le droit d'utiliser, d'étudier, de modifier et de "
    "redistribuer les programmes, et l'April défend ces libertés depuis 1996. "
)


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


def test_web_images_are_removed_and_mxc_images_kept() -> None:
    cleaned = sanitise_html('<p><img src="https://x.org/a.png" alt="a">Texte</p>')
    assert cleaned == "<p>Texte</p>"
    assert sanitise_html('<img src="mxc://example.org/abc">') == '<img src="mxc://example.org/abc">'


def test_a_mxc_url_is_not_accepted_as_a_link() -> None:
    assert sanitise_html('<a href="mxc://example.org/abc">x</a>') == "x"


def test_the_allow_list_is_the_matrix_recommended_tags_minus_the_dropped_ones() -> None:
    assert ALLOWED_TAGS == MATRIX_RECOMMENDED_TAGS - DROPPED_TAGS


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


def test_plain_text_of_a_raw_table_separates_cells_with_spaces() -> None:
    table = "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>"
    assert plain_text(table) == "a b\nc d"


def test_a_removed_image_leaves_no_stray_space() -> None:
    assert sanitise_html('<p>Fin. <img src="https://x.org/a.png"></p>') == "<p>Fin.</p>"


def test_a_cut_does_not_leave_dangling_punctuation() -> None:
    assert truncate_html("<p>Ils ont dit : « bonjour à tous »</p>", 16) == "<p>Ils ont dit…</p>"
    assert truncate_html("<p>Ils ont dit : bonjour</p>", 13) == "<p>Ils ont dit…</p>"
