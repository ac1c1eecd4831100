"""Crieur's exceptions: each carries what a person needs to act on it."""

from __future__ import annotations


class CrieurError(Exception):
    """Base of every error Crieur raises on purpose."""


class ConfigError(CrieurError):
    """One or more problems in the configuration, each naming its dotted key."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(self.lines()))

    def lines(self) -> list[str]:
        """Return one printable line per problem."""
        return [f"{key}: {message}" if key else message for key, message in self.problems]


class CommandError(CrieurError):
    """A mistake in a chat command the person can fix; answered with the message `key`."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params  # what the message `key` is filled with


class FetchError(CrieurError):
    """A feed could not be fetched."""

    def __init__(
        self,
        url: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.url = url
        self.status = status
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"{url}: {message}")


class InvalidURL(CrieurError):
    """A URL a person gave cannot be fetched: not http(s), no host, or credentials in it."""


class ParseError(CrieurError):
    """A fetched body holds no usable feed entries."""


class StoreError(CrieurError):
    """The database cannot be used (for instance, it is newer than this code)."""


class OpmlError(CrieurError):
    """An OPML file cannot be read."""


class SendError(CrieurError):
    """The homeserver did not accept a message."""

    def __init__(self, message: str, *, errcode: str | None = None) -> None:
        self.errcode = errcode
        super().__init__(message)


class RateLimited(SendError):
    """The homeserver asked us to slow down (`M_LIMIT_EXCEEDED`)."""

    def __init__(self, retry_after: float, message: str = "rate limited") -> None:
        self.retry_after = retry_after  # seconds
        super().__init__(message, errcode="M_LIMIT_EXCEEDED")


class HomeserverUnavailable(SendError):
    """The homeserver cannot be reached or failed (timeouts, 5xx): try again later."""


class RoomUnavailable(SendError):
    """The bot cannot post in this room (not joined, forbidden): the room is paused."""


class CrossSigningError(CrieurError):
    """The homeserver refused the bot's cross-signing keys or signatures."""


MAX_BUG_SUMMARY = 160


def bug_summary(error: BaseException) -> str:
    """Describe an exception nobody expected in one short line, for `!status` and the logs."""
    text = " ".join(str(error).split())
    detail = f"{type(error).__name__}: {text}" if text else type(error).__name__
    room = MAX_BUG_SUMMARY - len("internal error ()")
    if len(detail) > room:
        detail = detail[: room - 1].rstrip() + "…"
    return f"internal error ({detail})"
