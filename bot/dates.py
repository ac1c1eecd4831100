"""Dates as people read them, in French or English, in the zone they belong to."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from .config import Language
from .i18n import t
from .zones import Zone, utc_offset

_FR_WEEKDAYS: Final = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_FR_MONTHS: Final = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)
_EN_WEEKDAYS: Final = (
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
)
_EN_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def weekday_name(language: Language, weekday: int) -> str:
    """Return the name of a weekday (0 = Monday): `mardi`, `Tuesday`."""
    return (_FR_WEEKDAYS if language == "fr" else _EN_WEEKDAYS)[weekday]


def month_name(language: Language, month: int) -> str:
    """Return the name of a month (1 = January): `février`, `February`."""
    return (_FR_MONTHS if language == "fr" else _EN_MONTHS)[month - 1]


def format_date(dt: datetime, language: Language, zone: Zone) -> str:
    """Format a date for people, in `zone`, without touching the process locale.

    fr: « jeudi 8 janvier 2026 à 22 h 01 »; en: "Thursday 8 January 2026, 22:01". A naive
    datetime is taken as UTC (the store keeps UTC). A zone other than the configured default is
    named after the date: « … à 1 h 01 (heure de La Réunion, UTC+4) ».
    """
    local = zone.local(dt)
    if language == "fr":
        day = "1er" if local.day == 1 else str(local.day)
        text = (
            f"{_FR_WEEKDAYS[local.weekday()]} {day} {_FR_MONTHS[local.month - 1]} {local.year}"
            f" à {local.hour} h {local.minute:02d}"
        )
    else:
        text = (
            f"{_EN_WEEKDAYS[local.weekday()]} {local.day} {_EN_MONTHS[local.month - 1]}"
            f" {local.year}, {local.hour:02d}:{local.minute:02d}"
        )
    return zoned(text, language, zone, local)


def zoned(text: str, language: Language, zone: Zone, moment: datetime) -> str:
    """Return `text` (a date or time at `moment`) with its zone named, unless it is the default."""
    if zone.place is None:
        return text
    return t(language, "date.zoned", date=text, place=zone.place, offset=utc_offset(moment))
