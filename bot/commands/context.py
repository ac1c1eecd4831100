"""What every handler receives and returns: the context of one command, and its reply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..catalogue import Catalogue
from ..config import Language
from ..i18n import t
from ..store import Store

MAX_ARGUMENT: Final = 200  # characters in one argument; configured names have at most 200


@dataclass(frozen=True, slots=True)
class Reply:
    """What a command answers: plain text, and HTML when the text carries markup."""

    text: str
    html: str | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler may use: the room and sender, the bot's data, and the time."""

    store: Store
    catalogue: Catalogue
    language: Language
    prefix: str
    manage_power_level: int
    room_id: str
    sender: str
    is_admin: bool
    now: float
    encryption: tuple[bool, bool]  # (the bot encrypts, the room is encrypted)

    def t(self, key: str, **params: object) -> str:
        """Return the message `key` in the configured language."""
        return t(self.language, key, **params)

    def command(self, name: str) -> str:
        """Return how a person types the command `name` (`!help`)."""
        return f"{self.prefix}{name}"
