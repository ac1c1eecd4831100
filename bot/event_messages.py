"""The fr and en messages about events: announcements and `!events`; merged into i18n's."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

EVENTS_FR: Final[Mapping[str, str]] = MappingProxyType(
    {
        "event.at": "{day}, {time}",
        "event.from_to": "{start} – {end}",
        "event.days": "du {first} au {last}",
        "event.place": "Lieu : {place}",
        "event.series": "{rule} — prochaine fois : {next}",
        "event.changed": "Modifié : {title}",
        "event.cancelled": "Annulé : {title}",
        "event.untitled": "(événement sans titre)",
        "help.events": (
            "montre les N prochains événements des régions et organisations que suit ce salon, "
            "ou de celle nommée"
        ),
        "usage.events": "[RÉGION ou ORGANISATION] [N]",
        "events.header": "Prochains événements — {name} :",
        "events.header_room": "Prochains événements :",
        "events.line": "{when} — {source} : {title}",
        "events.none": "Aucun événement à venir pour « {name} ».",
        "events.none_room": ("Aucun événement à venir pour ce que suit ce salon (voir {command})."),
    }
)

EVENTS_EN: Final[Mapping[str, str]] = MappingProxyType(
    {
        "event.at": "{day}, {time}",
        "event.from_to": "{start} – {end}",
        "event.days": "{first} – {last}",
        "event.place": "Where: {place}",
        "event.series": "{rule} — next: {next}",
        "event.changed": "Changed: {title}",
        "event.cancelled": "Cancelled: {title}",
        "event.untitled": "(untitled event)",
        "help.events": (
            "show the N next events of the regions and organisations this room follows, "
            "or of the one named"
        ),
        "usage.events": "[REGION or ORGANISATION] [N]",
        "events.header": "Next events — {name}:",
        "events.header_room": "Next events:",
        "events.line": "{when} — {source}: {title}",
        "events.none": "No upcoming event for “{name}”.",
        "events.none_room": "No upcoming event for what this room follows (see {command}).",
    }
)
