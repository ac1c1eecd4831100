"""The Matrix side: login and device, sync loop and its token, invites, joins, commands, sending.

The only module that imports nio. Everything nio hands back is read into small typed values at
this boundary; the rest of Crieur sees strings, `SendError`s and a command callback.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    EncryptionError,
    ErrorResponse,
    GroupEncryptionError,
    JoinedMembersResponse,
    JoinResponse,
    KeysQueryResponse,
    LocalProtocolError,
    LoginResponse,
    MessageDirection,
    OlmTrustError,
    RoomGetEventResponse,
    RoomLeaveResponse,
    RoomMessagesResponse,
    RoomSendResponse,
    SyncResponse,
    WhoamiResponse,
)
from nio.crypto import ENCRYPTION_ENABLED, OlmDevice

from .config import MatrixConfig
from .errors import (
    ConfigError,
    HomeserverUnavailable,
    RateLimited,
    RoomUnavailable,
    SendError,
    StoreError,
)
from .store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

CommandCallback: TypeAlias = Callable[
    [str, str, str, str], Awaitable[tuple[str, str | None] | None]
]
"""`await on_command(room_id, sender, event_id, body)` → `(plain, html or None)` to answer."""

# Creators of a room version 12 room outrank every power level; no real level reaches this.
CREATOR_POWER: Final = 2**53

SYNC_TIMEOUT_MS: Final = 30_000  # long-poll: the homeserver answers at once when events arrive
SYNC_MARGIN: Final = 30.0  # seconds on top of the long-poll before a sync counts as hung
FIRST_SYNC_TIMEOUT: Final = 300.0  # a full-state sync of many rooms takes a while
REQUEST_TIMEOUT: Final = 30.0  # any other request
TIMELINE_LIMIT: Final = 50
# A sync cuts a busy room's timeline to TIMELINE_LIMIT events; the events left out are read
# back with /messages, in pages, up to a bound so that a flood cannot keep a sync going.
GAP_PAGE: Final = 100
MAX_GAP_EVENTS: Final = 500  # per room and sync; the older ones are skipped, with a warning
BACKOFF_START: Final = 1.0
BACKOFF_MAX: Final = 60.0
# A failed sync is how the end of an outage is noticed (and /health recovers): keep it frequent.
SYNC_RETRY_MAX: Final = 10.0
INVITE_RETRY_MAX: Final = 3600.0
DEFAULT_RETRY_AFTER: Final = 5.0  # seconds, when a 429 does not say
COMMAND_TIMEOUT: Final = 60.0
# How long an answer is retried while the homeserver is unreachable before it is dropped:
# an outage ends sooner than this, and the sync loop cannot go on past it without answers.
REPLY_PATIENCE: Final = 900.0
# Answers waiting for one person (a burst of commands and the slow-down warning); more are
# dropped: the least answered go first, so this bounds memory, not anyone else's wait.
MAX_QUEUED_PER_SENDER: Final = 4
MAX_QUEUED_REPLIES: Final = 1000  # answers waiting in all
FAIR_WINDOW: Final = 60.0  # seconds of answers counted to pick who is answered next
MAX_REPLACEMENT_HOPS: Final = 8

KEY_USER_ID: Final = "matrix.user_id"
KEY_DEVICE_ID: Final = "matrix.device_id"
KEY_ACCESS_TOKEN: Final = "matrix.access_token"
KEY_SYNC_TOKEN: Final = "matrix.sync_token"
KEY_ROOM_REFS: Final = "matrix.room_refs"  # JSON: configured alias or id → room id last joined

_NO_EVENTS: Final = {"not_types": ["*"]}


def _sync_filter(timeline_limit: int) -> dict[str, Any]:
    """Leave out what the bot never reads: presence, typing, receipts, account data."""
    return {
        "presence": _NO_EVENTS,
        "account_data": _NO_EVENTS,
        "room": {
            "ephemeral": _NO_EVENTS,
            "account_data": _NO_EVENTS,
            "timeline": {"limit": timeline_limit},
        },
    }


# -- typed views of what nio returns --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Event:
    """The fields of a room event that the bot reads."""

    type: str
    sender: str
    event_id: str
    state_key: str | None
    content: Mapping[str, object]
    prev_membership: str | None  # from unsigned.prev_content, for m.room.member

    @property
    def membership(self) -> str | None:
        return _text(self.content.get("membership"))


@dataclass(frozen=True, slots=True)
class _JoinedRoom:
    state: tuple[_Event, ...]  # state before the timeline
    timeline: tuple[_Event, ...]
    # Set when the timeline was cut short: where the events left out end, for /messages.
    prev_batch: str | None = None
    gap: tuple[_Event, ...] = ()  # the events left out, oldest first, once read back


@dataclass(frozen=True, slots=True)
class _Sync:
    next_batch: str
    joined: dict[str, _JoinedRoom]
    invited: dict[str, str | None]  # room id → inviter
    left: dict[str, _Event | None]  # room id → the bot's last membership event, if sent


@dataclass(frozen=True, slots=True)
class _Levels:
    """The parts of m.room.power_levels that rank users."""

    users: Mapping[str, int] = field(default_factory=dict)
    users_default: int = 0

    def of(self, user_id: str) -> int:
        return self.users.get(user_id, self.users_default)


@dataclass(slots=True)
class _PendingInvite:
    why: str  # for the log line of the join
    next_try: float
    delay: float


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _level(value: object) -> int | None:
    """Read a power level; old room versions allowed them as strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _event(obj: object) -> _Event | None:
    source = getattr(obj, "source", None)
    if not isinstance(source, dict):
        return None
    kind, sender = source.get("type"), source.get("sender")
    if not isinstance(kind, str) or not isinstance(sender, str):
        return None
    content = source.get("content")
    unsigned = source.get("unsigned")
    previous = unsigned.get("prev_content") if isinstance(unsigned, dict) else None
    return _Event(
        type=kind,
        sender=sender,
        event_id=_text(source.get("event_id")) or "",
        state_key=_text(source.get("state_key")),
        content=content if isinstance(content, dict) else {},
        prev_membership=_text(previous.get("membership")) if isinstance(previous, dict) else None,
    )


def _events(objs: object) -> tuple[_Event, ...]:
    if not isinstance(objs, list | tuple):
        return ()
    return tuple(event for obj in objs if (event := _event(obj)) is not None)


