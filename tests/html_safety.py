"""What safe Matrix HTML looks like, for the tests of what Crieur posts."""

from __future__ import annotations

import re
from html.parser import HTMLParser

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
