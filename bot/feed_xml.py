"""What feedparser is given and what it is spared: the HTTP charset, and XML entity bombs."""

from __future__ import annotations

import contextlib
import email.message
import re
import xml.parsers.expat
from collections.abc import Mapping

from feedparser.encodings import convert_to_utf8
from feedparser.sanitizer import replace_doctype

from .errors import ParseError

# Characters that a feed's own entities may expand to in all: far more than any real use
# (&nbsp;, an organisation's name) and far less than what a quadratic blowup asks for.
MAX_ENTITY_EXPANSION = 1024 * 1024
_ENTITY_REFERENCE = re.compile(rb"&([^\s&;#<>]{1,256});")


def response_headers(content_type: str | None) -> dict[str, str]:
    """The headers feedparser is given: an XML media type with the HTTP charset, if any."""
    if not content_type:
        return {}
    message = email.message.Message()
    message["Content-Type"] = content_type
    charset = message.get_content_charset()
    if not charset:
        return {}
    # feedparser follows RFC 3023, which ignores the charset of a media type it does not call
    # XML (application/octet-stream, text/plain): feed readers honour it whatever the type,
    # and so does Crieur. An application/ XML type keeps the document's own encoding as the
    # fallback when the charset is unknown.
    return {"content-type": f"application/xml; charset={charset}"}


class _RootReached(Exception):
    """Ends the scan of a prolog: entities can only be declared before the root element."""


def refuse_entity_bombs(body: bytes, headers: Mapping[str, str]) -> None:
    """Raise ParseError if the DTD nests entities (a "billion laughs"), has parameter ones, or
    declares entities whose references would expand past MAX_ENTITY_EXPANSION characters."""
    # feedparser's own filter of the DTD misses declarations that do not start a line, and
    # expat then expands them until its amplification limit: a minute of CPU for 5 MiB. Scan
    # exactly what feedparser's strict parser will read: its UTF-8 copy, DOCTYPE filtered.
    _, data, _ = replace_doctype(convert_to_utf8(dict(headers), body, {}))
    sizes: dict[bytes, int] = {}

    def declared(name: str, is_parameter: bool, value: str | None, *_: object) -> None:
        if is_parameter or (value is not None and "&" in value):
            raise ParseError(f"the feed declares a nested XML entity ({name!r}), refused")
        if value is not None:
            sizes[name.encode("utf-8")] = len(value)

    def started(*_: object) -> None:
        raise _RootReached

    scanner = xml.parsers.expat.ParserCreate()
    scanner.EntityDeclHandler = declared
    scanner.StartElementHandler = started
    # A prolog expat cannot read stops feedparser's strict parser too, before any entity.
    with contextlib.suppress(_RootReached, xml.parsers.expat.ExpatError):
        scanner.Parse(data, True)
    # Expat lets flat entities expand up to 100 times the document once past 8 MiB: a 5 MiB
    # body referring a thousand times to a long entity would take gigabytes, so count first.
    if any(sizes.values()):
        expansion = sum(sizes.get(name, 0) for name in _ENTITY_REFERENCE.findall(data))
        if expansion > MAX_ENTITY_EXPANSION:
            raise ParseError(
                f"the feed's XML entities would expand to {expansion:,} characters, refused"
            )
