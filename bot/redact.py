"""Source URLs as shown anywhere: the password and secret-like query values masked."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

MASK: Final = "***"
# A query parameter whose name contains one of these carries a credential more often than not.
SECRET_NAME: Final = re.compile(r"token|key|secret|pass|auth|sig|session", re.IGNORECASE)
# A URL inside free text (a log line, an error): it ends at a space, a quote or an angle bracket.
_URL_IN_TEXT: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s<>\"'`]+")
_TRAILING: Final = ".,:;!?)]}"
# scheme://userinfo@ — the userinfo ends at the first "@" before the path.
_USERINFO: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@")


def mask_url(url: str) -> str:
    """Return `url` with its user-info password and secret-like query values masked.

    Works on the text itself (no parsing and rebuilding), so the rest of the URL is shown
    exactly as written, even when it is malformed.
    """
    if "@" in url:
        url = _USERINFO.sub(_mask_userinfo, url, count=1)
    start = url.find("?")
    if start < 0:
        return url
    end = url.find("#", start)
    end = len(url) if end < 0 else end
    query = "&".join(_mask_parameter(part) for part in url[start + 1 : end].split("&"))
    return f"{url[: start + 1]}{query}{url[end:]}"


def mask_urls(text: str) -> str:
    """Return `text` with every URL in it masked as `mask_url` does."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    # Punctuation ending a sentence ("…/rss?token=x: HTTP 500") is not part of the URL.
    found = match.group(0)
    url = found.rstrip(_TRAILING)
    return mask_url(url) + found[len(url) :]


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match.group(1), match.group(2)
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{user}:{MASK}@" if colon else match.group(0)


def _mask_parameter(part: str) -> str:
    name, equals, value = part.partition("=")
    if equals and value and SECRET_NAME.search(unquote(name)):
        return f"{name}={MASK}"
    return part