def _rooms(section: object) -> list[tuple[str, object]]:
    if not isinstance(section, dict):
        return []
    return [(room_id, info) for room_id, info in section.items() if isinstance(room_id, str)]


def _inviter(invite_state: object, me: str) -> str | None:
    """Find who invited the bot in a room's stripped invite state."""
    if not isinstance(invite_state, list):
        return None
    for obj in invite_state:
        source = getattr(obj, "source", None)
        if not isinstance(source, dict) or source.get("type") != "m.room.member":
            continue
        # nio moves the content of invite events out of `source` into attributes.
        membership = getattr(obj, "membership", None)
        if source.get("state_key") == me and membership == "invite":
            return _text(source.get("sender"))
    return None


def _own_membership(events: Iterable[_Event], me: str) -> _Event | None:
    last = None
    for event in events:
        if event.type == "m.room.member" and event.state_key == me:
            last = event
    return last


def _parse_sync(response: object, me: str) -> _Sync:
    rooms = getattr(response, "rooms", None)
    joined: dict[str, _JoinedRoom] = {}
    for room_id, info in _rooms(getattr(rooms, "join", None)):
        timeline = getattr(info, "timeline", None)
        limited = getattr(timeline, "limited", False) is True
        joined[room_id] = _JoinedRoom(
            _events(getattr(info, "state", None)),
            _events(getattr(timeline, "events", None)),
            prev_batch=_text(getattr(timeline, "prev_batch", None)) if limited else None,
        )
    invited = {
        room_id: _inviter(getattr(info, "invite_state", None), me)
        for room_id, info in _rooms(getattr(rooms, "invite", None))
    }
    left: dict[str, _Event | None] = {}
    for room_id, info in _rooms(getattr(rooms, "leave", None)):
        timeline = _events(getattr(getattr(info, "timeline", None), "events", None))
        state = _events(getattr(info, "state", None))
        left[room_id] = _own_membership((*state, *timeline), me)
    return _Sync(str(getattr(response, "next_batch", "")), joined, invited, left)


def _status(response: object) -> int | None:
    status = getattr(getattr(response, "transport_response", None), "status", None)
    return status if isinstance(status, int) else None


def _error(
    what: str,
    *,
    status: int | None,
    errcode: str | None,
    message: str | None,
    retry_after_ms: object = None,
) -> SendError:
    """Map a homeserver's refusal to the SendError the caller can act on."""
    text = f"{what}: {errcode or status or 'error'} {message or 'unknown error'}"
    if errcode == "M_LIMIT_EXCEEDED" or status == 429:
        delay = _level(retry_after_ms)
        return RateLimited(delay / 1000 if delay is not None else DEFAULT_RETRY_AFTER, text)
    # A rejected token is fixed by logging in again (the sync loop does), not by the caller.
    if status is None or status >= 500 or errcode == "M_UNKNOWN_TOKEN":
        return HomeserverUnavailable(text, errcode=errcode)
    if errcode in ("M_FORBIDDEN", "M_NOT_FOUND") or (errcode is None and status in (403, 404)):
        return RoomUnavailable(text, errcode=errcode)
    return SendError(text, errcode=errcode)


def _response_error(what: str, response: object) -> SendError:
    if isinstance(response, ErrorResponse):
        return _error(
            what,
            status=_status(response),
            errcode=_text(response.status_code),
            message=_text(response.message),
            retry_after_ms=response.retry_after_ms,
        )
    return _error(what, status=_status(response), errcode=None, message=type(response).__name__)


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _server_of(user_id: str) -> str:
    """The server part of a user id (localparts never contain ':'; the server may)."""
    return user_id.partition(":")[2]


def _creators_outrank(room_version: str) -> bool:
    """Room version 12 (and later, and its draft names) puts creators above power levels."""
    if room_version.isdigit():
        return int(room_version) >= 12
    return room_version.startswith("org.matrix.hydra.")


def _command_name(body: str, prefix: str) -> str:
    words = body[len(prefix) :].split(maxsplit=1)
    return words[0][:32] if words else ""


def encryption_off_txn_id(room_id: str, join_event_id: str) -> str:
    """The transaction id of the notice that encryption is off, one per join of a room."""
    digest = hashlib.sha256(f"{room_id}\n{join_event_id}".encode()).hexdigest()[:40]
    return "crieur.e2e-off." + digest


def reply_txn_id(event_id: str) -> str:
    """Derive the transaction id of the answer to a command from the command's event id."""
    return "crieur.reply." + hashlib.sha256(event_id.encode()).hexdigest()[:40]


def _reply_content(text: str, html: str | None, command: _Event) -> dict[str, Any]:
    relation: dict[str, Any] = {"m.in_reply_to": {"event_id": command.event_id}}
    thread = command.content.get("m.relates_to")
    if isinstance(thread, dict) and thread.get("rel_type") == "m.thread":
        root = _text(thread.get("event_id"))
        if root is not None:
            relation = {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": False,
                **relation,
            }
    content: dict[str, Any] = {
        "msgtype": "m.notice",
        "body": text,
        "m.relates_to": relation,
        "m.mentions": {},  # a bot's answer pings nobody
    }
    if html is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = html
    return content


@dataclass(frozen=True, slots=True)
class _Answer:
    room_id: str
    sender: str
    event_id: str
    content: dict[str, Any]
    batch: int  # the sync the command came in


