"""What the Matrix side expects from the rest of Crieur, passed to MatrixBot's constructor."""

from __future__ import annotations

from typing import Protocol

from .rooms import RoomStates


class Answer(Protocol):
    """A command's answer: plain text, and HTML when the text carries markup."""

    @property
    def text(self) -> str: ...

    @property
    def html(self) -> str | None: ...


class CommandHandler(Protocol):
    """Runs one command; returns the answer to send, or None to stay silent."""

    async def __call__(
        self, room: RoomStates, room_id: str, sender: str, event_id: str, body: str
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
