"""Replies built line by line as plain text and HTML, and a person's text made safe to echo."""

from __future__ import annotations

import html
import unicodedata
from datetime import UTC, datetime
from typing import Final

from ..config import Language
from ..dates import format_date
from ..i18n import t, t_html
from ..zones import Zone
from .context import Reply

MAX_ECHO: Final = 64  # characters of a person's text quoted back in a reply
# Under Matrix's 64 KiB event limit with room to spare for encryption and the reply envelope,
# like the relayed messages (render.MAX_CONTENT_SIZE).
MAX_REPLY_SIZE: Final = 16 * 1024

# Direction overrides and isolates can make an echoed name rewrite the reply around it.
_BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


class Lines:
    """A reply built line by line, as plain text and as HTML at the same time."""

    def __init__(self, language: Language) -> None:
        self._language = language
        self._plain: list[str] = []
        self._html: list[str] = []
        self._marked = False

    def add(self, key: str, /, *, markup: dict[str, str] | None = None, **params: object) -> None:
        """Add the message `key`; `markup` gives the HTML of some parameters, others escaped."""
        self._plain.append(t(self._language, key, **params))
        html_params = {name: escape(str(value)) for name, value in params.items()}
        if markup:
            html_params.update(markup)
            self._marked = True
        self._html.append(t_html(self._language, key, **html_params))

    def add_raw(self, plain: str, markup: str) -> None:
        """Add a line already written in both forms (`markup` must be safe HTML)."""
        self._plain.append(plain)
        self._html.append(markup)
        self._marked = True

    def reply(self) -> Reply:
        """Return the reply; HTML only when some line carries markup."""
        text = "\n".join(self._plain)
        return Reply(text, "<br>".join(self._html) if self._marked else None)


def escape(text: str) -> str:
    """Return text fit to place between HTML tags."""
    return html.escape(text, quote=False)


def one_line(text: str, budget: int) -> str:
    """Return text on one line, without control or direction characters, cut to `budget`."""
    kept = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in text[: budget * 4]
        if ch not in _BIDI_CONTROLS and unicodedata.category(ch) != "Cs"
    )
    line = " ".join(kept.split())
    return line if len(line) <= budget else line[: budget - 1].rstrip() + "…"


def linked(title: str, link: str | None) -> tuple[str, str]:
    """Return a title followed by its link as plain text, and as HTML linking it."""
    if link is None:
        return title, escape(title)
    return f"{title} — {link}", f'<a href="{html.escape(link)}">{escape(title)}</a>'


def shown(text: str) -> str:
    """Return a person's text fit to quote back: one line, short, no direction tricks."""
    return one_line(text, MAX_ECHO)


def date_of(epoch: float, language: Language, zone: Zone) -> str:
    """Return the moment `epoch` written for people of `language`, in `zone`."""
    return format_date(datetime.fromtimestamp(epoch, UTC), language, zone)


def fit(reply: Reply) -> Reply:
    """Keep a reply sendable: valid UTF-8, and under MAX_REPLY_SIZE (HTML dropped first)."""
    text = reply.text.encode("utf-8", "replace").decode("utf-8")
    markup = reply.html.encode("utf-8", "replace").decode("utf-8") if reply.html else None
    size = len(text.encode()) + (len(markup.encode()) if markup else 0)
    if size <= MAX_REPLY_SIZE:
        return Reply(text, markup)
    encoded = text.encode()
    if len(encoded) > MAX_REPLY_SIZE:
        text = encoded[: MAX_REPLY_SIZE - 3].decode("utf-8", "ignore") + "…"
    return Reply(text)
