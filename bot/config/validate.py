"""Validation: every problem is collected under its dotted key, so all are reported at once."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from ..errors import ConfigError
from .values import (
    MAX_BODY,
    MAX_DURATION,
    MAX_NAME_LENGTH,
    MAX_PREFIX_LENGTH,
    MAX_RETENTION,
    MAX_SCALAR_TEXT,
    MIN_RETENTION,
    TRUST_POLICIES,
    Trust,
    clip,
    is_http_url,
    is_listen_address,
    is_room_reference,
    is_server_name,
    is_slug,
    is_time_zone,
    is_user_id,
    kind,
    parse_duration,
    parse_size,
    show,
)

T = TypeVar("T")
C = TypeVar("C")
Check = Callable[[object], T]


class Problems:
    """Collects (dotted key, message) pairs so every mistake is reported in one go."""

    def __init__(self, initial: Iterable[tuple[str, str]] = ()) -> None:
        self.items: list[tuple[str, str]] = list(initial)
        # Problems found in reading the file come first; one key, one problem.
        self._settled = frozenset(key for key, _ in self.items)

    def add(self, key: str, message: str) -> None:
        """Record one problem, unless reading the file already found one at this key."""
        if key not in self._settled:
            self.items.append((key, message))

    def checked(self, config: C | None) -> C:
        """Return config, or raise every collected problem."""
        if self.items:
            raise ConfigError(self.items)
        if config is None:  # unreachable: the parser returns None only alongside a problem
            raise ConfigError([("", "invalid configuration")])
        return config


class Invalid(Exception):
    """A value failed its check; suffix locates it inside the value (like `[2]`)."""

    def __init__(self, message: str, suffix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.suffix = suffix


class Reader:
    """Reads the fields of one section, recording a problem for each invalid one."""

    def __init__(self, section: Mapping[str, object], prefix: str, problems: Problems) -> None:
        self.section = section
        self.prefix = prefix
        self.problems = problems
        self.failed: set[str] = set()

    def required(self, key: str, check: Check[T]) -> T | None:
        """Return the checked value of `key`, or None when it is absent or invalid."""
        if key not in self.section:
            return None  # section() already reported it missing
        return self._run(key, check)

    def optional(self, key: str, check: Check[T], default: T) -> T:
        """Return the checked value of `key`, or `default` when it is absent or invalid."""
        if key not in self.section or self.section[key] is None:
            return default
        result = self._run(key, check)
        return default if result is None else result

    def _run(self, key: str, check: Check[T]) -> T | None:
        try:
            return check(self.section[key])
        except Invalid as exc:
            self.failed.add(key)
            self.problems.add(join_key(join_key(self.prefix, key), exc.suffix), exc.message)
            return None


# --- sections ---------------------------------------------------------------------------------


def section(
    value: object,
    key: str,
    allowed: tuple[str, ...],
    required: tuple[str, ...],
    problems: Problems,
    *,
    allow_none: bool = False,
) -> dict[str, object] | None:
    """Check that value is a mapping with known keys; report unknown and missing ones."""
    if value is None and allow_none:
        value = {}
    if value is None:
        problems.add(key, f"empty: expected {', '.join(required or allowed)}")
        return None
    if not isinstance(value, dict):
        subject = "must be" if key else "the configuration must be"
        problems.add(key, f"{subject} a mapping of keys to values, not {kind(value)}")
        return None
    found: dict[str, object] = {}
    for name, item in value.items():
        if not isinstance(name, str):
            problems.add(join_key(key, show(name)), "key must be text (quote it)")
        elif name not in allowed:
            problems.add(join_key(key, clip(name)), f"unknown key{hint(name, allowed)}")
        else:
            found[name] = item
    for name in required:
        if name not in found:
            problems.add(join_key(key, name), "missing")
    return found


def slug_entries(value: object, key: str, problems: Problems) -> Iterable[tuple[str, str, object]]:
    """Yield (slug, dotted key, body) for each well-named entry of a regions-like mapping."""
    if value is None:
        return
    if not isinstance(value, dict):
        problems.add(key, f"must be a mapping of slug to settings, not {kind(value)}")
        return
    for slug, body in value.items():
        if not isinstance(slug, str):
            problems.add(f"{key}.{show(slug)}", "slug must be text (quote it)")
        elif not is_slug(slug):
            problems.add(
                join_key(key, clip(slug)),
                "invalid slug: use lowercase letters, digits and hyphens (like ile-de-france)",
            )
        else:
            yield slug, f"{key}.{slug}", body


def hint(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' when a choice is close to word, else ''."""
    close = difflib.get_close_matches(word[:MAX_SCALAR_TEXT], list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def join_key(prefix: str, key: str) -> str:
    """Return the dotted key of `key` inside `prefix` (`[2]` is appended without a dot)."""
    if not key:
        return prefix
    if not prefix:
        return key
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


# --- field checkers: each returns the clean value or raises Invalid ---------------------------


def text(value: object) -> str:
    """Non-empty text, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"must be non-empty text, not {kind(value)}")
    return value.strip()


def name(value: object) -> str:
    """A display name of reasonable length."""
    result = text(value)
    if len(result) > MAX_NAME_LENGTH:
        raise Invalid(f"too long ({len(result)} characters, at most {MAX_NAME_LENGTH})")
    return result


def secret(value: object) -> str | None:
    """A password or token; empty means unset."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Invalid(f"must be text (quote it), not {kind(value)}")
    return value


def prefix(value: object) -> str:
    """A command prefix: short, without spaces."""
    if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
        raise Invalid("must be non-empty text without spaces (like !)")
    if len(value) > MAX_PREFIX_LENGTH:
        raise Invalid(f"too long (at most {MAX_PREFIX_LENGTH} characters)")
    return value


def timezone(value: object) -> str:
    """An IANA time zone name (`Europe/Paris`, `Indian/Reunion`) known to zoneinfo."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"must be an IANA time zone name like Europe/Paris, not {kind(value)}")
    name = value.strip()
    if not is_time_zone(name):
        raise Invalid(f"unknown time zone {show(name)} (use an IANA name like Indian/Reunion)")
    return name


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME_OF_DAY = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def weekday(value: object) -> int:
    """A day of the week in English (`monday`); 0 is Monday."""
    name = value.strip().lower() if isinstance(value, str) else ""
    if name not in WEEKDAYS:
        raise Invalid(f"must be a day of the week like monday, not {show(value)}")
    return WEEKDAYS.index(name)


def time_of_day(value: object) -> tuple[int, int]:
    """A time of day written HH:MM (quote it: YAML reads 08:00 otherwise)."""
    match = _TIME_OF_DAY.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise Invalid(f'must be a time of day written "HH:MM" like "08:00", not {show(value)}')
    return int(match.group(1)), int(match.group(2))


def boolean(value: object) -> bool:
    """true or false, nothing YAML would merely take for one."""
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, not {show(value)}")
    return value


def trust(value: object) -> Trust:
    """One of the trust policies."""
    for known in TRUST_POLICIES:
        if value == known:
            return known
    raise Invalid(f"unknown trust policy {show(value)} (use cross-signed, tofu or all)")


def whole_number(low: int | None = None, high: int | None = None) -> Check[int]:
    """Return a checker of whole numbers between `low` and `high`."""

    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be a whole number, not {show(value)}")
        if low is not None and value < low:
            raise Invalid(f"must be at least {low}, not {value}")
        if high is not None and value > high:
            raise Invalid(f"must be at most {high}, not {value}")
        return value

    return check


def duration(value: object) -> float:
    """A positive duration of at most a year, in seconds."""
    return _positive(parse_duration, value, MAX_DURATION, "longer", "too long", "365d")


def retention(value: object) -> float:
    """How long entries are kept: at least a day, at most ten years, in seconds."""
    seconds = _positive(parse_duration, value, MAX_RETENTION, "longer", "too long", "3650d")
    if seconds < MIN_RETENTION:
        raise Invalid(f"too short: {show(value)} (at least 1d)")
    return seconds


def size(value: object) -> int:
    """A positive size of at most 1 GiB, in bytes."""
    return _positive(parse_size, value, MAX_BODY, "larger", "too large", "1GiB")


N = TypeVar("N", int, float)


def _positive(
    parse: Callable[[object], N], value: object, most: N, more: str, too_much: str, limit: str
) -> N:
    """Parse value; refuse zero and anything above `most` (written `limit` for people)."""
    try:
        result = parse(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if result <= 0:
        raise Invalid(f"must be {more} than zero, not {show(value)}")
    if result > most:
        raise Invalid(f"{too_much}: {show(value)} (at most {limit})")
    return result


def url(value: object) -> str:
    """An absolute http(s) URL."""
    if not isinstance(value, str) or not is_http_url(value.strip()):
        raise Invalid(f"must be an http(s) URL, not {show(value)}")
    return value.strip()


def user_id(value: object) -> str:
    """A Matrix user id."""
    if not isinstance(value, str) or not is_user_id(value.strip()):
        raise Invalid(f"must be a Matrix user id like @name:example.org, not {show(value)}")
    return value.strip()


def room(value: object) -> str:
    """A room alias or room id."""
    if not isinstance(value, str) or not is_room_reference(value.strip()):
        raise Invalid(
            f"must be a room alias like #room:example.org or a room id like !id:example.org, "
            f"not {show(value)}"
        )
    return value.strip()


def inviter(value: object) -> str:
    """A server name or a user id whose invites are accepted."""
    stripped = value.strip() if isinstance(value, str) else ""
    if is_user_id(stripped) or is_server_name(stripped):
        return stripped
    raise Invalid(
        f"must be a server name like example.org or a user id like @name:example.org, "
        f"not {show(value)}"
    )


def listen(value: object) -> str:
    """A `host:port` to listen on."""
    stripped = value.strip() if isinstance(value, str) else ""
    if not is_listen_address(stripped):
        raise Invalid(f"must be host:port like 127.0.0.1:9100, not {show(value)}")
    return stripped


def list_of(check: Check[T], *, non_empty: bool = False) -> Check[tuple[T, ...]]:
    """Return a checker of lists whose every item passes `check`."""

    def check_list(value: object) -> tuple[T, ...]:
        if not isinstance(value, list):
            written = f" (write [{clip(value)}])" if isinstance(value, str) else ""
            raise Invalid(f"must be a list{written}, not {kind(value)}")
        if non_empty and not value:
            raise Invalid("must list at least one entry")
        items: list[T] = []
        for index, item in enumerate(value):
            try:
                items.append(check(item))
            except Invalid as exc:
                # Report the first bad item only: one mistake is usually repeated down a list.
                raise Invalid(exc.message, f"[{index}]") from None
        return tuple(items)

    return check_list
