"""Links as messages show them."""

from __future__ import annotations

import pytest

from bot.links import visible, web_link


def test_visible_encodes_what_would_disguise_a_link() -> None:
    assert (
        visible("https://example.org/\u202emoc.elgoog") == "https://example.org/%E2%80%AEmoc.elgoog"
    )
    assert visible("https://example.org/a\u200bb\x01") == "https://example.org/a%E2%80%8Bb%01"


def test_visible_keeps_ordinary_characters() -> None:
    url = "https://exemple.fr/actualités/été-2026?x=1#fin"
    assert visible(url) == url


@pytest.mark.parametrize(
    "url",
    [None, "", "javascript:alert(1)", "data:text/html,x", "ftp://example.org/", "https://a b/"],
)
def test_web_link_refuses_what_is_no_web_page(url: str | None) -> None:
    assert web_link(url) is None


def test_web_link_strips_and_encodes() -> None:
    assert web_link("  https://example.org/\u202ex  ") == "https://example.org/%E2%80%AEx"
    assert web_link("HTTPS://example.org/") == "HTTPS://example.org/"


def test_web_link_refuses_overlong_links() -> None:
    assert web_link("https://example.org/" + "a" * 5000) is None
