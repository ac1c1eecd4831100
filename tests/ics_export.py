"""iCalendar exports as the tests serve them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

Item = tuple[str, str, datetime]  # id, title, start (the event lasts four hours)


def ics(items: Sequence[Item]) -> bytes:
    """An export shaped like L'Agenda du Libre's: UTC times, LOCATION, URL."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Crieur tests//FR"]
    for uid, title, start in items:
        end = start + timedelta(hours=4)
        lines += [
            "BEGIN:VEVENT",
            f"UID:{uid}@agendadulibre.org",
            "DTSTAMP:20260101T000000Z",
            f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
            f"DTEND:{end:%Y%m%dT%H%M%SZ}",
            f"SUMMARY:{title}",
            "LOCATION:Médiathèque François Mitterrand\\, 97400 Saint-Denis",
            f"URL:https://www.agendadulibre.org/events/{uid}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()
