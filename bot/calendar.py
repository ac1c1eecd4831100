"""Turn a fetched iCalendar body into normalised events; pure (no clock, no I/O).

Parsing is icalendar's, expanding recurrences recurring-ical-events'. What is decided here:
- Keys: `UID`, plus `#` and the `RECURRENCE-ID` in UTC for a modified occurrence of a series.
  An event without `UID` gets a hash of its title, start and place, as feed entries do.
- Times: aware datetimes in UTC. A floating time (no zone) is read in the calendar's
  `X-WR-TIMEZONE` when it names a known zone, else in the zone the caller gives (the region's).
  All-day events keep `date` values (their `end` is exclusive, as in iCalendar).
- Bounds: at most MAX_EVENTS events per calendar: the upcoming ones first, soonest first, then
  the most recently started; a series' next occurrence is looked for within HORIZON after
  `now`, stepping over at most MAX_STEPS occurrences still running, and only for series repeating
  daily or less often (an hourly "event" is kept at its first start, not expanded), for the
  first MAX_SERIES series of a calendar, as long as the occurrences before `now` to step
  through stay under MAX_STEPPED_PER_SERIES for one series and MAX_STEPPED for all; a series
  without a next occurrence counts as past. Dates outside the years 1900-2999 are unreadable.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events

from .errors import ParseError
from .sanitise import text_as_html

MAX_EVENTS: Final = 2000
MAX_SERIES: Final = 500  # series expanded per calendar; beyond, their next occurrence is unknown
HORIZON: Final = timedelta(days=2 * 366)  # how far ahead a series' next occurrence is looked for
MAX_STEPS: Final = 50  # occurrences still running at `now` stepped over to find the next start
# Expanding a series walks through its occurrences from its first one: about 10 µs each.
MAX_STEPPED_PER_SERIES: Final = 20_000  # a daily series may have begun some 55 years ago
MAX_STEPPED: Final = 100_000  # for all the series of a calendar
MAX_TITLE: Final = 300  # characters of a title kept
MAX_TEXT: Final = 500  # characters of a place or city kept
MAX_DESCRIPTION: Final = 100_000  # characters of a description kept (render cuts far shorter)
EXPANDED_FREQUENCIES: Final = frozenset({"DAILY", "WEEKLY", "MONTHLY", "YEARLY"})
WEEKDAYS: Final = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# Years a date may have: beyond them it is a typo or a trap, and moving it between zones or
# counting occurrences up to it would overflow or take forever.
YEARS: Final = range(1900, 3000)

Status = Literal["confirmed", "cancelled"]
When = datetime | date

_POSTCODE_CITY = re.compile(r"^(?:\d{5}|\d{4}|\d{2} ?\d{3})\s+(\D.*)$")  # FR 5 digits, CH 4
_COUNTRIES = frozenset({"france", "suisse", "switzerland", "belgique", "belgium", "fr", "ch"})
_HTML_HINT = re.compile(r"<(?:p|br|a|ul|ol|li|b|i|em|strong|div|span)\b|</", re.IGNORECASE)
_PERIOD_DAYS: Final = {"DAILY": 1, "WEEKLY": 7, "MONTHLY": 28, "YEARLY": 365}
_BYDAY = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")


@dataclass(frozen=True, slots=True)
class Rule:
    """A recurrence rule in a form render can put into words (`RRULE` parts it understands)."""

    frequency: str  # DAILY, WEEKLY, MONTHLY, YEARLY (or a finer one, not expanded)
    interval: int = 1
    # (position, weekday): weekday 0 = Monday; position 0 = every one, 2 = the second, -1 = last.
    weekdays: tuple[tuple[int, int], ...] = ()
    month_days: tuple[int, ...] = ()
    months: tuple[int, ...] = ()
    count: int | None = None
    until: When | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One normalised calendar event: a single one, a series, or a modified occurrence."""

    key: str  # UID, or UID#RECURRENCE-ID for a modified occurrence; never normalised
    title: str  # plain text, one line
    start: When  # aware UTC datetime, or a date for an all-day event
    end: When | None  # exclusive; None when the calendar gives neither end nor duration
    place: str | None  # LOCATION without the city, when the city could be told apart
    city: str | None
    url: str | None
    description_html: str  # raw; only sanitise.py makes it safe
    status: Status
    rule: Rule | None = None  # set for a series
    next_start: When | None = None  # a series' next occurrence after `now`, within HORIZON

    @property
    def all_day(self) -> bool:
        """Tell whether the event takes whole days (its start is a date, not a time)."""
        return not isinstance(self.start, datetime)


