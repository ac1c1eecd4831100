"""MatrixBot: one logged-in device, composed of its session, rooms, keys, syncs and answers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    EncryptionError,
    GroupEncryptionError,
    LocalProtocolError,
    OlmTrustError,
    RoomSendResponse,
)
from nio.crypto import ENCRYPTION_ENABLED

from ..config import MatrixConfig
from ..errors import HomeserverUnavailable, RoomUnavailable, SendError
from ..files import private_dir
from ..store import Store
from .answers import Answers, send_answers
from .crypto import Crypto, DeviceTrust, Identity
from .membership import Memberships
from .private_store import private_store_class
from .protocols import CommandHandler, MatrixListener, QuietListener
from .requests import REQUEST_TIMEOUT, describe, response_error, send_message
from .rooms import RoomStates
from .session import Session, retrying
from .sync import SyncLoop
from .timeline import Timeline
from .withheld import RecentWithheld

log = logging.getLogger(__name__)


class MatrixBot:
    """One logged-in Matrix device: syncs, follows invites and upgrades, runs commands, sends."""

    def __init__(
        self,
        config: MatrixConfig,
        store: Store,
        *,
        data_dir: Path,
        region_rooms: Mapping[str, Sequence[str]],
        commands: CommandHandler | None = None,
        listener: MatrixListener | None = None,
        encryption_off_notice: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._encryption = config.encryption and bool(ENCRYPTION_ENABLED)
        if config.encryption and not ENCRYPTION_ENABLED:
            log.warning(
                "matrix.encryption is on but the e2e extra is not installed "
                "(pip install 'crieur-bot[e2e]'): running without encryption, "
                "so encrypted rooms get no messages"
            )
        store_path = data_dir / "matrix-store"
        if self._encryption:
            private_dir(store_path)
        self._client = client = AsyncClient(
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
                **({"store": private_store_class()} if self._encryption else {}),
            ),
        )
        self._store = store
        listener = listener or QuietListener()
        trust, identity = (
            _encryption_parts(client, config, store, store_path, listener)
            if self._encryption
            else (None, None)
        )
        self._crypto = Crypto(client, trust, identity)
        self._session = Session(
            client,
            config,
            store,
            self._crypto,
            listener,
            crypto_store=store_path if self._encryption else None,
        )
        self._rooms = RoomStates(client, encryption=self._encryption)
        self._memberships = Memberships(
            client,
            config,
            store,
            self._session,
            self._rooms,
            listener,
            region_rooms=region_rooms,
            clock=clock,
        )
        self._answers = Answers()
        withheld = RecentWithheld()
        timeline = Timeline(
            client,
            config,
            self._session,
            self._rooms,
            self._crypto,
            self._memberships,
            self._answers,
            listener,
            commands=commands,
            encryption_off_notice=encryption_off_notice,
            withheld=withheld,
        )
        self._sync = SyncLoop(
            client,
            store,
            self._session,
            self._crypto,
            self._memberships,
            timeline,
            self._answers,
            listener,
            clock=clock,
            withheld=withheld,
        )
        self._send_locks: dict[str, asyncio.Lock] = {}
        self._admin_room: str | None = None

    @property
    def admin_room(self) -> str | None:
        """The room id of matrix.admin_room once joined (None without one)."""
        return self._admin_room

    @property
    def user_id(self) -> str:
        """The bot's Matrix user id."""
        return self._session.user_id

    @property
    def device_id(self) -> str | None:
        """The device the bot is logged in as (None before start)."""
        return self._session.device_id

    @property
    def last_sync_ok(self) -> float | None:
        """Epoch of the last processed sync, for health."""
        return self._sync.last_ok

    @property
    def sync_failing_since(self) -> float | None:
        """Epoch of the first failed sync of a run of failures; None while syncs work."""
        return self._sync.failing_since

    def room_encrypted(self, room_id: str) -> bool | None:
        """Whether the room is end-to-end encrypted, as last synced (None if unknown)."""
        return self._rooms.encrypted(room_id)

    async def power_level(self, room_id: str, user_id: str) -> int:
        """Return the user's power level in the room; CREATOR_POWER for a v12 room's creators."""
        return await self._rooms.power_level(room_id, user_id)

    async def start(self) -> None:
        """Log in (reusing the stored device), sync once, join the configured rooms."""
        await retrying("log in", self._session.log_in)
        if self._encryption:
            # Before any join or answer: Element reads the bot's keys when it joins a room, and
            # shares nothing with a device its owner has not cross-signed.
            await retrying("set up cross-signing", self._crypto.set_up)
            log.info("end-to-end encryption on (matrix.trust: %s)", self._config.trust)
        else:
            log.info("end-to-end encryption off: encrypted rooms get nothing")
        invites = await self._sync.first_sync()
        await self._memberships.join_config_rooms()
        if self._config.admin_room is not None:
            self._admin_room = await self._memberships.join_admin_room(self._config.admin_room)
        # After the configured joins, which may have been pending invites themselves.
        for room_id, inviter in invites.items():
            await self._memberships.invited(room_id, inviter)

    async def sync_forever(self) -> None:
        """Sync until cancelled, backing off while the homeserver is unreachable."""
        if not self._sync.ready:
            raise RuntimeError("MatrixBot.start() must run before sync_forever()")
        async with asyncio.TaskGroup() as group:
            answering = send_answers(self._answers, self.send_notice, self._store)
            group.create_task(answering, name="answers")
            await self._sync.run()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._client.close()

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
                await self._crypto.prepare_room_keys(room_id)
                response = await send_message(self._client, what, room_id, content, txn_id)
            except (
                LocalProtocolError,
                EncryptionError,
                GroupEncryptionError,
                OlmTrustError,
            ) as error:
                raise SendError(f"{what}: cannot encrypt: {describe(error)}") from error
            finally:
                self._crypto.end_key_sharing(room_id)
        if isinstance(response, RoomSendResponse):
            return str(response.event_id)
        raise response_error(what, response)

    async def _check_can_send(self, room_id: str) -> None:
        if self._encryption:
            # nio encrypts only for rooms it has synced; it raises for the others.
            if room_id not in self._client.rooms:
                if self._memberships.awaiting_sync(room_id):
                    raise HomeserverUnavailable(f"{room_id} was just joined; waiting for a sync")
                raise RoomUnavailable(f"the bot is not in {room_id}")
            return
        if await self._rooms.read_encrypted(room_id):
            # Sending plain text into an encrypted room would leak it and confuse its members.
            reason = (
                "the e2e extra is not installed (pip install 'crieur-bot[e2e]')"
                if self._config.encryption
                else "matrix.encryption is off"
            )
            raise RoomUnavailable(f"{room_id} is end-to-end encrypted and {reason}")


def _encryption_parts(
    client: AsyncClient,
    config: MatrixConfig,
    store: Store,
    store_path: Path,
    listener: MatrixListener,
) -> tuple[DeviceTrust, Identity]:
    """The trust policy and the cross-signing identity, which only encryption needs."""
    # Imported here: signedjson and canonicaljson come with the e2e extra.
    from .identity import BotIdentity
    from .policies import CrossSignedTrust, FirstUseTrust
    from .trust import MasterKeyPins

    pins = MasterKeyPins(store)
    identity = BotIdentity(
        client, store_dir=store_path, password=config.password, listener=listener, pins=pins
    )
    if config.trust == "cross-signed":
        return CrossSignedTrust(client, pins), identity
    return FirstUseTrust(client, policy=config.trust), identity
