"""End-to-end encryption: keys uploaded, queried and claimed, the identity, the trust policy."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from nio import (
    AsyncClient,
    EncryptionError,
    JoinedMembersResponse,
    KeysQueryResponse,
    LocalProtocolError,
    OlmTrustError,
)
from nio.crypto import OlmDevice

from ..errors import HomeserverUnavailable, RateLimited
from .requests import call, describe, log_refusal, response_error

log = logging.getLogger(__name__)


class DeviceTrust(Protocol):
    """A trust policy (`matrix.trust`): which member devices get room keys and run commands."""

    @property
    def policy(self) -> str:
        """The name of the policy, as `matrix.trust` spells it."""
        ...

    async def keys_queried(self, response: KeysQueryResponse) -> None:
        """Judge the devices a key query returned."""
        ...

    def before_sharing(self, users: Iterable[str]) -> None:
        """Mark these users' devices trusted or excluded before nio shares a room key."""
        ...

    def judged(self, user_id: str) -> bool:
        """True if the user's devices have been judged."""
        ...

    def why_not(self, device: OlmDevice) -> str | None:
        """Why the device is not trusted; None when it is."""
        ...

    async def reset(self, user_id: str) -> str | None:
        """Forget the identity pinned for the user; return it, if there was one."""
        ...


class Identity(Protocol):
    """The bot's cross-signing identity."""

    @property
    def master_key(self) -> str | None:
        """The public master key, once published."""
        ...

    async def ensure(self) -> None:
        """Publish the identity and sign the current device with it, if not done yet."""
        ...


class Crypto:
    """Keeps the device's keys and the members' devices as nio's own loop would."""

    def __init__(
        self, client: AsyncClient, trust: DeviceTrust | None, identity: Identity | None
    ) -> None:
        self._client = client
        self._trust = trust  # None: encryption is off
        self._identity = identity

    @property
    def policy(self) -> str | None:
        """The trust policy in force; None without encryption."""
        return self._trust.policy if self._trust is not None else None

    @property
    def master_key(self) -> str | None:
        """The bot's public master key; None without encryption or before it is published."""
        return self._identity.master_key if self._identity is not None else None

    async def set_up(self) -> None:
        """Publish the device's keys, then the cross-signing identity that signs the device.

        Raise ConfigError, CrossSigningError, HomeserverUnavailable or RateLimited.
        """
        if self._identity is None:
            return
        await self.upload_keys()
        await self._identity.ensure()

    async def prepare_room_keys(self, room_id: str) -> None:
        """Know every member's devices and apply the trust policy before nio shares a key."""
        trust = self._trust
        if trust is None or not self._client.rooms[room_id].encrypted:
            return
        client = self._client
        room = client.rooms[room_id]
        if not room.members_synced:
            what = f"read the members of {room_id}"
            response = await call(what, client.joined_members(room_id))
            if not isinstance(response, JoinedMembersResponse):
                raise response_error(what, response)
        # Members whose devices this run has not judged yet (after a restart, say) are read.
        client.olm.users_for_key_query.update(u for u in room.users if not trust.judged(u))
        if client.should_query_keys:
            await self._query_keys()
        trust.before_sharing(room.users)
        # Claimed here, where a failure is an outage like any other: nio claims them while it
        # marks the room as sharing, and a failure there would leave that mark for good.
        missing = client.get_missing_sessions(room_id)
        if missing:
            log_refusal("claim keys", await call("claim keys", client.keys_claim(missing)))

    def end_key_sharing(self, room_id: str) -> None:
        """Clear a key sharing that a failed send left marked as running (sends wait on it)."""
        sharing = self._client.sharing_session.pop(room_id, None)
        if sharing is not None:
            sharing.set()

    async def upload_keys(self) -> None:
        """Upload the device's keys when nio says they are due."""
        if self._trust is not None and self._client.should_upload_keys:
            log_refusal("upload keys", await call("upload keys", self._client.keys_upload()))

    async def maintain_keys(self) -> None:
        """Upload, query and claim keys and send to-device messages, as nio's own loop does."""
        if self._trust is None:
            return
        client = self._client
        try:
            await self.upload_keys()
            if client.should_query_keys:
                await self._query_keys()
            if client.should_claim_keys:
                users = client.get_users_for_key_claiming()
                log_refusal("claim keys", await call("claim keys", client.keys_claim(users)))
            await call("send to-device messages", client.send_to_device_messages())
        except (HomeserverUnavailable, LocalProtocolError, EncryptionError, OlmTrustError) as error:
            # Keys are maintained again after the next sync; the loop must go on.
            log.warning("key maintenance failed: %s", describe(error))

    async def untrusted_sender(self, user_id: str, sender_key: str) -> str | None:
        """Say why the policy does not trust the device with this Curve25519 key, else None."""
        trust = self._trust
        if trust is None or trust.policy == "all":
            return None
        store = self._client.device_store
        device = store.device_from_sender_key(user_id, sender_key)
        if device is None or not trust.judged(user_id):
            # A device seen for the first time (its room key came before its keys were read).
            self._client.olm.users_for_key_query.add(user_id)
            try:
                await self._query_keys()
            except (HomeserverUnavailable, RateLimited) as error:
                return f"its keys could not be read ({error})"
            device = store.device_from_sender_key(user_id, sender_key)
        if device is None:
            return "its keys are not published"
        why = trust.why_not(device)
        return None if why is None else f"device {device.id}: {why}"

    async def reset_trust(self, user_id: str) -> str | None:
        """Forget the identity pinned for the user and read their keys again; return the pin."""
        if self._trust is None:
            return None
        old = await self._trust.reset(user_id)
        self._client.olm.users_for_key_query.add(user_id)
        try:
            await self._query_keys()
        except (HomeserverUnavailable, RateLimited) as error:
            # Read at the next sync's key maintenance instead.
            log.warning("cannot read the keys of %s now: %s", user_id, error)
        return old

    async def _query_keys(self) -> None:
        what = "query keys"
        response = await call(what, self._client.keys_query())
        if not isinstance(response, KeysQueryResponse):
            log_refusal(what, response)
            return
        if self._trust is not None:
            await self._trust.keys_queried(response)