def parse(body: bytes, *, now: datetime, zone: str) -> list[Event]:
    """Return the events of an iCalendar body, by when they (next) take place.

    Raise ParseError when the body is not a calendar, or none of its events can be read.
    `zone` (an IANA name) reads floating times when the calendar names no zone of its own.
    """
    calendar = _calendar(body)
    floating = _zone(str(calendar.get("X-WR-TIMEZONE", "")).strip()) or _zone(zone) or UTC
    components = list(calendar.walk("VEVENT"))
    events: dict[str, Event] = {}
    sequences: dict[str, int] = {}
    masters: dict[str, Any] = {}
    for component in components:
        event = _event(component, floating)
        if event is None:
            continue
        sequence = _int(component.get("SEQUENCE"), 0)
        # The same key twice: the higher SEQUENCE is the newer version, else the first wins.
        if event.key in events and sequences[event.key] >= sequence:
            continue
        events[event.key] = event
        sequences[event.key] = sequence
        if event.rule is not None and "RECURRENCE-ID" not in component:
            masters[event.key] = component
    if components and not events:
        raise ParseError("no readable event in the calendar")
    overrides: dict[str, list[Any]] = {}
    for component in components:
        if "RECURRENCE-ID" in component:
            overrides.setdefault(_uid(component), []).append(component)
    expandable = set(list(masters)[:MAX_SERIES])  # the first series of the document
    budget = float(MAX_STEPPED)  # occurrences before `now` the expansions may step through, in all
    found = list(events.values())
    for index, event in enumerate(found):
        if event.rule is not None and event.key in expandable:
            cost = _occurrences_until(event, now)
            if cost > min(budget, MAX_STEPPED_PER_SERIES):
                continue  # its next occurrence stays unknown: see the module's docstring
            budget -= cost
            upcoming = _next_start(
                masters[event.key], overrides.get(event.key, []), event.rule, now, floating
            )
            found[index] = replace(event, next_start=upcoming)
    kept = _bounded(found, now, floating)
    return sorted(kept, key=lambda event: (_instant(_when_next(event), floating), event.key))


def is_past(event: Event, now: datetime, *, zone: str) -> bool:
    """Tell whether an event has started (a series: whether it has no occurrence left).

    An all-day event starts at midnight in `zone` (an IANA name, the region's).
    """
    if event.rule is not None and event.next_start is None:
        return True
    return _instant(_when_next(event), _zone(zone) or UTC) <= now


def starts_at(event: Event, *, zone: str) -> datetime | None:
    """Return when an event (a series: its next occurrence) starts; None for a finished series.

    An all-day event starts at midnight in `zone` (an IANA name, the region's).
    """
    if event.rule is not None and event.next_start is None:
        return None
    return _instant(_when_next(event), _zone(zone) or UTC)


def _when_next(event: Event) -> When:
    """Return when an event next takes place: a series' next occurrence, else its start."""
    return event.next_start if event.next_start is not None else event.start


def _calendar(body: bytes) -> icalendar.Calendar:
    """Read one VCALENDAR, or raise ParseError saying why."""
    text = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text.upper().startswith(b"BEGIN:VCALENDAR"):
        raise ParseError("not an iCalendar document (no BEGIN:VCALENDAR)")
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise ParseError(f"unreadable iCalendar document: {str(exc)[:200]}") from exc
    if not isinstance(calendar, icalendar.Calendar) or calendar.name != "VCALENDAR":
        raise ParseError("not an iCalendar document")
    return calendar


