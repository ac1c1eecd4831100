"""When an event takes place, and how a series repeats, in words people write (fr and en).

French reads hours as « 14 h », « 14 h 30 »; English as "2:00 pm". Timed events are shown in
the zone given (the event's region's), named when it is not the top-level zone; all-day events
are dates and are shown as they are.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Final

from .calendar import Event, Rule, When
from .config import Language
from .dates import month_name, weekday_name, zoned
from .i18n import join_list, t
from .zones import Zone

_FR_ORDINALS: Final = {
    1: "premier",
    2: "deuxième",
    3: "troisième",
    4: "quatrième",
    5: "cinquième",
    -1: "dernier",
    -2: "avant-dernier",
}
_EN_ORDINALS: Final = {
    1: "first",
    2: "second",
    3: "third",
    4: "fourth",
    5: "fifth",
    -1: "last",
    -2: "second to last",
}


def event_when(event: Event, language: Language, zone: Zone) -> str:
    """Return when the event takes place: « samedi 14 février 2026, 14 h – 18 h »."""
    return span(event.start, event.end, language, zone)


def span(start: When, end: When | None, language: Language, zone: Zone) -> str:
    """Return a start and an optional (exclusive for days) end in words."""
    if not isinstance(start, datetime):
        last = end - timedelta(days=1) if isinstance(end, date) else None
        if last is None or isinstance(last, datetime) or last <= start:
            return day(start, language)
        return days(start, last, language)
    first = zone.local(start)
    if not isinstance(end, datetime):
        text = t(language, "event.at", day=day(first, language), time=clock(first, language))
        return zoned(text, language, zone, first)
    until = zone.local(end)
    if until.date() == first.date():
        hours = clock_range(first, until, language)
        text = t(language, "event.at", day=day(first, language), time=hours)
    else:
        text = t(
            language,
            "event.from_to",
            start=t(language, "event.at", day=day(first, language), time=clock(first, language)),
            end=t(language, "event.at", day=day(until, language), time=clock(until, language)),
        )
    return zoned(text, language, zone, first)


def day(when: date, language: Language) -> str:
    """Return a day in full: « samedi 1er février 2026 », "Saturday 1 February 2026"."""
    number = "1er" if language == "fr" and when.day == 1 else str(when.day)
    weekday = weekday_name(language, when.weekday())
    return f"{weekday} {number} {month_name(language, when.month)} {when.year}"


def days(first: date, last: date, language: Language) -> str:
    """Return a run of days, saying the month and year once when they are shared."""
    if (first.year, first.month) == (last.year, last.month):
        number = "1er" if language == "fr" and first.day == 1 else str(first.day)
        head = f"{weekday_name(language, first.weekday())} {number}"
    elif first.year == last.year:
        head = day(first, language).rsplit(" ", 1)[0]
    else:
        head = day(first, language)
    return t(language, "event.days", first=head, last=day(last, language))


def clock(when: datetime, language: Language) -> str:
    """Return a time of day: « 14 h », « 14 h 30 », "2:00 pm"."""
    if language == "fr":
        return f"{when.hour} h" + (f" {when.minute:02d}" if when.minute else "")
    return f"{_twelve(when)} {_half(when)}"


def clock_range(first: datetime, last: datetime, language: Language) -> str:
    """Return two times of one day: « 14 h – 18 h », "2:00 – 6:00 pm", "10:00 am – 2:00 pm"."""
    if language == "en" and _half(first) == _half(last):
        return f"{_twelve(first)} – {clock(last, language)}"
    return f"{clock(first, language)} – {clock(last, language)}"


def rule_words(rule: Rule, first: When, language: Language) -> str:
    """Return how a series repeats: « tous les mardis », "every other Tuesday"."""
    weekdays = [weekday for position, weekday in rule.weekdays if position == 0]
    if rule.frequency == "DAILY":
        if rule.interval == 1:
            return t(language, "rule.daily")
        return t(language, "rule.daily_n", n=rule.interval)
    if rule.frequency == "WEEKLY":
        names = join_list(
            language, [_weekday(language, w, plural=True) for w in weekdays or [first.weekday()]]
        )
        if rule.interval == 1:
            return t(language, "rule.weekly", days=names)
        singular = join_list(
            language, [_weekday(language, w) for w in weekdays or [first.weekday()]]
        )
        if rule.interval == 2:
            return t(language, "rule.weekly_2", days=singular)
        return t(language, "rule.weekly_n", days=singular, n=rule.interval)
    if rule.frequency == "MONTHLY":
        text = _monthly(rule, first, language)
        if rule.interval > 1:
            text = t(language, "rule.every_n_months", rule=text, n=rule.interval)
        return text
    if rule.frequency == "YEARLY":
        return t(language, "rule.yearly")
    return t(language, "rule.irregular")


def _monthly(rule: Rule, first: When, language: Language) -> str:
    ordinals = _FR_ORDINALS if language == "fr" else _EN_ORDINALS
    placed = [(position, weekday) for position, weekday in rule.weekdays if position in ordinals]
    if placed:
        phrases = [
            t(language, "rule.nth", nth=ordinals[position], day=_weekday(language, weekday))
            for position, weekday in placed
        ]
        return t(language, "rule.monthly_nth", days=join_list(language, phrases))
    month_days = rule.month_days or (first.day,)
    numbers = ["1er" if language == "fr" and d == 1 else str(d) for d in month_days]
    return t(language, "rule.monthly_day", days=join_list(language, numbers))


def _weekday(language: Language, weekday: int, *, plural: bool = False) -> str:
    name = weekday_name(language, weekday)
    # English weekdays take no plural here ("every Tuesday"); French ones do (« tous les mardis »).
    return f"{name}s" if plural and language == "fr" else name


def _twelve(when: datetime) -> str:
    return f"{(when.hour % 12) or 12}:{when.minute:02d}"


def _half(when: datetime) -> str:
    return "am" if when.hour < 12 else "pm"
