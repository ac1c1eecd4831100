"""Events as the JSON of the golden files in tests/data/calendars/."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from bot.calendar import Event


def event_json(event: Event) -> dict[str, Any]:
    """Return an event as plain JSON values: dates and times in ISO 8601."""
    return {name: _plain(value) for name, value in asdict(event).items()}


def _plain(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value