def _event(component: Any, floating: tzinfo) -> Event | None:
    """Return the event a VEVENT describes, or None when it has no readable start."""
    start = _when(component, "DTSTART", floating)
    if start is None:
        return None
    end = _when(component, "DTEND", floating)
    if end is None:
        duration = _decoded(component, "DURATION")
        if isinstance(duration, timedelta):
            end = start + duration
        elif not isinstance(start, datetime):
            end = start + timedelta(days=1)  # RFC 5545: an all-day event lasts its day
    if end is not None and (isinstance(end, datetime) != isinstance(start, datetime)):
        end = None  # a date ending a timed event (or the reverse) says nothing reliable
    elif end is not None and _instant(end, floating) < _instant(start, floating):
        end = None
    title = _one_line(_text(component.get("SUMMARY")), MAX_TITLE)
    place, city = _place(_text(component.get("LOCATION")))
    status: Status = (
        "cancelled" if _text(component.get("STATUS")).upper() == "CANCELLED" else ("confirmed")
    )
    return Event(
        key=_key(component, title, start, place, city, floating),
        title=title,
        start=start,
        end=end,
        place=place,
        city=city,
        url=_url(_text(component.get("URL"))),
        description_html=_description(component),
        status=status,
        rule=_rule(component.get("RRULE"), floating) if "RECURRENCE-ID" not in component else None,
    )


def _when(component: Any, name: str, floating: tzinfo) -> When | None:
    """Return a date, or a datetime in UTC (floating times read in `floating`)."""
    value = _decoded(component, name)
    if isinstance(value, date) and value.year not in YEARS:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=floating)
        return value.astimezone(UTC)
    if isinstance(value, date):
        return value
    return None


def _decoded(component: Any, name: str) -> object:
    if name not in component:
        return None
    try:
        return component.decoded(name)
    except (ValueError, TypeError, KeyError, ZoneInfoNotFoundError):
        return None


def _key(
    component: Any, title: str, start: When, place: str | None, city: str | None, floating: tzinfo
) -> str:
    uid = _uid(component)
    if not uid:
        digest = hashlib.sha256(
            "\x00".join((title, start.isoformat(), place or "", city or "")).encode()
        ).hexdigest()
        uid = f"sha256:{digest}"
    recurrence = _when(component, "RECURRENCE-ID", floating)
    if recurrence is None:
        return uid
    return f"{uid}#{_stamp(recurrence)}"


def _uid(component: Any) -> str:
    return _text(component.get("UID")).strip()


def _stamp(when: When) -> str:
    """Write a date or a UTC time the way iCalendar does: 20260214, 20260214T130000Z."""
    if isinstance(when, datetime):
        return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return when.strftime("%Y%m%d")


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # a property given twice: the first one counts
        return _text(value[0]) if value else ""
    return str(value)


def _one_line(text: str, budget: int) -> str:
    line = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return line[:budget]


def _place(location: str) -> tuple[str | None, str | None]:
    """Split LOCATION into the place and its city when the city stands out; else all is place.

    The city stands out after a postcode ("12 rue X, 31000 Toulouse") or as the last of at
    least two comma-separated parts without digits ("Le Local, Toulouse"); a country at the
    end is dropped.
    """
    text = _one_line(location, MAX_TEXT)
    if not text:
        return None, None
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if len(parts) > 1 and parts[-1].casefold() in _COUNTRIES:
        parts.pop()
    for index in range(len(parts) - 1, -1, -1):
        found = _POSTCODE_CITY.match(parts[index])
        if found is not None:
            rest = parts[:index] + parts[index + 1 :]
            return (", ".join(rest) or None), found.group(1).strip()
    if len(parts) > 1 and not any(ch.isdigit() for ch in parts[-1]):
        return ", ".join(parts[:-1]), parts[-1]
    return ", ".join(parts), None


def _url(value: str) -> str | None:
    url = value.strip()
    return url if url.lower().startswith(("http://", "https://")) and len(url) <= 2000 else None


