"""What the Matrix side expects from the rest of Crieur, passed to MatrixBot's constructor."""

from __future__ import annotations

from typing import Protocol

from .view import CommandView


class Answer(Protocol):
    """A command's answer: plain text, and HTML when the text carries markup."""

    @property
    def text(self) -> str: ...

    @property
    def html(self) -> str | None: ...


class CommandHandler(Protocol):
    """Runs one command; returns the answer to send, or None to stay silent."""

    async def __call__(
        self, room: CommandView, room_id: str, sender: str, event_id: str, body: str
    ) -> Answer | None: ...


class MatrixListener(Protocol):
    """Told what happens on the Matrix side that others act on."""

    def joined(self, room_id: str) -> None:
        """The bot joined (or rejoined) a room."""

    def reconnected(self) -> None:
        """Syncs work again after failing."""

    def undecryptable(self) -> None:
        """A room event could not be decrypted."""

    def new_token(self, token: str) -> None:
        """A log-in gave a new access token."""

    def withheld_room_key(self) -> None:
        """A member's device refused the bot a room key (`m.room_key.withheld`)."""

    def untrusted_command(self) -> None:
        """A command came from a device the trust policy does not trust: it was not run."""

    def identity_replaced(self, warning: str) -> None:
        """The bot's cross-signing identity was lost and made again; `warning` says so."""

    def room_left(self, room_id: str, reason: str) -> None:
        """The bot is no longer in a room it was in (left, kicked or banned: `reason`)."""


class QuietListener:
    """A listener that ignores everything."""

    def joined(self, room_id: str) -> None:
        """Ignore a join."""

    def reconnected(self) -> None:
        """Ignore the end of an outage."""

    def undecryptable(self) -> None:
        """Ignore an undecryptable event."""

    def new_token(self, token: str) -> None:
        """Ignore a new token."""

    def withheld_room_key(self) -> None:
        """Ignore a withheld room key."""

    def untrusted_command(self) -> None:
        """Ignore a command left unrun."""

    def identity_replaced(self, warning: str) -> None:
        """Ignore a replaced identity."""

    def room_left(self, room_id: str, reason: str) -> None:
        """Ignore a room left."""
