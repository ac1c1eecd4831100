"""Awaiting nio requests and reading the homeserver's refusals as SendErrors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterator
from contextvars import ContextVar
from typing import Any, Final

import aiohttp
from nio import AsyncClient, ErrorResponse

from ..errors import HomeserverUnavailable, RateLimited, RoomUnavailable, SendError
from .events import level, text

log = logging.getLogger(__name__)

REQUEST_TIMEOUT: Final = 30.0  # any request but a sync
DEFAULT_RETRY_AFTER: Final = 5.0  # seconds, when a 429 does not say

_REFUSAL_EXPECTED: ContextVar[bool] = ContextVar("refusal_expected", default=False)


class _RefusalValidation(logging.Filter):
    """Drop nio's schema warnings about an answer the caller reads as a refusal anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            _REFUSAL_EXPECTED.get() and record.getMessage().startswith("Error validating response")
        )


# nio checks every answer against the success schema and warns when a refusal fails it
# ("'access_token' is a required property"): noise where the refusal is handled.
logging.getLogger("nio.responses").addFilter(_RefusalValidation())


@contextlib.contextmanager
def refusal_expected() -> Iterator[None]:
    """Within this block (this task only), nio's warnings about refusals' schemas are dropped."""
    token = _REFUSAL_EXPECTED.set(True)
    try:
        yield
    finally:
        _REFUSAL_EXPECTED.reset(token)


async def call(
    what: str, request: Awaitable[object], *, seconds: float = REQUEST_TIMEOUT
) -> object:
    """Await one nio request; a transport failure becomes HomeserverUnavailable."""
    try:
        async with asyncio.timeout(seconds + 5.0):  # nio's own timeout should fire first
            return await request
    except (aiohttp.ClientError, TimeoutError) as error:
        raise HomeserverUnavailable(f"{what}: {describe(error)}") from error


async def send_message(
    client: AsyncClient, what: str, room_id: str, content: dict[str, Any], txn_id: str
) -> object:
    """Send one m.room.message; nio encrypts it when the room is encrypted and nio can."""
    return await call(
        what,
        client.room_send(
            room_id, "m.room.message", content, tx_id=txn_id, ignore_unverified_devices=True
        ),
    )


def status_of(response: object) -> int | None:
    """The HTTP status a nio response came with, if known."""
    status = getattr(getattr(response, "transport_response", None), "status", None)
    return status if isinstance(status, int) else None


def refusal(
    what: str,
    *,
    status: int | None,
    errcode: str | None,
    message: str | None,
    retry_after_ms: object = None,
) -> SendError:
    """Map a homeserver's refusal to the SendError the caller can act on."""
    shown = f"{what}: {errcode or status or 'error'} {message or 'unknown error'}"
    if errcode == "M_LIMIT_EXCEEDED" or status == 429:
        delay = level(retry_after_ms)
        return RateLimited(delay / 1000 if delay is not None else DEFAULT_RETRY_AFTER, shown)
    # A rejected token is fixed by logging in again (the sync loop does), not by the caller.
    if status is None or status >= 500 or errcode == "M_UNKNOWN_TOKEN":
        return HomeserverUnavailable(shown, errcode=errcode)
    if errcode in ("M_FORBIDDEN", "M_NOT_FOUND") or (errcode is None and status in (403, 404)):
        return RoomUnavailable(shown, errcode=errcode)
    return SendError(shown, errcode=errcode)


def response_error(what: str, response: object) -> SendError:
    """The SendError for a nio response that is not the one asked for."""
    if isinstance(response, ErrorResponse):
        return refusal(
            what,
            status=status_of(response),
            errcode=text(response.status_code),
            message=text(response.message),
            retry_after_ms=response.retry_after_ms,
        )
    return refusal(what, status=status_of(response), errcode=None, message=type(response).__name__)


def describe(error: BaseException) -> str:
    """An exception's type and message, for a log line."""
    shown = str(error)
    return f"{type(error).__name__}: {shown}" if shown else type(error).__name__


def log_refusal(what: str, response: object) -> None:
    """Log a refusal the bot goes on after."""
    if isinstance(response, ErrorResponse):
        log.warning("cannot %s: %s", what, response_error(what, response))
