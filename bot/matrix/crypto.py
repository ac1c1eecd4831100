"""End-to-end encryption: keys uploaded, queried and claimed, and the trust policy."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from nio import (
    AsyncClient,
    EncryptionError,
    JoinedMembersResponse,
    KeysQueryResponse,
    LocalProtocolError,
    OlmTrustError,
)
from nio.crypto import OlmDevice

from ..errors import HomeserverUnavailable
from .requests import call, describe, log_refusal, response_error

log = logging.getLogger(__name__)


class Crypto:
    """Keeps the device's keys and the members' devices as nio's own loop would."""

    def __init__(self, client: AsyncClient, *, enabled: bool, trust: str) -> None:
        self._client = client
        self._enabled = enabled
        self._trust = trust

    async def prepare_room_keys(self, room_id: str) -> None:
        """Know every member's devices and apply the trust policy before nio shares a key."""
        if not self._enabled or not self._client.rooms[room_id].encrypted:
            return
        client = self._client
        room = client.rooms[room_id]
        if not room.members_synced:
            what = f"read the members of {room_id}"
            response = await call(what, client.joined_members(room_id))
            if not isinstance(response, JoinedMembersResponse):
                raise response_error(what, response)
        if client.should_query_keys:
            await self._query_keys()
        self._apply_trust(room.users)
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
        if self._enabled and self._client.should_upload_keys:
            log_refusal("upload keys", await call("upload keys", self._client.keys_upload()))

    async def maintain_keys(self) -> None:
        """Upload, query and claim keys and send to-device messages, as nio's own loop does."""
        if not self._enabled:
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

    async def _query_keys(self) -> None:
        what = "query keys"
        response = await call(what, self._client.keys_query())
        if not isinstance(response, KeysQueryResponse):
            log_refusal(what, response)
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
                if self._trust == "all":
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
