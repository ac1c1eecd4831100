"""Values of the configuration read on their own: durations, sizes, names and their bounds."""

from __future__ import annotations

import math
import re
from functools import cache
from types import MappingProxyType, UnionType
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import available_timezones

Language = Literal["fr", "en"]
Trust = Literal["cross-signed", "tofu", "all"]

LANGUAGES: tuple[Language, ...] = ("fr", "en")
DEFAULT_TIMEZONE = "Europe/Paris"  # the communities of L'Agenda du Libre are mostly in France
TRUST_POLICIES: tuple[Trust, ...] = ("cross-signed", "tofu", "all")

# Bounds that catch typos (an extra zero) before they hurt a homeserver or a feed's host.
MAX_DURATION = 365 * 86400.0
MAX_BODY = 1024**3
# Shorter than a day would prune between two polls of a slow feed; longer than ten years is a typo.
MIN_RETENTION = 86400.0
DEFAULT_RETENTION = 180 * 86400.0
MAX_RETENTION = 3650 * 86400.0
MAX_CONCURRENCY = 1024
MAX_POSTS_PER_POLL = 100
MAX_OWN_FEEDS = 1000  # feeds one room may add: each is polled, so bounded
MAX_NAME_LENGTH = 200
MAX_SLUG_LENGTH = 64
MAX_PREFIX_LENGTH = 8
MAX_PORT = 65535
# Keeps regexes and messages cheap whatever a hostile or mistaken value holds.
MAX_SCALAR_TEXT = 64

_SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# A server name is a DNS name, an IPv4 address or a bracketed IPv6 literal, with an optional port.
_SERVER = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?"
_USER_ID_RE = re.compile(rf"@[^\s:]+:{_SERVER}")
_ROOM_ALIAS_RE = re.compile(rf"#[^\s:]+:{_SERVER}")
# Room ids of room version 12 have no server part ("!opaque"); older ones are "!opaque:server".
_ROOM_ID_RE = re.compile(rf"![^\s:]+(?::{_SERVER})?")
_SERVER_RE = re.compile(_SERVER)
_LISTEN_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")

_DURATION_UNITS = MappingProxyType({"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0})
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_DURATION_RE = re.compile(rf"(?:{_NUMBER}[smhd])+")
_DURATION_PART_RE = re.compile(rf"({_NUMBER})([smhd])")
_PLAIN_NUMBER_RE = re.compile(_NUMBER)
# SI units are powers of 1000 and IEC units powers of 1024, as their standards say; a bare
# "5M" is refused because readers disagree on what it means.
_SIZE_UNITS = MappingProxyType(
    {
        "": 1,
        "b": 1,
        "kb": 1000,
        "mb": 1000**2,
        "gb": 1000**3,
        "kib": 1024,
        "mib": 1024**2,
        "gib": 1024**3,
    }
)
_SIZE_RE = re.compile(rf"({_NUMBER})\s*([a-z]*)")
# bool before int: YAML's true is a Python int too.
_KINDS: tuple[tuple[type | UnionType, str], ...] = (
    (bool, "true/false"),
    (dict, "a mapping"),
    (list, "a list"),
    (str, "text"),
    (int | float, "a number"),
)


def parse_duration(value: object) -> float:
    """Return the seconds in `30s`, `5m`, `1h`, `7d`, `1h30m` or a plain number of seconds."""
    error = ValueError(f"invalid duration {show(value)} (use 30s, 5m, 1h, 7d)")
    if isinstance(value, bool):
        raise error
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int past a float's range
            raise error from None
    elif isinstance(value, str):
        text = value.strip().lower()
        if len(text) > MAX_SCALAR_TEXT:
            raise error
        if _PLAIN_NUMBER_RE.fullmatch(text):
            seconds = float(text)
        elif _DURATION_RE.fullmatch(text):
            seconds = sum(
                float(number) * _DURATION_UNITS[unit]
                for number, unit in _DURATION_PART_RE.findall(text)
            )
        else:
            raise error
    else:
        raise error
    if not math.isfinite(seconds) or seconds < 0:
        raise error
    return seconds


def parse_size(value: object) -> int:
    """Return the bytes in `512KiB`, `5MiB`, `1GiB`, `100KB`, `2MB` or a plain number of bytes."""
    error = ValueError(f"invalid size {show(value)} (use 512KiB, 5MiB, 1GiB)")
    if isinstance(value, bool):
        raise error
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and len(value) <= MAX_SCALAR_TEXT:
        match = _SIZE_RE.fullmatch(value.strip().lower())
        if match is None or match.group(2) not in _SIZE_UNITS:
            raise error
        size = round(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    else:
        raise error
    if size < 0:
        raise error
    return size


def is_slug(text: str) -> bool:
    """Tell whether text is a slug: lowercase letters, digits and single inner hyphens."""
    return len(text) <= MAX_SLUG_LENGTH and _SLUG_RE.fullmatch(text) is not None


def is_user_id(text: str) -> bool:
    """Tell whether text looks like a Matrix user id (`@local:server`)."""
    return _USER_ID_RE.fullmatch(text) is not None


def is_server_name(text: str) -> bool:
    """Tell whether text looks like a server name (`example.org`, `[::1]:8448`)."""
    return _SERVER_RE.fullmatch(text) is not None


def is_room_reference(text: str) -> bool:
    """Tell whether text looks like a room alias (`#alias:server`) or a room id (`!id[:server]`)."""
    return _ROOM_ALIAS_RE.fullmatch(text) is not None or _ROOM_ID_RE.fullmatch(text) is not None


def is_listen_address(text: str) -> bool:
    """Tell whether text is `host:port` with a port a socket can take."""
    match = _LISTEN_RE.fullmatch(text)
    return match is not None and int(match.group(2)) <= MAX_PORT


def is_http_url(text: str) -> bool:
    """Tell whether text is an absolute http(s) URL with a host."""
    if not text or text != text.strip() or any(ch.isspace() for ch in text):
        return False
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def clip(text: str) -> str:
    """Cut text to a length fit for one line of a message."""
    return text if len(text) <= MAX_SCALAR_TEXT else text[: MAX_SCALAR_TEXT - 1] + "…"


def show(value: object) -> str:
    """Quote a value for a message, short enough for one line."""
    if isinstance(value, str):
        return repr(clip(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return kind(value)


def kind(value: object) -> str:
    """Name the YAML type of a value, with its article, for messages."""
    if value is None:
        return "nothing"
    for types, name in _KINDS:
        if isinstance(value, types):
            return name
    return f"a {type(value).__name__}"


def is_time_zone(name: str) -> bool:
    """Tell whether `name` is an IANA time zone zoneinfo can load (tzdata brings them all)."""
    # The list, not a mere ZoneInfo(name) load: that would also take a system's "localtime",
    # which means something else on every machine, and paths like "../zoneinfo/UTC".
    return len(name) <= MAX_SCALAR_TEXT and name != "localtime" and name in _known_zones()


@cache
def _known_zones() -> frozenset[str]:
    # Reading the zone directories takes tens of milliseconds: once per process is enough.
    return frozenset(available_timezones())
