"""What the bot knows of each room's state: creators, power levels, encryption."""

from __future__ import annotations

from typing import Final

from nio import AsyncClient, RoomGetEventResponse

from ..errors import SendError
from .events import Event, Levels, creators_of, creators_outrank, read_event, read_levels, text
from .requests import call, refusal, response_error, status_of

# Creators of a room version 12 room outrank every power level; no real level reaches this.
CREATOR_POWER: Final = 2**53


class RoomStates:
    """Room state read from syncs, or from the homeserver when no sync carried it yet."""

    def __init__(self, client: AsyncClient, *, encryption: bool) -> None:
        self._client = client
        self._encryption = encryption
        self._creators: dict[str, frozenset[str]] = {}
        self._levels: dict[str, Levels] = {}
        self._encrypted: dict[str, bool] = {}

    @property
    def encrypts(self) -> bool:
        """True when the bot encrypts (and decrypts) in encrypted rooms."""
        return self._encryption

    def encryption(self, room_id: str) -> tuple[bool, bool]:
        """Return (the bot encrypts, the room is encrypted as last synced)."""
        return self._encryption, bool(self._encrypted.get(room_id))

    def encrypted(self, room_id: str) -> bool | None:
        """Whether the room is end-to-end encrypted, as last synced (None if unknown)."""
        return self._encrypted.get(room_id)

    async def read_encrypted(self, room_id: str) -> bool:
        """Whether the room is encrypted, asking the homeserver when no sync said."""
        encrypted = self._encrypted.get(room_id)
        if encrypted is None:
            encrypted = await self._state_content(room_id, "m.room.encryption") is not None
            self._encrypted[room_id] = encrypted
        return encrypted

    async def power_level(self, room_id: str, user_id: str) -> int:
        """Return the user's power level in the room; CREATOR_POWER for a v12 room's creators.

        Raise HomeserverUnavailable or RoomUnavailable if the room's state cannot be read.
        """
        creators = self._creators.get(room_id)
        if creators is None:
            creators = await self._fetch_creators(room_id)
            self._creators[room_id] = creators
        if user_id in creators:
            return CREATOR_POWER
        levels = self._levels.get(room_id)
        if levels is None:
            content = await self._state_content(room_id, "m.room.power_levels")
            levels = read_levels(content) if content is not None else Levels()
            self._levels[room_id] = levels
        return levels.of(user_id)

    def observe(self, room_id: str, event: Event) -> str | None:
        """Keep what the bot needs from a state event; return a tombstone's replacement."""
        if event.state_key != "":
            return None
        if event.type == "m.room.create":
            self._creators[room_id] = creators_of(event)
        elif event.type == "m.room.power_levels":
            self._levels[room_id] = read_levels(event.content)
        elif event.type == "m.room.encryption":
            self._encrypted[room_id] = True
        elif event.type == "m.room.tombstone":
            replacement = text(event.content.get("replacement_room"))
            return replacement if replacement and replacement != room_id else None
        return None

    def forget(self, room_id: str) -> None:
        """Drop what is known of a room the bot left."""
        self._creators.pop(room_id, None)
        self._levels.pop(room_id, None)
        self._encrypted.pop(room_id, None)

    async def _fetch_creators(self, room_id: str) -> frozenset[str]:
        content = await self._state_content(room_id, "m.room.create")
        if content is None or not creators_outrank(text(content.get("room_version")) or "1"):
            return frozenset()
        # The state endpoint gives the content only. In these room versions the room id is the
        # create event's id with another sigil, so the event (and its sender) can be read.
        what = f"read the creation of {room_id}"
        response = await call(
            what, self._client.room_get_event(room_id, "$" + room_id.removeprefix("!"))
        )
        if not isinstance(response, RoomGetEventResponse):
            raise response_error(what, response)
        create = read_event(response.event)
        if create is None:
            raise SendError(f"{what}: unreadable event")
        return creators_of(create)

    async def _state_content(self, room_id: str, event_type: str) -> dict[str, object] | None:
        """Return a state event's content, None if the room has none; raise a SendError."""
        what = f"read {event_type} of {room_id}"
        response = await call(what, self._client.room_get_state_event(room_id, event_type))
        status = status_of(response)
        if status == 404:
            return None
        content = getattr(response, "content", None)
        if status == 200 and isinstance(content, dict):
            return content
        if isinstance(content, dict):
            # nio reads an error body other than 404 as a successful response's content.
            raise refusal(
                what,
                status=status,
                errcode=text(content.get("errcode")),
                message=text(content.get("error")),
                retry_after_ms=content.get("retry_after_ms"),
            )
        raise response_error(what, response)
