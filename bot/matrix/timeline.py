"""What a sync's events do: state kept, rooms followed, commands run and answered."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Final

from nio import AsyncClient, LocalProtocolError, RoomSendResponse

from ..config import MatrixConfig
from ..errors import HomeserverUnavailable, StoreError
from .answers import Answers, reply_content
from .crypto import Crypto
from .events import Event, JoinedRoom, Sync, is_own_join, text
from .membership import Memberships
from .protocols import CommandHandler, MatrixListener
from .requests import describe, response_error, send_message
from .rooms import RoomStates
from .session import Session
from .view import CommandView
from .withheld import RecentWithheld

log = logging.getLogger(__name__)

COMMAND_TIMEOUT: Final = 60.0


def encryption_off_txn_id(room_id: str, join_event_id: str) -> str:
    """The transaction id of the notice that encryption is off, one per join of a room."""
    digest = hashlib.sha256(f"{room_id}\n{join_event_id}".encode()).hexdigest()[:40]
    return "crieur.e2e-off." + digest


def _command_name(body: str, prefix: str) -> str:
    words = body[len(prefix) :].split(maxsplit=1)
    return words[0][:32] if words else ""


class Timeline:
    """Handles the rooms of each sync, in order: leaves, then joined rooms, then invites."""

    def __init__(
        self,
        client: AsyncClient,
        config: MatrixConfig,
        session: Session,
        rooms: RoomStates,
        crypto: Crypto,
        memberships: Memberships,
        answers: Answers,
        listener: MatrixListener,
        *,
        commands: CommandHandler | None,
        encryption_off_notice: str | None,
        withheld: RecentWithheld,
    ) -> None:
        self._client = client
        self._config = config
        self._session = session
        self._rooms = rooms
        self._crypto = crypto
        self._view = CommandView(rooms, crypto)
        self._withheld = withheld
        self._memberships = memberships
        self._answers = answers
        self._listener = listener
        self._commands = commands
        # Posted, unencrypted, in an encrypted room the bot joins while encryption is off.
        self._encryption_off_notice = encryption_off_notice

    async def process(self, sync: Sync, *, commands: bool, invites: bool = True) -> None:
        """Handle a sync; `commands` False reads state only, as on a first start ever."""
        memberships = self._memberships
        now_joined = set(sync.joined)
        for room_id, membership in sync.left.items():
            await memberships.left(room_id, membership)
        for room_id, room in sync.joined.items():
            await self._joined_room(room_id, room, now_joined, commands=commands)
        memberships.synced(now_joined, set(sync.left))
        if invites:
            for room_id, inviter in sync.invited.items():
                await memberships.invited(room_id, inviter)

    def is_own_join(self, event: Event) -> bool:
        """True for the bot's own join to a room."""
        return is_own_join(event, self._session.user_id)

    async def _joined_room(
        self, room_id: str, room: JoinedRoom, now_joined: set[str], *, commands: bool
    ) -> None:
        self._memberships.seen_joined(room_id)
        # The events a cut-short timeline left out come first, handled as live ones; `state`
        # is the state at the start of the timeline, after them.
        replacement, gap_join = await self._walk(room_id, room.gap, commands=commands)
        for event in room.state:
            replacement = self._rooms.observe(room_id, event) or replacement
        newer, own_join = await self._walk(room_id, room.timeline, commands=commands)
        replacement = newer or replacement
        own_join = own_join or gap_join
        if own_join is not None and commands and self._rooms.encrypted(room_id):
            await self._joined_encrypted(room_id, own_join)
        if replacement is not None:
            await self._memberships.follow_replacement(room_id, replacement, now_joined)

    async def _walk(
        self, room_id: str, events: Sequence[Event], *, commands: bool
    ) -> tuple[str | None, Event | None]:
        """Handle events in order; return a tombstone's replacement and the bot's own join."""
        # The first sync after a join carries the room's recent history up to the bot's join
        # event: none of that is live. Events that start after the join are all live.
        live_from = 0
        own_join: Event | None = None
        for index, event in enumerate(events):
            if self.is_own_join(event):
                live_from = index + 1
                own_join = event
        replacement: str | None = None
        for index, event in enumerate(events):
            if event.state_key is not None:
                replacement = self._rooms.observe(room_id, event) or replacement
            elif event.type == "m.room.encrypted":
                # nio replaced every event it could decrypt: this one it could not.
                if self._rooms.encrypts and commands and index >= live_from:
                    self._undecryptable(room_id, event)
            elif commands and index >= live_from and self._is_command(event):
                await self._run_command(room_id, event)
        return replacement, own_join

    def _is_command(self, event: Event) -> bool:
        if event.type != "m.room.message" or event.sender == self._session.user_id:
            return False
        content = event.content
        relation = content.get("m.relates_to")
        if isinstance(relation, dict) and relation.get("rel_type") == "m.replace":
            return False  # an edit: the original was the command
        body = content.get("body")
        return (
            content.get("msgtype") == "m.text"
            and isinstance(body, str)
            and body.startswith(self._config.command_prefix)
        )

    async def _run_command(self, room_id: str, event: Event) -> None:
        body = text(event.content.get("body")) or ""
        name = _command_name(body, self._config.command_prefix)
        log.info("command %r from %s in %s", name, event.sender, room_id)
        handler = self._commands
        if handler is None:
            return
        if event.sender_key is not None:
            # Encrypted: run only what a device the trust policy trusts sent, as Element shows.
            why = await self._crypto.untrusted_sender(event.sender, event.sender_key)
            if why is not None:
                self._listener.untrusted_command()
                log.warning(
                    "not running command %r from %s in %s: its device is not trusted "
                    "(matrix.trust: %s): %s",
                    name,
                    event.sender,
                    room_id,
                    self._crypto.policy,
                    why,
                )
                return
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                answer = await handler(self._view, room_id, event.sender, event.event_id, body)
        except TimeoutError:
            log.error(
                "command %r in %s took over %.0f s; abandoned", name, room_id, COMMAND_TIMEOUT
            )
            return
        except StoreError:
            raise  # the database cannot be used: run_bot stops with the reason
        except Exception:
            # A failing command must not stop the sync loop, nor the commands after it.
            log.exception("command %r from %s in %s failed", name, event.sender, room_id)
            return
        if answer is None:
            return
        content = reply_content(answer.text, answer.html, event)
        if not self._answers.put(room_id, event.sender, event.event_id, content):
            log.info(
                "not answering %s in %s: too many answers wait for %s",
                event.event_id,
                room_id,
                event.sender,
            )

    def _undecryptable(self, room_id: str, event: Event) -> None:
        self._listener.undecryptable()
        session = text(event.content.get("session_id"))
        withheld = self._withheld.get(session)
        if withheld is not None:
            reason = f": {withheld.reason}" if withheld.reason else ""
            log.warning(
                "cannot decrypt %s from %s in %s (session %s): the sender withheld its room "
                "key (%s%s)",
                event.event_id,
                event.sender,
                room_id,
                session,
                withheld.code,
                reason,
            )
            return
        log.warning(
            "cannot decrypt %s from %s in %s (session %s): no room key for it",
            event.event_id,
            event.sender,
            room_id,
            session or "?",
        )

    async def _joined_encrypted(self, room_id: str, join: Event) -> None:
        """Tell an encrypted room, in plain text, that the bot cannot read or write in it."""
        if self._rooms.encrypts:
            return
        log.warning(
            "joined %s, which is end-to-end encrypted, but matrix.encryption is off: "
            "the bot can neither read commands nor post there",
            room_id,
        )
        if not self._encryption_off_notice:
            return
        content = {"msgtype": "m.notice", "body": self._encryption_off_notice, "m.mentions": {}}
        what = f"tell {room_id} that encryption is off"
        try:
            txn_id = encryption_off_txn_id(room_id, join.event_id)
            response = await send_message(self._client, what, room_id, content, txn_id)
        except (HomeserverUnavailable, LocalProtocolError) as error:
            log.warning("cannot %s: %s", what, describe(error))
            return
        if not isinstance(response, RoomSendResponse):
            log.warning("cannot %s: %s", what, response_error(what, response))
