"""Room keys withheld from the bot (`m.room_key.withheld`), read from a sync's to-device events.

A sender's client that will not share a room key with the bot's device says so, with a code
(`m.unverified`, `m.blacklisted`, …): the event it protects then cannot be decrypted, and the
reason is worth more in the log than "no room key".
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

WITHHELD_TYPES: Final = frozenset({"m.room_key.withheld", "org.matrix.room_key.withheld"})
MAX_REASON: Final = 200
MAX_REMEMBERED: Final = 256  # withheld sessions kept to explain undecryptable events


def _printable(value: object, limit: int = MAX_REASON) -> str | None:
    """A sender's text made safe for one log line: no control characters, bounded."""
    if not isinstance(value, str):
        return None
    text = "".join(char if char.isprintable() else " " for char in value[:limit])
    return text.strip() or None


@dataclass(frozen=True, slots=True)
class WithheldKey:
    """A device refused to share a room key with the bot (`m.room_key.withheld`)."""

    sender: str
    code: str  # m.unverified, m.blacklisted, m.unauthorised, m.unavailable, m.no_olm
    reason: str | None
    room_id: str | None
    session_id: str | None
    from_device: str | None

    def log_line(self) -> str:
        """One plain line for the log."""
        device = f" (device {self.from_device})" if self.from_device else ""
        where = f" in {self.room_id}" if self.room_id else ""
        session = f" for session {self.session_id}" if self.session_id else ""
        reason = f": {self.reason}" if self.reason else ""
        return f"{self.sender}{device} withheld a room key{where}{session}: {self.code}{reason}"


def withheld_key(event: object) -> WithheldKey | None:
    """Read a to-device event as a withheld room key; None if it is something else.

    matrix-nio 0.26 knows no such event: it hands it over as an `UnknownToDeviceEvent`
    whose `source` is the event as received (a withheld notice is sent unencrypted).
    """
    source = getattr(event, "source", None)
    if not isinstance(source, dict) or source.get("type") not in WITHHELD_TYPES:
        return None
    content = source.get("content")
    sender = _printable(source.get("sender"))
    if not isinstance(content, dict) or sender is None:
        return None
    return WithheldKey(
        sender=sender,
        code=_printable(content.get("code"), 64) or "unknown",
        reason=_printable(content.get("reason")),
        room_id=_printable(content.get("room_id")),
        session_id=_printable(content.get("session_id")),
        from_device=_printable(content.get("from_device")),
    )


def log_withheld(events: Iterable[object]) -> list[WithheldKey]:
    """Log each withheld room key among a sync's to-device events; return them, to count."""
    found = [key for key in map(withheld_key, events) if key is not None]
    for key in found:
        log.warning("%s", key.log_line())
    return found


class RecentWithheld:
    """The latest withheld room keys by session, so an event left undecryptable says why."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._limit = limit
        self._by_session: OrderedDict[str, WithheldKey] = OrderedDict()

    def add(self, key: WithheldKey) -> None:
        """Remember a withheld key; the oldest are forgotten past the limit."""
        if key.session_id is None:
            return
        self._by_session[key.session_id] = key
        self._by_session.move_to_end(key.session_id)
        while len(self._by_session) > self._limit:
            self._by_session.popitem(last=False)

    def get(self, session_id: str | None) -> WithheldKey | None:
        """The withheld key of this session, if one was seen."""
        return self._by_session.get(session_id) if session_id is not None else None