class _Answers:
    """Answers waiting to be sent: a few per person, those answered least lately first.

    Sending an answer waits on the homeserver's rate limit; done in the sync loop, one
    person's flood of commands would hold everyone else's behind it for minutes. Queued here,
    a person has at most MAX_QUEUED_PER_SENDER answers waiting (the rest are dropped), and the
    next answer goes to whoever got the fewest answers in the last FAIR_WINDOW seconds (in
    turn when even): someone asking now and then waits for the answer being sent, not for
    the answers of whoever floods the bot.

    A sync's token is stored once every answer to its commands has been sent or given up,
    so that a crash before an answer went out runs that command again after a restart.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._waiting: dict[str, deque[_Answer]] = {}  # by sender, in turn order
        self._served: dict[str, deque[float]] = {}  # when each person was last answered
        self._size = 0
        self._batch = 0  # the sync whose commands are running now
        self._unsettled: Counter[int] = Counter()  # answers not sent nor given up, by sync
        self._tokens: deque[tuple[int, str]] = deque()  # processed syncs, oldest first
        self._ready = asyncio.Event()

    def put(self, room_id: str, sender: str, event_id: str, content: dict[str, Any]) -> bool:
        """Queue an answer of the running sync; False if the person has too many waiting."""
        queue = self._waiting.get(sender)
        if self._size >= MAX_QUEUED_REPLIES or (
            queue is not None and len(queue) >= MAX_QUEUED_PER_SENDER
        ):
            return False
        if queue is None:
            queue = self._waiting[sender] = deque()
        queue.append(_Answer(room_id, sender, event_id, content, self._batch))
        self._size += 1
        self._unsettled[self._batch] += 1
        self._ready.set()
        return True

    def processed(self, token: str) -> str | None:
        """Close the running sync; return the newest token safe to store now, if any."""
        self._tokens.append((self._batch, token))
        self._batch += 1
        return self._settled()

    async def next(self) -> _Answer:
        """Wait for an answer to send: the first waiting person's oldest."""
        while not self._waiting:
            self._ready.clear()
            await self._ready.wait()
        now = self._clock()
        self._forget_served(now)
        # min() keeps the first of equals: the turn order among the least answered.
        sender = min(self._waiting, key=lambda person: len(self._served.get(person, ())))
        self._served.setdefault(sender, deque()).append(now)
        queue = self._waiting.pop(sender)
        answer = queue.popleft()
        if queue:
            self._waiting[sender] = queue  # to the back of the line
        self._size -= 1
        return answer

    def done(self, answer: _Answer) -> str | None:
        """Mark an answer sent or given up; return the newest token safe to store now, if any."""
        self._unsettled[answer.batch] -= 1
        return self._settled()

    def _forget_served(self, now: float) -> None:
        """Drop answers older than the window; only people answered in it are kept."""
        for sender in list(self._served):
            served = self._served[sender]
            while served and served[0] <= now - FAIR_WINDOW:
                served.popleft()
            if not served:
                del self._served[sender]

    def _settled(self) -> str | None:
        token = None
        while self._tokens and self._unsettled[self._tokens[0][0]] <= 0:
            batch, token = self._tokens.popleft()
            del self._unsettled[batch]
        return token


# -- the bot ------------------------------------------------------------------------------------


