"""Print what lands in the demo's rooms, as the demo's human receives it over a real sync."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from nio import AsyncClient, SyncResponse

log = logging.getLogger(__name__)

LONG_POLL_MS = 30_000
# Only messages matter here; leaving the rest out keeps each sync small.
SYNC_FILTER: dict[str, Any] = {
    "presence": {"types": []},
    "account_data": {"types": []},
    "room": {
        "timeline": {"types": ["m.room.message"], "limit": 50},
        "state": {"types": [], "lazy_load_members": True},
        "ephemeral": {"types": []},
        "account_data": {"types": []},
    },
}


def describe(content: Mapping[str, Any]) -> tuple[str, str] | None:
    """Return (organisation, title) of a post announced by the bot, or None if it is not one.

    A post's plain body starts with "Organisation · Region", then the title on the next line.
    """
    body = content.get("body")
    if not isinstance(body, str):
        return None
    lines = body.split("\n", 2)
    if len(lines) < 2 or " · " not in lines[0] or not lines[1].strip():
        return None
    organisation = lines[0].rsplit(" · ", 1)[0].strip()
    return organisation, lines[1].strip()


class Echo:
    """Follows the rooms with a sync loop and prints one line per message that arrives."""

    def __init__(
        self,
        client: AsyncClient,
        rooms: Mapping[str, str],
        write: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`rooms` maps room ids to the label printed for them (the region's name)."""
        self._client = client
        self._rooms = dict(rooms)
        self._write = write
        self._clock = clock
        self._width = max((len(label) for label in self._rooms.values()), default=0)
        self.posts = 0  # posts of the bot seen so far

    async def run(self) -> None:
        """Skip the rooms' history, then print new messages until cancelled."""
        await self._sync(timeout=0, show=False)
        while True:
            await self._sync(timeout=LONG_POLL_MS, show=True)

    async def _sync(self, *, timeout: int, show: bool) -> None:  # noqa: ASYNC109 (Matrix long poll)
        response = await self._client.sync(timeout=timeout, sync_filter=SYNC_FILTER)
        if not isinstance(response, SyncResponse):
            log.warning("echo: sync failed: %s", getattr(response, "message", response))
            await asyncio.sleep(1)
            return
        if not show:
            return
        for room_id, info in response.rooms.join.items():
            for event in info.timeline.events:
                self._show(room_id, getattr(event, "source", {}))

    def _show(self, room_id: str, source: Mapping[str, Any]) -> None:
        if source.get("type") != "m.room.message":
            return
        label = self._rooms.get(room_id)
        if label is None:
            return  # a room of the human's own, not one of the demo's
        content = source.get("content") or {}
        stamp = time.strftime("%H:%M:%S", time.localtime(self._clock()))
        post = describe(content)
        if post is not None and content.get("msgtype") == "m.notice":
            self.posts += 1
            organisation, title = post
            line = f"{organisation} — {title}"
        else:
            first = str(content.get("body", "")).strip().split("\n", 1)[0]
            line = f"{source.get('sender', '?')}: {first}"
        self._write(f"{stamp}  {label:<{self._width}}  {line}")
