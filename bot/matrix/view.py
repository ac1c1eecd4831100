"""What a command learns from, and asks of, the Matrix side: its room, the bot's trust."""

from __future__ import annotations

from .crypto import Crypto
from .rooms import RoomStates


class CommandView:
    """The rooms' state and the bot's encryption, as the commands see them."""

    def __init__(self, rooms: RoomStates, crypto: Crypto) -> None:
        self._rooms = rooms
        self._crypto = crypto

    async def power_level(self, room_id: str, user_id: str) -> int:
        """Return the user's power level in the room; CREATOR_POWER for a v12 room's creators."""
        return await self._rooms.power_level(room_id, user_id)

    def encryption(self, room_id: str) -> tuple[bool, bool]:
        """Return (the bot encrypts, the room is encrypted as last synced)."""
        return self._rooms.encryption(room_id)

    def trust_policy(self) -> str | None:
        """The trust policy in force (`matrix.trust`); None without encryption."""
        return self._crypto.policy

    def master_key(self) -> str | None:
        """The bot's public master cross-signing key; None if it has none."""
        return self._crypto.master_key

    async def reset_trust(self, user_id: str) -> str | None:
        """Forget the identity pinned for the user and read their keys again; return the pin."""
        return await self._crypto.reset_trust(user_id)
