"""The rooms the bot is in: invites, joins, leaves, upgrades and the configured rooms."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from nio import AsyncClient, JoinResponse, RoomLeaveResponse

from ..config import MatrixConfig
from ..errors import HomeserverUnavailable
from ..store import Store
from .events import Event, text
from .protocols import MatrixListener
from .requests import call, response_error
from .rooms import RoomStates
from .session import BACKOFF_MAX, KEY_ROOM_REFS, Session

log = logging.getLogger(__name__)

INVITE_RETRY_MAX: Final = 3600.0
MAX_REPLACEMENT_HOPS: Final = 8


@dataclass(slots=True)
class _PendingInvite:
    why: str  # for the log line of the join
    next_try: float
    delay: float


def _server_of(user_id: str) -> str:
    """The server part of a user id (localparts never contain ':'; the server may)."""
    return user_id.partition(":")[2]


class Memberships:
    """Follows invites, leaves and upgrades, and keeps the store's room routing in step."""

    def __init__(
        self,
        client: AsyncClient,
        config: MatrixConfig,
        store: Store,
        session: Session,
        rooms: RoomStates,
        listener: MatrixListener,
        *,
        region_rooms: Mapping[str, Sequence[str]],
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._config = config
        self._store = store
        self._session = session
        self._rooms = rooms
        self._listener = listener
        self._clock = clock
        self._region_rooms = {slug: tuple(refs) for slug, refs in region_rooms.items()}
        self._joined: set[str] | None = None  # None until the first sync lists them
        self._awaiting_sync: set[str] = set()  # joined by us, not yet seen in a sync
        self._replacements: dict[str, str] = {}  # tombstoned room → replacement we joined
        self._awaited_replacements: dict[str, str] = {}  # replacement not joined yet → old room
        self._pending_invites: dict[str, _PendingInvite] = {}
        # Configured room ids (aliases once resolved): their invites are always accepted.
        self._config_rooms = {ref for refs in self._region_rooms.values() for ref in refs}

    def awaiting_sync(self, room_id: str) -> bool:
        """True for a room the bot joined that no sync has shown yet."""
        return room_id in self._awaiting_sync

    def synced(self, now_joined: set[str], left: set[str]) -> None:
        """Record the rooms a processed sync showed joined and left."""
        self._awaiting_sync -= now_joined
        known = self._joined
        self._joined = (now_joined if known is None else known | now_joined) - left

    def seen_joined(self, room_id: str) -> None:
        """A sync shows the bot in the room: its invite, if pending, is settled."""
        self._pending_invites.pop(room_id, None)

    async def invited(self, room_id: str, inviter: str | None) -> None:
        """Accept an invite from someone allowed, to a configured room or a replacement."""
        if room_id in self._awaiting_sync or (self._joined is not None and room_id in self._joined):
            return
        who = inviter or "an unknown user"
        replaced = self._awaited_replacements.get(room_id)
        if replaced is not None:
            why = f"invited by {who} to the replacement of {replaced}"
        elif room_id in self._config_rooms:
            why = f"invited by {who} to a configured room"
        elif inviter is not None and self._may_invite(inviter):
            why = f"invited by {who}"
        else:
            await self._decline(room_id, who)
            return
        if not await self._accept(room_id, why):
            # Invites are not sent again: keep trying, or the bot misses the room for good.
            self._pending_invites[room_id] = _PendingInvite(
                why, self._clock() + BACKOFF_MAX, BACKOFF_MAX
            )

    async def retry_invites(self) -> None:
        """Try again the invites whose join failed, when their backoff is over."""
        now = self._clock()
        for room_id, pending in list(self._pending_invites.items()):
            if pending.next_try > now:
                continue
            if await self._accept(room_id, pending.why):
                del self._pending_invites[room_id]
            else:
                pending.delay = min(pending.delay * 2, INVITE_RETRY_MAX)
                pending.next_try = now + pending.delay

    async def left(self, room_id: str, membership: Event | None) -> None:
        """Forget a room the bot left or was removed from; its pending messages are dropped.

        Called before `synced` records the sync that shows the leave.
        """
        was_joined = self._joined is None or room_id in self._joined
        self._pending_invites.pop(room_id, None)
        # Left before a sync showed the join: waiting for that sync would hold sends forever.
        self._awaiting_sync.discard(room_id)
        self._rooms.forget(room_id)
        if membership is not None and membership.prev_membership in ("invite", "knock"):
            return  # a declined or withdrawn invite: the bot was never in the room
        if not was_joined and (membership is None or membership.prev_membership != "join"):
            return
        reason = "left"
        if membership is not None:
            why = text(membership.content.get("reason"))
            suffix = f": {why}" if why else ""
            if membership.membership == "ban":
                reason = f"banned by {membership.sender}{suffix}"
            elif membership.sender != self._session.user_id:
                reason = f"kicked by {membership.sender}{suffix}"
        dropped = await self._store.room_left(room_id, now=self._clock(), reason=reason)
        log.info("no longer in %s (%s); dropped %d pending messages", room_id, reason, dropped)
        self._listener.room_left(room_id, reason)

    async def follow_replacement(self, old: str, new: str, now_joined: set[str]) -> None:
        """Move to the room that replaces an upgraded one, subscriptions included."""
        if self._replacements.get(old) == new:
            return
        in_new = new in now_joined or (self._joined is not None and new in self._joined)
        if not in_new and await self._join(new, why=f"replaces {old}") is None:
            # Upgrading clients invite the members of a private room after the tombstone.
            self._awaited_replacements[new] = old
            log.info("%s was replaced by %s; waiting for an invite to it", old, new)
            return
        await self._moved(old, new)

    async def join_config_rooms(self) -> None:
        """Join every configured room and make it follow its regions."""
        stored = await self._store.get_value(KEY_ROOM_REFS)
        try:
            remembered = json.loads(stored) if stored else {}
        except json.JSONDecodeError:
            remembered = {}
        if not isinstance(remembered, dict):
            remembered = {}
        resolved: dict[str, str] = {}
        follows: dict[str, list[str]] = {}
        for region, refs in self._region_rooms.items():
            for ref in refs:
                if ref not in resolved:
                    room_id = await self._join_config_room(ref, region)
                    if room_id is None:
                        # Keep following what the reference meant last time: messages then
                        # wait for the room instead of being routed nowhere.
                        last = remembered.get(ref)
                        room_id = last if isinstance(last, str) else None
                        room_id = room_id or (ref if ref.startswith("!") else None)
                    if room_id is None:
                        continue
                    resolved[ref] = room_id
                    self._config_rooms.add(room_id)
                follows.setdefault(resolved[ref], []).append(region)
        await self._store.set_value(KEY_ROOM_REFS, json.dumps(resolved, sort_keys=True))
        await self._store.sync_config_follows(follows, now=self._clock())

    async def join_admin_room(self, ref: str) -> str | None:
        """Join matrix.admin_room; its room id, or None when it cannot be joined or resolved."""
        room_id = await self._join(ref, why="matrix.admin_room")
        if room_id is None and ref.startswith("!"):
            room_id = ref  # reports wait for the room rather than go nowhere
        if room_id is not None:
            self._config_rooms.add(room_id)  # its invites are accepted, like a region's rooms
        return room_id

    def _may_invite(self, inviter: str) -> bool:
        server = _server_of(inviter).lower()
        return any(
            allowed == inviter or (not allowed.startswith("@") and allowed.lower() == server)
            for allowed in self._config.accept_invites_from
        )

    async def _accept(self, room_id: str, why: str) -> bool:
        if await self._join(room_id, why=why) is None:
            return False
        replaced = self._awaited_replacements.pop(room_id, None)
        if replaced is not None:
            await self._moved(replaced, room_id)
        return True

    async def _decline(self, room_id: str, inviter: str) -> None:
        log.info(
            "declining the invite to %s from %s (not in matrix.accept_invites_from)",
            room_id,
            inviter,
        )
        what = f"decline the invite to {room_id}"
        try:
            response = await call(what, self._client.room_leave(room_id))
        except HomeserverUnavailable as error:
            log.warning("cannot %s: %s", what, error)
            return
        if not isinstance(response, RoomLeaveResponse):
            log.warning("cannot %s: %s", what, response_error(what, response))

    async def _join(self, target: str, *, why: str) -> str | None:
        """Join a room by id or alias; return its id, or None (logged) if that failed."""
        what = f"join {target}"
        try:
            response = await call(what, self._client.join(target))
        except HomeserverUnavailable as error:
            log.warning("cannot %s (%s): %s", what, why, error)
            return None
        if not isinstance(response, JoinResponse):
            log.warning("cannot %s (%s): %s", what, why, response_error(what, response))
            return None
        room_id = str(response.room_id)
        if self._joined is None or room_id not in self._joined:
            self._awaiting_sync.add(room_id)
        await self._store.room_joined(room_id)
        self._listener.joined(room_id)
        shown = room_id if target == room_id else f"{target} ({room_id})"
        log.info("joined %s: %s", shown, why)
        return room_id

    async def _moved(self, old: str, new: str) -> None:
        self._replacements[old] = new
        self._awaited_replacements.pop(new, None)
        subscriptions = await self._store.subscriptions(old)
        followed = subscriptions.regions or subscriptions.organisations or subscriptions.muted
        if followed or await self._store.room_sources(old):
            await self._store.move_room(old, new)
            log.info("%s was replaced by %s: its subscriptions moved there", old, new)

    async def _join_config_room(self, ref: str, region: str) -> str | None:
        room_id = await self._join(ref, why=f"configured for region {region}")
        if room_id is None:
            return None
        # A configured room that was upgraded lives on in its replacement.
        for _ in range(MAX_REPLACEMENT_HOPS):
            new = self._replacements.get(room_id)
            if new is None:
                break
            if (self._joined is None or new not in self._joined) and await self._join(
                new, why=f"replaces {room_id}"
            ) is None:
                break
            room_id = new
        return room_id
