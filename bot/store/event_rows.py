"""Events as the calendar_events table keeps them: one JSON document per event."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from ..calendar import Event, Rule, When


def event_to_json(event: Event) -> str:
    """Return an event as a JSON document; dates and times keep their kind."""
    rule = event.rule
    data: dict[str, Any] = {
        "key": event.key,
        "title": event.title,
        "start": _when(event.start),
        "end": _when(event.end),
        "place": event.place,
        "city": event.city,
        "url": event.url,
        "description_html": event.description_html,
        "status": event.status,
        "next_start": _when(event.next_start),
        "rule": None
        if rule is None
        else {
            "frequency": rule.frequency,
            "interval": rule.interval,
            "weekdays": [list(pair) for pair in rule.weekdays],
            "month_days": list(rule.month_days),
            "months": list(rule.months),
            "count": rule.count,
            "until": _when(rule.until),
        },
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def event_from_json(text: str) -> Event:
    """Return the event of a document written by event_to_json."""
    data = json.loads(text)
    rule = data["rule"]
    start = _read(data["start"])
    if start is None:  # never written so: an event always has a start
        raise ValueError("an event without a start")
    return Event(
        key=data["key"],
        title=data["title"],
        start=start,
        end=_read(data["end"]),
        place=data["place"],
        city=data["city"],
        url=data["url"],
        description_html=data["description_html"],
        status="cancelled" if data["status"] == "cancelled" else "confirmed",
        next_start=_read(data["next_start"]),
        rule=None
        if rule is None
        else Rule(
            frequency=rule["frequency"],
            interval=rule["interval"],
            weekdays=tuple((int(a), int(b)) for a, b in rule["weekdays"]),
            month_days=tuple(rule["month_days"]),
            months=tuple(rule["months"]),
            count=rule["count"],
            until=_read(rule["until"]),
        ),
    )


def _when(value: When | None) -> list[str] | None:
    if value is None:
        return None
    # A datetime is a date too: ask for it first.
    return ["datetime" if isinstance(value, datetime) else "date", value.isoformat()]


def _read(value: list[str] | None) -> When | None:
    if value is None:
        return None
    kind, text = value
    return datetime.fromisoformat(text) if kind == "datetime" else date.fromisoformat(text)