class MatrixBot:
    """One logged-in Matrix device: syncs, follows invites and upgrades, runs commands, sends."""

    def __init__(
        self,
        config: MatrixConfig,
        store: Store,
        *,
        data_dir: Path,
        region_rooms: Mapping[str, Sequence[str]],
        on_command: CommandCallback | None = None,
        encryption_off_notice: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._region_rooms = {slug: tuple(refs) for slug, refs in region_rooms.items()}
        # Public: the command handler usually needs this bot (power_level), so it may be
        # assigned after construction.
        self.on_command = on_command
        self._clock = clock
        # Posted, unencrypted, in an encrypted room the bot joins while encryption is off.
        self._encryption_off_notice = encryption_off_notice
        self._encryption = config.encryption and bool(ENCRYPTION_ENABLED)
        if config.encryption and not ENCRYPTION_ENABLED:
            log.warning(
                "matrix.encryption is on but the e2e extra is not installed "
                "(pip install 'crieur-bot[e2e]'): running without encryption, "
                "so encrypted rooms get no messages"
            )
        store_path = self._store_path = data_dir / "matrix-store"
        if self._encryption:
            store_path.mkdir(parents=True, exist_ok=True)
        self._client = AsyncClient(
            config.homeserver.rstrip("/"),
            config.user_id,
            store_path=str(store_path) if self._encryption else "",
            config=AsyncClientConfig(
                # nio retries 429s and connection errors forever by default; callers wait
                # themselves (the dispatcher honours retry_after), so fail after one try.
                max_limit_exceeded=0,
                max_timeouts=0,
                request_timeout=REQUEST_TIMEOUT,
                encryption_enabled=self._encryption,
                store_sync_tokens=False,  # the token lives in our store, with our state
            ),
        )
        self._user_id = config.user_id
        self._device_id: str | None = None
        self._next_batch: str | None = None
        self._joined: set[str] | None = None  # None until the first sync lists them
        self._awaiting_sync: set[str] = set()  # joined by us, not yet seen in a sync
        self._replacements: dict[str, str] = {}  # tombstoned room → replacement we joined
        self._awaited_replacements: dict[str, str] = {}  # replacement not joined yet → old room
        self._creators: dict[str, frozenset[str]] = {}
        self._levels: dict[str, _Levels] = {}
        self._encrypted: dict[str, bool] = {}
        self._send_locks: dict[str, asyncio.Lock] = {}
        self._pending_invites: dict[str, _PendingInvite] = {}
        # Configured room ids (aliases once resolved): their invites are always accepted.
        self._config_rooms = {ref for refs in self._region_rooms.values() for ref in refs}
        self.sync_failing_since: float | None = None  # first failed sync of a run of failures
        self.on_joined: Callable[[str], None] | None = None  # told of each room joined
        self.on_token: Callable[[str], None] | None = None  # told of each new access token
        self.on_reconnected: Callable[[], None] | None = None  # told when syncs work again
        self.last_sync_ok: float | None = None  # epoch of the last processed sync, for health
        self.on_undecryptable: Callable[[], None] | None = None  # told of each one
        self._answers = _Answers()

    @property
    def user_id(self) -> str:
        """The bot's Matrix user id."""
        return self._user_id

    @property
    def device_id(self) -> str | None:
        """The device the bot is logged in as (None before start)."""
        return self._device_id

    @property
    def encryption_enabled(self) -> bool:
        """True when messages to encrypted rooms are encrypted."""
        return self._encryption

    def room_encrypted(self, room_id: str) -> bool | None:
        """Whether the room is end-to-end encrypted, as last synced (None if unknown)."""
        return self._encrypted.get(room_id)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in (reusing the stored device), sync once, join the configured rooms."""
        await self._retrying("log in", self._log_in)
        if self._encryption:
            log.info("end-to-end encryption on (matrix.trust: %s)", self._config.trust)
        else:
            log.info("end-to-end encryption off: encrypted rooms get nothing")
        invites = await self._first_sync()
        await self._join_config_rooms()
        # After the configured joins, which may have been pending invites themselves.
        for room_id, inviter in invites.items():
            await self._invited(room_id, inviter)

    async def sync_forever(self) -> None:
        """Sync until cancelled, backing off while the homeserver is unreachable."""
        if self._next_batch is None:
            raise RuntimeError("MatrixBot.start() must run before sync_forever()")
        async with asyncio.TaskGroup() as group:
            group.create_task(self._send_answers(), name="answers")
            await self._sync_loop()

    async def _sync_loop(self) -> None:
        assert self._next_batch is not None
        delay = 0.0
        while True:
            try:
                # After a failure, no long-poll: a quiet homeserver that is back would otherwise
                # hold the answer (and the news that it is back) for the whole timeout.
                timeout_ms = 0 if self.sync_failing_since is not None else SYNC_TIMEOUT_MS
                sync = await self._sync(self._next_batch, timeout_ms=timeout_ms)
            except RateLimited as error:
                log.warning("sync rate limited; waiting %.1f s", error.retry_after)
                await asyncio.sleep(error.retry_after)
                continue
            except SendError as error:
                if self.sync_failing_since is None:
                    self.sync_failing_since = self._clock()
                delay = min(max(delay * 2, BACKOFF_START), SYNC_RETRY_MAX)
                log.warning("sync failed (%s); retrying in %.0f s", error, delay)
                await asyncio.sleep(delay)
                continue
            if delay:
                log.info("sync works again")
                if self.on_reconnected is not None:
                    self.on_reconnected()
            delay = 0.0
            self.sync_failing_since = None
            await self._process(sync, commands=True)
            await self._synced(sync)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._client.close()

    # -- sending ----------------------------------------------------------------------------

    async def send_notice(self, room_id: str, content: dict[str, Any], txn_id: str) -> str:
        """Send one message event; the homeserver deduplicates a repeated `txn_id`.

        Return the event id; raise RateLimited, HomeserverUnavailable, RoomUnavailable or
        SendError, promptly: nio is told not to retry.
        """
        await self._check_can_send(room_id)
        what = f"send to {room_id}"
        # One send at a time per room: announcements and answers share the room's key sharing,
        # which nio cannot run twice at once.
        async with self._send_locks.setdefault(room_id, asyncio.Lock()):
            try:
                await self._prepare_room_keys(room_id)
                response = await self._call(
                    what,
                    self._client.room_send(
                        room_id,
                        "m.room.message",
                        content,
                        tx_id=txn_id,
                        ignore_unverified_devices=True,
                    ),
                )
            except (
                LocalProtocolError,
                EncryptionError,
                GroupEncryptionError,
                OlmTrustError,
            ) as error:
                raise SendError(f"{what}: cannot encrypt: {_describe(error)}") from error
            finally:
                self._end_key_sharing(room_id)
        if isinstance(response, RoomSendResponse):
            return str(response.event_id)
        raise _response_error(what, response)

    async def _check_can_send(self, room_id: str) -> None:
        if self._encryption:
            # nio encrypts only for rooms it has synced; it raises for the others.
            if room_id not in self._client.rooms:
                if room_id in self._awaiting_sync:
                    raise HomeserverUnavailable(f"{room_id} was just joined; waiting for a sync")
                raise RoomUnavailable(f"the bot is not in {room_id}")
            return
        encrypted = self._encrypted.get(room_id)
        if encrypted is None:
            encrypted = await self._state_content(room_id, "m.room.encryption") is not None
            self._encrypted[room_id] = encrypted
        if encrypted:
            # Sending plain text into an encrypted room would leak it and confuse its members.
            reason = (
                "the e2e extra is not installed (pip install 'crieur-bot[e2e]')"
                if self._config.encryption
                else "matrix.encryption is off"
            )
            raise RoomUnavailable(f"{room_id} is end-to-end encrypted and {reason}")

    # -- power levels -----------------------------------------------------------------------

    async def power_level(self, room_id: str, user_id: str) -> int:
        """Return the user's power level in the room; CREATOR_POWER for a v12 room's creators.

        Raise HomeserverUnavailable or RoomUnavailable if the room's state cannot be read.
        """
        creators = self._creators.get(room_id)
        if creators is None:
            creators = await self._fetch_creators(room_id)
            self._creators[room_id] = creators
        if user_id in creators:
            return CREATOR_POWER
        levels = self._levels.get(room_id)
        if levels is None:
            content = await self._state_content(room_id, "m.room.power_levels")
            levels = _read_levels(content) if content is not None else _Levels()
            self._levels[room_id] = levels
        return levels.of(user_id)

    async def _fetch_creators(self, room_id: str) -> frozenset[str]:
        content = await self._state_content(room_id, "m.room.create")
        if content is None or not _creators_outrank(_text(content.get("room_version")) or "1"):
            return frozenset()
        # The state endpoint gives the content only. In these room versions the room id is the
        # create event's id with another sigil, so the event (and its sender) can be read.
        what = f"read the creation of {room_id}"
        response = await self._call(
            what, self._client.room_get_event(room_id, "$" + room_id.removeprefix("!"))
        )
        if not isinstance(response, RoomGetEventResponse):
            raise _response_error(what, response)
        create = _event(response.event)
        if create is None:
            raise SendError(f"{what}: unreadable event")
        return _creators_of(create)

    async def _state_content(self, room_id: str, event_type: str) -> dict[str, object] | None:
        """Return a state event's content, None if the room has none; raise a SendError."""
        what = f"read {event_type} of {room_id}"
        response = await self._call(what, self._client.room_get_state_event(room_id, event_type))
        status = _status(response)
        if status == 404:
            return None
        content = getattr(response, "content", None)
        if status == 200 and isinstance(content, dict):
            return content
        if isinstance(content, dict):
            # nio reads an error body other than 404 as a successful response's content.
            raise _error(
                what,
                status=status,
                errcode=_text(content.get("errcode")),
                message=_text(content.get("error")),
                retry_after_ms=content.get("retry_after_ms"),
            )
        raise _response_error(what, response)

    # -- login ------------------------------------------------------------------------------

    async def _log_in(self) -> None:
        config = self._config
        stored_user = await self._store.get_value(KEY_USER_ID)
        if stored_user is not None and stored_user != config.user_id:
            log.warning(
                "the stored Matrix session is %s's, not %s's: starting a new one",
                stored_user,
                config.user_id,
            )
            for key in (KEY_DEVICE_ID, KEY_ACCESS_TOKEN, KEY_SYNC_TOKEN, KEY_ROOM_REFS):
                await self._store.delete_value(key)
        await self._store.set_value(KEY_USER_ID, config.user_id)
        device_id = await self._store.get_value(KEY_DEVICE_ID)
        if (
            not config.access_token
            and device_id is not None
            and not await self._has_crypto_store(device_id)
        ):
            # A device whose keys are lost cannot encrypt again (new keys would clash with
            # the ones it published): log in as a new device instead.
            log.warning("no crypto store for device %s: logging in as a new device", device_id)
            await self._store.delete_value(KEY_ACCESS_TOKEN)
            device_id = None
        if config.access_token:
            if await self._resume(config.access_token, device_id, configured=True):
                return
            log.warning("matrix.access_token was rejected; logging in with the password")
        else:
            token = await self._store.get_value(KEY_ACCESS_TOKEN)
            if token is not None and await self._resume(token, device_id, configured=False):
                return
            if token is not None:
                log.info("the stored access token was rejected; logging in again")
        await self._password_login(device_id)

    async def _has_crypto_store(self, device_id: str) -> bool:
        if not self._encryption:
            return True
        path = self._store_path / f"{self._config.user_id}_{device_id}.db"  # nio's naming
        return await asyncio.to_thread(path.exists)

    async def _resume(self, token: str, device_id: str | None, *, configured: bool) -> bool:
        """Use an existing access token; False if the homeserver rejects it."""
        self._client.user_id = self._config.user_id
        self._client.access_token = token
        response = await self._call("check the access token", self._client.whoami())
        if not isinstance(response, WhoamiResponse):
            error = _response_error("check the access token", response)
            if error.errcode == "M_UNKNOWN_TOKEN":
                self._client.access_token = ""
                return False
            key = "matrix.access_token" if configured else "matrix.homeserver"
            raise error if isinstance(error, HomeserverUnavailable) else _login_error(key, error)
        user_id = str(response.user_id)
        if user_id != self._config.user_id:
            key = "matrix.access_token" if configured else "matrix.user_id"
            raise ConfigError(
                [(key, f"the access token is {user_id}'s, not {self._config.user_id}'s")]
            )
        device = _text(response.device_id) or device_id
        if device is None:
            if self._encryption:
                raise ConfigError([("matrix.access_token", "has no device; encryption needs one")])
            log.warning("the access token has no device: repeated sends may not be deduplicated")
        if device is not None:
            await self._store.set_value(KEY_DEVICE_ID, device)
        self._client.restore_login(user_id, device or "", token)
        self._user_id, self._device_id = user_id, device
        log.info("resumed the session of %s on device %s", user_id, device)
        return True

    async def _password_login(self, device_id: str | None) -> None:
        """Log in with the password, on the stored device when there is one."""
        if not self._config.password:
            key = "matrix.access_token" if self._config.access_token else "matrix.password"
            message = (
                "rejected by the homeserver"
                if self._config.access_token
                else "needed: there is no access token to use"
            )
            raise ConfigError([(key, message)])
        # Same device, so transaction ids stay deduplicated and the crypto store stays valid.
        self._client.device_id = device_id or ""
        response = await self._call(
            "log in",
            self._client.login(
                password=self._config.password, device_name=self._config.device_name
            ),
        )
        if not isinstance(response, LoginResponse):
            error = _response_error("log in", response)
            if isinstance(error, HomeserverUnavailable):
                raise error
            raise _login_error("matrix.password", error)
        user_id, device = str(response.user_id), str(response.device_id)
        await self._store.set_value(KEY_DEVICE_ID, device)
        await self._store.set_value(KEY_ACCESS_TOKEN, str(response.access_token))
        if self.on_token is not None:
            self.on_token(str(response.access_token))
        self._user_id, self._device_id = user_id, device
        log.info("logged in as %s on device %s", user_id, device)
        await self._upload_keys()

    async def _relogin(self) -> bool:
        """Log in again after the homeserver forgot our token; False if impossible."""
        if not self._config.password:
            log.error("the homeserver rejected the access token and no password is configured")
            return False
        try:
            await self._password_login(self._device_id)
        except ConfigError as error:
            log.error("cannot log in again: %s", error)
            return False
        return True

    async def _retrying(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run a start-up step until the homeserver answers; permanent errors propagate."""
        delay = 0.0
        while True:
            try:
                return await step()
            except RateLimited as error:
                wait = error.retry_after
                log.warning("%s: rate limited; retrying in %.1f s", what, wait)
            except HomeserverUnavailable as error:
                delay = wait = min(max(delay * 2, BACKOFF_START), BACKOFF_MAX)
                log.warning("%s failed (%s); retrying in %.0f s", what, error, wait)
            await asyncio.sleep(wait)

    # -- syncing ----------------------------------------------------------------------------

    async def _first_sync(self) -> dict[str, str | None]:
        """Sync once and process it, except its invites, which are returned."""
        token = await self._store.get_value(KEY_SYNC_TOKEN)
        sync: _Sync | None = None
        if token is not None:
            try:
                # Full state: without nio's store, a new client knows no room until it sees
                # their state (sending or encrypting then fails with "no such room").
                sync = await self._retrying(
                    "first sync", lambda: self._sync(token, timeout_ms=0, full_state=True)
                )
            except SendError as error:
                log.warning("the stored sync token was refused (%s); starting from now", error)
        # Commands sent while the bot was stopped are new; a first start ever skips history.
        resumed = sync is not None
        if sync is None:
            sync = await self._retrying(
                "first sync", lambda: self._sync(None, timeout_ms=0, timeline_limit=1)
            )
        await self._process(sync, commands=resumed, invites=False)
        await self._synced(sync)
        return sync.invited

    async def _sync(
        self,
        since: str | None,
        *,
        timeout_ms: int,
        full_state: bool = False,
        timeline_limit: int = TIMELINE_LIMIT,
    ) -> _Sync:
        """One /sync, with the events it left out read back; log in again once if need be."""

        async def request() -> object:
            return await self._call(
                "sync",
                self._client.sync(
                    timeout=timeout_ms,
                    sync_filter=_sync_filter(timeline_limit),
                    since=since,
                    full_state=True if full_state else None,
                ),
                seconds=FIRST_SYNC_TIMEOUT if full_state else timeout_ms / 1000 + SYNC_MARGIN,
            )

        response = await request()
        if not isinstance(response, SyncResponse):
            error = _response_error("sync", response)
            if error.errcode != "M_UNKNOWN_TOKEN" or not await self._relogin():
                raise error
            response = await request()
            if not isinstance(response, SyncResponse):
                raise _response_error("sync", response)
        sync = _parse_sync(response, self._user_id)
        if since is None:
            return sync  # a first sync ever: history is skipped anyway
        return await self._fill_gaps(sync, since)

    async def _fill_gaps(self, sync: _Sync, since: str) -> _Sync:
        """Read back the events a sync left out of cut-short timelines since `since`.

        A failure to read them (HomeserverUnavailable, RateLimited) fails the whole sync,
        which is then retried from the same token: skipping the gap would lose its commands.
        """
        joined = dict(sync.joined)
        for room_id, room in sync.joined.items():
            if room.prev_batch is None or any(self._is_own_join(e) for e in room.timeline):
                continue  # not cut short, or cut in the history before the bot's join
            gap = await self._missed_events(room_id, room.prev_batch, since)
            if gap:
                joined[room_id] = replace(room, gap=gap)
        return replace(sync, joined=joined)

    async def _missed_events(self, room_id: str, start: str, end: str) -> tuple[_Event, ...]:
        """The room's events from `start` back to `end` (a sync token), oldest first."""
        what = f"read the events missed in {room_id}"
        newest_first: list[_Event] = []
        token = start
        while len(newest_first) < MAX_GAP_EVENTS:
            limit = min(GAP_PAGE, MAX_GAP_EVENTS - len(newest_first))
            response = await self._call(
                what,
                self._client.room_messages(
                    room_id, start=token, end=end, direction=MessageDirection.back, limit=limit
                ),
            )
            if not isinstance(response, RoomMessagesResponse):
                error = _response_error(what, response)
                if isinstance(error, HomeserverUnavailable | RateLimited):
                    raise error
                # Refused for good (no permission to read back): retrying would not help.
                log.warning("cannot %s: %s", what, error)
                break
            # nio has replaced the encrypted events it could decrypt, as in a sync.
            page = _events(response.chunk)
            for index, event in enumerate(page):
                if self._is_own_join(event):
                    # Older events are the history before the bot's join: not live.
                    newest_first.extend(page[: index + 1])
                    return tuple(reversed(newest_first))
            newest_first.extend(page)
            if not response.chunk or not response.end or response.end == token:
                return tuple(reversed(newest_first))
            token = response.end
        log.warning(
            "more than %d events arrived in %s since the last sync: only the newest %d "
            "are read; commands among the older ones are not answered",
            MAX_GAP_EVENTS,
            room_id,
            MAX_GAP_EVENTS,
        )
        return tuple(reversed(newest_first))

    async def _synced(self, sync: _Sync) -> None:
        """Record a processed sync's token, so nothing in it runs again after a restart."""
        self._next_batch = sync.next_batch
        token = self._answers.processed(sync.next_batch)
        if token is not None:
            await self._store.set_value(KEY_SYNC_TOKEN, token)
        self.last_sync_ok = self._clock()
        await self._maintain_keys()
        await self._retry_invites()

    async def _process(self, sync: _Sync, *, commands: bool, invites: bool = True) -> None:
        known = self._joined
        now_joined = set(sync.joined)
        for room_id, membership in sync.left.items():
            await self._left(room_id, membership, was_joined=known is None or room_id in known)
        for room_id, room in sync.joined.items():
            await self._joined_room(room_id, room, now_joined, commands=commands)
        self._awaiting_sync -= now_joined
        self._joined = (now_joined if known is None else known | now_joined) - set(sync.left)
        if invites:
            for room_id, inviter in sync.invited.items():
                await self._invited(room_id, inviter)

    async def _joined_room(
        self, room_id: str, room: _JoinedRoom, now_joined: set[str], *, commands: bool
    ) -> None:
        self._pending_invites.pop(room_id, None)
        # The events a cut-short timeline left out come first, handled as live ones; `state`
        # is the state at the start of the timeline, after them.
        replacement, gap_join = await self._walk(room_id, room.gap, commands=commands)
        for event in room.state:
            replacement = self._observe_state(room_id, event) or replacement
        newer, own_join = await self._walk(room_id, room.timeline, commands=commands)
        replacement = newer or replacement
        own_join = own_join or gap_join
        if own_join is not None and commands and self._encrypted.get(room_id):
            await self._joined_encrypted(room_id, own_join)
        if replacement is not None:
            await self._follow_replacement(room_id, replacement, now_joined)

    async def _walk(
        self, room_id: str, events: Sequence[_Event], *, commands: bool
    ) -> tuple[str | None, _Event | None]:
        """Handle events in order; return a tombstone's replacement and the bot's own join."""
        # The first sync after a join carries the room's recent history up to the bot's join
        # event: none of that is live. Events that start after the join are all live.
        live_from = 0
        own_join: _Event | None = None
        for index, event in enumerate(events):
            if self._is_own_join(event):
                live_from = index + 1
                own_join = event
        replacement: str | None = None
        for index, event in enumerate(events):
            if event.state_key is not None:
                replacement = self._observe_state(room_id, event) or replacement
            elif event.type == "m.room.encrypted":
                # nio replaced every event it could decrypt: this one it could not.
                if self._encryption and commands and index >= live_from:
                    self._undecryptable(room_id, event)
            elif commands and index >= live_from and self._is_command(event):
                await self._run_command(room_id, event)
        return replacement, own_join

    def _is_own_join(self, event: _Event) -> bool:
        return (
            event.type == "m.room.member"
            and event.state_key == self._user_id
            and event.membership == "join"
            and event.prev_membership != "join"  # not a display name or avatar change
        )

    def _observe_state(self, room_id: str, event: _Event) -> str | None:
        """Keep what the bot needs from a state event; return a tombstone's replacement."""
        if event.state_key != "":
            return None
        if event.type == "m.room.create":
            self._creators[room_id] = _creators_of(event)
        elif event.type == "m.room.power_levels":
            self._levels[room_id] = _read_levels(event.content)
        elif event.type == "m.room.encryption":
            self._encrypted[room_id] = True
        elif event.type == "m.room.tombstone":
            replacement = _text(event.content.get("replacement_room"))
            return replacement if replacement and replacement != room_id else None
        return None

    async def _left(self, room_id: str, membership: _Event | None, *, was_joined: bool) -> None:
        self._pending_invites.pop(room_id, None)
        self._forget(room_id)
        if membership is not None and membership.prev_membership in ("invite", "knock"):
            return  # a declined or withdrawn invite: the bot was never in the room
        if not was_joined and (membership is None or membership.prev_membership != "join"):
            return
        reason = "left"
        if membership is not None:
            why = _text(membership.content.get("reason"))
            suffix = f": {why}" if why else ""
            if membership.membership == "ban":
                reason = f"banned by {membership.sender}{suffix}"
            elif membership.sender != self._user_id:
                reason = f"kicked by {membership.sender}{suffix}"
        dropped = await self._store.room_left(room_id, now=self._clock(), reason=reason)
        log.info("no longer in %s (%s); dropped %d pending messages", room_id, reason, dropped)

    def _forget(self, room_id: str) -> None:
        # Left before a sync showed the join: waiting for that sync would hold sends forever.
        self._awaiting_sync.discard(room_id)
        self._creators.pop(room_id, None)
        self._levels.pop(room_id, None)
        self._encrypted.pop(room_id, None)

    # -- invites, joins, upgrades -----------------------------------------------------------

    def _may_invite(self, inviter: str) -> bool:
        server = _server_of(inviter).lower()
        return any(
            allowed == inviter or (not allowed.startswith("@") and allowed.lower() == server)
            for allowed in self._config.accept_invites_from
        )

    async def _invited(self, room_id: str, inviter: str | None) -> None:
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
            response = await self._call(what, self._client.room_leave(room_id))
        except HomeserverUnavailable as error:
            log.warning("cannot %s: %s", what, error)
            return
        if not isinstance(response, RoomLeaveResponse):
            log.warning("cannot %s: %s", what, _response_error(what, response))

    async def _retry_invites(self) -> None:
        now = self._clock()
        for room_id, pending in list(self._pending_invites.items()):
            if pending.next_try > now:
                continue
            if await self._accept(room_id, pending.why):
                del self._pending_invites[room_id]
            else:
                pending.delay = min(pending.delay * 2, INVITE_RETRY_MAX)
                pending.next_try = now + pending.delay

    async def _join(self, target: str, *, why: str) -> str | None:
        """Join a room by id or alias; return its id, or None (logged) if that failed."""
        what = f"join {target}"
        try:
            response = await self._call(what, self._client.join(target))
        except HomeserverUnavailable as error:
            log.warning("cannot %s (%s): %s", what, why, error)
            return None
        if not isinstance(response, JoinResponse):
            log.warning("cannot %s (%s): %s", what, why, _response_error(what, response))
            return None
        room_id = str(response.room_id)
        if self._joined is None or room_id not in self._joined:
            self._awaiting_sync.add(room_id)
        await self._store.room_joined(room_id)
        if self.on_joined is not None:
            self.on_joined(room_id)
        shown = room_id if target == room_id else f"{target} ({room_id})"
        log.info("joined %s: %s", shown, why)
        return room_id

    async def _follow_replacement(self, old: str, new: str, now_joined: set[str]) -> None:
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

    async def _moved(self, old: str, new: str) -> None:
        self._replacements[old] = new
        self._awaited_replacements.pop(new, None)
        subscriptions = await self._store.subscriptions(old)
        if subscriptions.regions or subscriptions.organisations or subscriptions.muted:
            await self._store.move_room(old, new)
            log.info("%s was replaced by %s: its subscriptions moved there", old, new)

    async def _join_config_rooms(self) -> None:
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

    # -- commands ---------------------------------------------------------------------------

    def _is_command(self, event: _Event) -> bool:
        if event.type != "m.room.message" or event.sender == self._user_id:
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

    async def _run_command(self, room_id: str, event: _Event) -> None:
        body = _text(event.content.get("body")) or ""
        name = _command_name(body, self._config.command_prefix)
        log.info("command %r from %s in %s", name, event.sender, room_id)
        handler = self.on_command
        if handler is None:
            return
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                answer = await handler(room_id, event.sender, event.event_id, body)
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
        if answer is not None:
            text, html = answer
            content = _reply_content(text, html, event)
            if not self._answers.put(room_id, event.sender, event.event_id, content):
                log.info(
                    "not answering %s in %s: too many answers wait for %s",
                    event.event_id,
                    room_id,
                    event.sender,
                )

    async def _send_answers(self) -> None:
        """Send queued answers, one at a time, at the pace the homeserver accepts."""
        while True:
            answer = await self._answers.next()
            await self._reply(answer.room_id, answer.content, answer.event_id)
            token = self._answers.done(answer)
            if token is not None:
                await self._store.set_value(KEY_SYNC_TOKEN, token)

    async def _reply(self, room_id: str, content: dict[str, Any], event_id: str) -> None:
        txn_id = reply_txn_id(event_id)
        failures = 0
        give_up = time.monotonic() + REPLY_PATIENCE
        while True:
            try:
                await self.send_notice(room_id, content, txn_id)
            except RateLimited as error:
                # The homeserver's pace: waiting is all there is to do, and answers wait in turn.
                wait = error.retry_after
            except HomeserverUnavailable as error:
                failures += 1
                if time.monotonic() >= give_up:
                    log.warning("gave up answering %s in %s: %s", event_id, room_id, error)
                    return
                # Capped like the sync loop's retries: back within seconds of the homeserver.
                wait = min(BACKOFF_START * 2 ** (failures - 1), SYNC_RETRY_MAX)
                log.warning("cannot answer %s in %s yet: %s", event_id, room_id, error)
            except SendError as error:
                log.warning("cannot answer %s in %s: %s", event_id, room_id, error)
                return
            else:
                return
            await asyncio.sleep(wait)

    # -- encryption -------------------------------------------------------------------------

    def _undecryptable(self, room_id: str, event: _Event) -> None:
        if self.on_undecryptable is not None:
            self.on_undecryptable()
        log.warning(
            "cannot decrypt %s from %s in %s (session %s): no room key for it",
            event.event_id,
            event.sender,
            room_id,
            _text(event.content.get("session_id")) or "?",
        )

    async def _joined_encrypted(self, room_id: str, join: _Event) -> None:
        """Tell an encrypted room, in plain text, that the bot cannot read or write in it."""
        if self._encryption:
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
            response = await self._call(
                what,
                self._client.room_send(
                    room_id,
                    "m.room.message",
                    content,
                    tx_id=encryption_off_txn_id(room_id, join.event_id),
                ),
            )
        except (HomeserverUnavailable, LocalProtocolError) as error:
            log.warning("cannot %s: %s", what, _describe(error))
            return
        if not isinstance(response, RoomSendResponse):
            log.warning("cannot %s: %s", what, _response_error(what, response))

    async def _prepare_room_keys(self, room_id: str) -> None:
        """Know every member's devices and apply the trust policy before nio shares a key."""
        if not self._encryption or not self._client.rooms[room_id].encrypted:
            return
        client = self._client
        room = client.rooms[room_id]
        if not room.members_synced:
            what = f"read the members of {room_id}"
            response = await self._call(what, client.joined_members(room_id))
            if not isinstance(response, JoinedMembersResponse):
                raise _response_error(what, response)
        if client.should_query_keys:
            await self._query_keys()
        self._apply_trust(room.users)
        # Claimed here, where a failure is an outage like any other: nio claims them while it
        # marks the room as sharing, and a failure there would leave that mark for good.
        missing = client.get_missing_sessions(room_id)
        if missing:
            _log_refusal("claim keys", await self._call("claim keys", client.keys_claim(missing)))

    def _end_key_sharing(self, room_id: str) -> None:
        """Clear a key sharing that a failed send left marked as running (sends wait on it)."""
        sharing = self._client.sharing_session.pop(room_id, None)
        if sharing is not None:
            sharing.set()

    async def _query_keys(self) -> None:
        what = "query keys"
        response = await self._call(what, self._client.keys_query())
        if not isinstance(response, KeysQueryResponse):
            _log_refusal(what, response)
            return
        self._key_changes(response)
        self._apply_trust(response.device_keys)

    def _key_changes(self, response: KeysQueryResponse) -> None:
        """Find devices whose identity key differs from the first one seen, which nio keeps."""
        store = self._client.device_store
        for user_id, devices in response.device_keys.items():
            if not isinstance(devices, dict):
                continue
            for device_id, payload in devices.items():
                known = store[user_id].get(device_id) if user_id in store.users else None
                keys = payload.get("keys") if isinstance(payload, dict) else None
                seen = keys.get(f"ed25519:{device_id}") if isinstance(keys, dict) else None
                if known is None or seen is None or known.ed25519 == seen:
                    continue
                if self._config.trust == "all":
                    log.warning(
                        "device %s of %s has a new identity key; trusted (matrix.trust: all)",
                        device_id,
                        user_id,
                    )
                    self._replace_device(known, payload, seen)
                elif not self._client.olm.is_device_blacklisted(known):
                    log.warning(
                        "device %s of %s changed its identity key (was %s, now %s): not "
                        "trusted, it gets no room keys (matrix.trust: tofu)",
                        device_id,
                        user_id,
                        known.ed25519,
                        seen,
                    )
                    self._client.blacklist_device(known)
                else:
                    continue
                # The current room keys went to the old key: later messages get new ones.
                self._new_sessions_with(user_id)

    def _replace_device(self, known: OlmDevice, payload: Mapping[str, Any], ed25519: str) -> None:
        keys = payload["keys"]
        curve = keys.get(f"curve25519:{known.id}")
        if not isinstance(curve, str):
            return
        device = OlmDevice(
            known.user_id, known.id, {"ed25519": ed25519, "curve25519": curve}, known.display_name
        )
        olm = self._client.olm
        self._client.unverify_device(known)  # the trust store refuses two keys for one device
        olm.device_store[known.user_id][known.id] = device
        olm.store.save_device_keys({known.user_id: {known.id: device}})
        self._client.verify_device(device)

    def _new_sessions_with(self, user_id: str) -> None:
        for room in self._client.rooms.values():
            if room.encrypted and user_id in room.users:
                self._client.invalidate_outbound_session(room.room_id)

    def _apply_trust(self, users: Iterable[str]) -> None:
        """Trust each member device seen for the first time, as matrix.trust says."""
        client = self._client
        for user_id in users:
            for device in client.device_store.active_user_devices(user_id):
                if device.verified or client.olm.is_device_blacklisted(device):
                    continue
                log.info(
                    "trusting device %s of %s on first use (ed25519 %s)",
                    device.id,
                    user_id,
                    device.ed25519,
                )
                client.verify_device(device)

    async def _upload_keys(self) -> None:
        if self._encryption and self._client.should_upload_keys:
            _log_refusal("upload keys", await self._call("upload keys", self._client.keys_upload()))

    async def _maintain_keys(self) -> None:
        """Upload, query and claim keys and send to-device messages, as nio's own loop does."""
        if not self._encryption:
            return
        client = self._client
        try:
            await self._upload_keys()
            if client.should_query_keys:
                await self._query_keys()
            if client.should_claim_keys:
                users = client.get_users_for_key_claiming()
                _log_refusal("claim keys", await self._call("claim keys", client.keys_claim(users)))
            await self._call("send to-device messages", client.send_to_device_messages())
        except (HomeserverUnavailable, LocalProtocolError, EncryptionError, OlmTrustError) as error:
            # Keys are maintained again after the next sync; the loop must go on.
            log.warning("key maintenance failed: %s", _describe(error))

    # -- requests ---------------------------------------------------------------------------

    async def _call(
        self, what: str, request: Awaitable[object], *, seconds: float = REQUEST_TIMEOUT
    ) -> object:
        """Await one nio request; a transport failure becomes HomeserverUnavailable."""
        try:
            async with asyncio.timeout(seconds + 5.0):  # nio's own timeout should fire first
                return await request
        except (aiohttp.ClientError, TimeoutError) as error:
            raise HomeserverUnavailable(f"{what}: {_describe(error)}") from error


def _creators_of(create: _Event) -> frozenset[str]:
    version = _text(create.content.get("room_version")) or "1"
    if not _creators_outrank(version):
        return frozenset()
    extra = create.content.get("additional_creators")
    others = {user for user in extra if isinstance(user, str)} if isinstance(extra, list) else set()
    return frozenset({create.sender, *others})


def _read_levels(content: Mapping[str, object]) -> _Levels:
    users = content.get("users")
    levels = {
        user: level
        for user, value in (users.items() if isinstance(users, dict) else ())
        if isinstance(user, str) and (level := _level(value)) is not None
    }
    default = _level(content.get("users_default"))
    return _Levels(levels, default if default is not None else 0)


def _login_error(key: str, error: SendError) -> ConfigError:
    return ConfigError([(key, f"refused by the homeserver: {error}")])


def _log_refusal(what: str, response: object) -> None:
    if isinstance(response, ErrorResponse):
        log.warning("cannot %s: %s", what, _response_error(what, response))
