"""Links as messages show them: http(s) only, nothing invisible in them."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote, urlsplit

WEB_SCHEMES = frozenset({"http", "https"})
MAX_LENGTH = 4096  # longer is no link a person follows, and costs the message its room


def visible(url: str) -> str:
    """Percent-encode the control and format characters of a URL.

    Shown as text, a right-to-left override or an invisible character disguises where a link
    leads ("https://example.org/\u202emoc.elgoog"); encoded, it still leads to the same page.
    """
    return "".join(quote(ch) if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in url)


def web_link(url: str | None) -> str | None:
    """Return `url`, made visible, if it is an http(s) link fit for an `href`; else None."""
    if url is None:
        return None
    url = url.strip()
    if not url or len(url) > MAX_LENGTH or any(ch.isspace() for ch in url):
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    return visible(url) if scheme in WEB_SCHEMES else None
