"""Links as messages show them: http(s) only, nothing invisible in them."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote, urlsplit

WEB_SCHEMES = frozenset({"http", "https"})


def visible(url: str) -> str:
    """Percent-encode the control and format characters of a URL.

    Shown as text, a right-to-left override or an invisible character disguises where a link
    leads ("https://example.org/\u202emoc.elgoog"); encoded, it still leads to the same page.
    """
    return "".join(quote(ch) if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in url)


def web_link(url: str | None, *, max_length: int = 2000) -> str | None:
    """Return `url`, made visible, if it is an http(s) link fit for an `href`; else None."""
    if url is None:
        return None
    url = url.strip()
    if not url or len(url) > max_length or any(ch.isspace() for ch in url):
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    return visible(url) if scheme in WEB_SCHEMES else None
