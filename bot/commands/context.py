"""What every handler receives and returns: the context of one command, and its reply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from ..catalogue import Catalogue
from ..config import Language
from ..discovery import Discovery
from ..i18n import t
from ..store import Store

MAX_ARGUMENT: Final = 200  # characters in one argument; configured names have at most 200


class RoomView(Protocol):
    """What the guard and the handlers learn about a room, and ask of the Matrix side."""

    async def power_level(self, room_id: str, user_id: str) -> int:
        """Return the power level of `user_id` in the room (creators of v12 rooms outrank all)."""
        ...

    def encryption(self, room_id: str) -> tuple[bool, bool]:
        """Return (the bot encrypts, the room is encrypted)."""
        ...

    def trust_policy(self) -> str | None:
        """Return the trust policy in force (`matrix.trust`); None without encryption."""
        ...

    def master_key(self) -> str | None:
        """Return the bot's public master cross-signing key; None if it has none."""
        ...

    async def reset_trust(self, user_id: str) -> str | None:
        """Forget the identity pinned for the user, read their keys again; return the old pin."""
        ...


@dataclass(frozen=True, slots=True)
class Reply:
    """What a command answers: plain text, and HTML when the text carries markup."""

    text: str
    html: str | None = None


class FeedFinder(Protocol):
    """Finds the feed a room asks for (`!subscribe URL`)."""

    async def refused(self, url: str) -> str | None:
        """Return why the URL's address may not be fetched, else None."""
        ...

    async def find(self, url: str) -> Discovery:
        """Return the feeds found at `url`; raise TimeoutError when the site is too slow."""
        ...


@dataclass(frozen=True, slots=True)
class RoomSourcesPolicy:
    """What rooms may add themselves, and how it is looked up and polled."""

    finder: FeedFinder | None = None  # None: rooms cannot add feeds of their own
    max_own_feeds: int = 20
    interval: float = 1800.0  # seconds between polls, as polling.interval


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
    view: RoomView  # the Matrix side, for what a command asks of it
    sources: RoomSourcesPolicy = RoomSourcesPolicy()

    def t(self, key: str, **params: object) -> str:
        """Return the message `key` in the configured language."""
        return t(self.language, key, **params)

    def command(self, name: str) -> str:
        """Return how a person types the command `name` (`!help`)."""
        return f"{self.prefix}{name}"
