"""Typed views of what nio hands back: room events, syncs and power levels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Event:
    """The fields of a room event that the bot reads."""

    type: str
    sender: str
    event_id: str
    state_key: str | None
    content: Mapping[str, object]
    prev_membership: str | None  # from unsigned.prev_content, for m.room.member
    # The Curve25519 key of the device that sent an event nio decrypted; None in clear.
    sender_key: str | None = None

    @property
    def membership(self) -> str | None:
        """The membership an m.room.member event sets."""
        return text(self.content.get("membership"))


@dataclass(frozen=True, slots=True)
class JoinedRoom:
    """One joined room in a sync."""

    state: tuple[Event, ...]  # state before the timeline
    timeline: tuple[Event, ...]
    # Set when the timeline was cut short: where the events left out end, for /messages.
    prev_batch: str | None = None
    gap: tuple[Event, ...] = ()  # the events left out, oldest first, once read back


@dataclass(frozen=True, slots=True)
class Sync:
    """One sync's rooms, as the bot reads them."""

    next_batch: str
    joined: dict[str, JoinedRoom]
    invited: dict[str, str | None]  # room id → inviter
    left: dict[str, Event | None]  # room id → the bot's last membership event, if sent
    to_device: tuple[object, ...] = ()  # nio's to-device events, for what nio leaves unread


@dataclass(frozen=True, slots=True)
class Levels:
    """The parts of m.room.power_levels that rank users."""

    users: Mapping[str, int] = field(default_factory=dict)
    users_default: int = 0

    def of(self, user_id: str) -> int:
        """Return the user's level."""
        return self.users.get(user_id, self.users_default)


def text(value: object) -> str | None:
    """Return the value if it is a string."""
    return value if isinstance(value, str) else None


def level(value: object) -> int | None:
    """Read a power level; old room versions allowed them as strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def read_event(obj: object) -> Event | None:
    """Read a nio event through its source; None if it lacks a type or a sender."""
    source = getattr(obj, "source", None)
    if not isinstance(source, dict):
        return None
    kind, sender = source.get("type"), source.get("sender")
    if not isinstance(kind, str) or not isinstance(sender, str):
        return None
    content = source.get("content")
    unsigned = source.get("unsigned")
    previous = unsigned.get("prev_content") if isinstance(unsigned, dict) else None
    return Event(
        type=kind,
        sender=sender,
        event_id=text(source.get("event_id")) or "",
        state_key=text(source.get("state_key")),
        content=content if isinstance(content, dict) else {},
        prev_membership=text(previous.get("membership")) if isinstance(previous, dict) else None,
        sender_key=text(getattr(obj, "sender_key", None))
        if getattr(obj, "decrypted", False) is True
        else None,
    )


def read_events(objs: object) -> tuple[Event, ...]:
    """Read a list of nio events, skipping the unreadable ones."""
    if not isinstance(objs, list | tuple):
        return ()
    return tuple(event for obj in objs if (event := read_event(obj)) is not None)


def is_own_join(event: Event, me: str) -> bool:
    """True for the event of `me` joining (not a display name or avatar change)."""
    return (
        event.type == "m.room.member"
        and event.state_key == me
        and event.membership == "join"
        and event.prev_membership != "join"
    )


def _rooms(section: object) -> list[tuple[str, object]]:
    if not isinstance(section, dict):
        return []
    return [(room_id, info) for room_id, info in section.items() if isinstance(room_id, str)]


def _inviter(invite_state: object, me: str) -> str | None:
    """Find who invited the bot in a room's stripped invite state."""
    if not isinstance(invite_state, list):
        return None
    for obj in invite_state:
        source = getattr(obj, "source", None)
        if not isinstance(source, dict) or source.get("type") != "m.room.member":
            continue
        # nio moves the content of invite events out of `source` into attributes.
        membership = getattr(obj, "membership", None)
        if source.get("state_key") == me and membership == "invite":
            return text(source.get("sender"))
    return None


def _own_membership(events: Iterable[Event], me: str) -> Event | None:
    last = None
    for event in events:
        if event.type == "m.room.member" and event.state_key == me:
            last = event
    return last


def parse_sync(response: object, me: str) -> Sync:
    """Read a nio sync response as seen by the user `me`."""
    rooms = getattr(response, "rooms", None)
    joined: dict[str, JoinedRoom] = {}
    for room_id, info in _rooms(getattr(rooms, "join", None)):
        timeline = getattr(info, "timeline", None)
        limited = getattr(timeline, "limited", False) is True
        joined[room_id] = JoinedRoom(
            read_events(getattr(info, "state", None)),
            read_events(getattr(timeline, "events", None)),
            prev_batch=text(getattr(timeline, "prev_batch", None)) if limited else None,
        )
    invited = {
        room_id: _inviter(getattr(info, "invite_state", None), me)
        for room_id, info in _rooms(getattr(rooms, "invite", None))
    }
    left: dict[str, Event | None] = {}
    for room_id, info in _rooms(getattr(rooms, "leave", None)):
        timeline = read_events(getattr(getattr(info, "timeline", None), "events", None))
        state = read_events(getattr(info, "state", None))
        left[room_id] = _own_membership((*state, *timeline), me)
    to_device = getattr(response, "to_device_events", None)
    return Sync(
        str(getattr(response, "next_batch", "")),
        joined,
        invited,
        left,
        tuple(to_device) if isinstance(to_device, list) else (),
    )


def creators_outrank(room_version: str) -> bool:
    """Room version 12 (and later, and its draft names) puts creators above power levels."""
    if room_version.isdigit():
        return int(room_version) >= 12
    return room_version.startswith("org.matrix.hydra.")


def creators_of(create: Event) -> frozenset[str]:
    """The users a room's create event makes creators, when creators outrank power levels."""
    version = text(create.content.get("room_version")) or "1"
    if not creators_outrank(version):
        return frozenset()
    extra = create.content.get("additional_creators")
    others = {user for user in extra if isinstance(user, str)} if isinstance(extra, list) else set()
    return frozenset({create.sender, *others})


def read_levels(content: Mapping[str, object]) -> Levels:
    """Read the user levels of an m.room.power_levels content."""
    users = content.get("users")
    levels = {
        user: value
        for user, raw in (users.items() if isinstance(users, dict) else ())
        if isinstance(user, str) and (value := level(raw)) is not None
    }
    default = level(content.get("users_default"))
    return Levels(levels, default if default is not None else 0)