def _description(component: Any) -> str:
    """Return the HTML description when given, else DESCRIPTION's text as HTML."""
    for alt in _as_list(component.get("X-ALT-DESC")):
        if str(getattr(alt, "params", {}).get("FMTTYPE", "")).lower() == "text/html":
            return str(alt)[:MAX_DESCRIPTION]
    text = _text(component.get("DESCRIPTION"))[:MAX_DESCRIPTION]
    # Some exports (L'Agenda du Libre's among them) put HTML in DESCRIPTION despite RFC 5545.
    return text if _HTML_HINT.search(text) else text_as_html(text.strip())


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _rule(value: object, floating: tzinfo) -> Rule | None:
    """Return the structured form of an RRULE (the first one when there are several)."""
    rules = _as_list(value)
    if not rules or not isinstance(rules[0], Mapping):
        return None
    parts: Mapping[str, list[Any]] = rules[0]
    frequency = str(_first(parts, "FREQ") or "").upper()
    if not frequency:
        return None
    weekdays: list[tuple[int, int]] = []
    for item in parts.get("BYDAY", []):
        found = _BYDAY.match(str(item).upper())
        if found is not None:
            weekdays.append((int(found.group(1) or 0), WEEKDAYS.index(found.group(2))))
    until = _first(parts, "UNTIL")
    if isinstance(until, datetime):
        until = (until if until.tzinfo else until.replace(tzinfo=floating)).astimezone(UTC)
    elif not isinstance(until, date):
        until = None
    return Rule(
        frequency=frequency,
        interval=max(1, _int(_first(parts, "INTERVAL"), 1)),
        weekdays=tuple(weekdays),
        month_days=tuple(_int(day, 0) for day in parts.get("BYMONTHDAY", []) if _int(day, 0)),
        months=tuple(_int(month, 0) for month in parts.get("BYMONTH", []) if _int(month, 0)),
        count=_int(_first(parts, "COUNT"), 0) or None,
        until=until,
    )


def _first(parts: Mapping[str, list[Any]], name: str) -> Any:
    values = parts.get(name)
    return values[0] if values else None


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


def _next_start(
    master: Any, overrides: list[Any], rule: Rule, now: datetime, floating: tzinfo
) -> When | None:
    """Return the first start after `now` of a series, within HORIZON; None if none."""
    if master is None or rule.frequency not in EXPANDED_FREQUENCIES or _bad_interval(master):
        return None
    calendar = icalendar.Calendar()
    calendar.add_component(master)
    for override in overrides:
        calendar.add_component(override)
    try:
        occurrences = recurring_ical_events.of(calendar).after(now)
        for occurrence in itertools.islice(occurrences, MAX_STEPS):
            start = _when(occurrence, "DTSTART", floating)
            if start is None:
                continue
            instant = _instant(start, floating)
            if instant > now + HORIZON:
                return None
            cancelled = _text(occurrence.get("STATUS")).upper() == "CANCELLED"
            if instant > now and not cancelled:
                return start
    except (ValueError, TypeError, KeyError, OverflowError):
        # A rule the library cannot expand leaves the series without a next occurrence.
        return None
    return None


def _occurrences_until(event: Event, now: datetime) -> float:
    """Estimate how many occurrences of a series come before `now` (an upper bound)."""
    rule = event.rule
    if rule is None:
        return 0.0
    days = (now.date() - _day_of(event.start)).days
    period = _PERIOD_DAYS.get(rule.frequency, 1) * max(1, rule.interval)
    per_period = (
        max(1, len(rule.weekdays)) * max(1, len(rule.month_days)) * max(1, len(rule.months))
    )
    return max(0, days) / period * per_period


def _day_of(when: When) -> date:
    return when.date() if isinstance(when, datetime) else when


def _bad_interval(master: Any) -> bool:
    """Tell whether the RRULE's INTERVAL is below 1: expanding it would never end."""
    rules = _as_list(master.get("RRULE"))
    if not rules or not isinstance(rules[0], Mapping):
        return True
    interval = _first(rules[0], "INTERVAL")
    return interval is not None and _int(interval, 0) < 1


def _bounded(events: Iterable[Event], now: datetime, floating: tzinfo) -> list[Event]:
    """Keep at most MAX_EVENTS: upcoming ones soonest first, then the latest started."""
    ranked = sorted(events, key=lambda event: _rank(event, now, floating))
    return ranked[:MAX_EVENTS]


def _rank(event: Event, now: datetime, floating: tzinfo) -> tuple[int, float, str]:
    start = _instant(_when_next(event), floating).timestamp()
    # Upcoming first by closeness; past ones after, the most recently started first.
    return (0, start, event.key) if start > now.timestamp() else (1, -start, event.key)


def _instant(when: When, zone: tzinfo) -> datetime:
    """Return the moment a start begins: a date begins at midnight in `zone`."""
    if isinstance(when, datetime):
        return when
    return datetime(when.year, when.month, when.day, tzinfo=zone)


def _zone(name: str) -> ZoneInfo | None:
    if not name or len(name) > 64 or name.startswith(("/", ".")):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
