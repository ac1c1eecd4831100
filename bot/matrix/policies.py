"""The trust policies (`matrix.trust`): which member devices get room keys and may run commands.

nio shares room keys with every device that is not blacklisted (unverified ones are merely
"ignored" and still get them), so a policy marks each device either verified or blacklisted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from nio import AsyncClient, KeysQueryResponse
from nio.crypto import OlmDevice

from .cross_signing import keys_query_answer
from .trust import MasterKeyPins, UserTrust

log = logging.getLogger(__name__)

NOT_JUDGED = "its owner's keys could not be read yet"


def _new_sessions_with(client: AsyncClient, user_id: str) -> None:
    """Start new room keys where the user is a member: a shared key is never taken back."""
    for room in client.rooms.values():
        if room.encrypted and user_id in room.users:
            client.invalidate_outbound_session(room.room_id)


class FirstUseTrust:
    """`tofu`: each device's first identity key is trusted; `all`: changed keys are too."""

    def __init__(self, client: AsyncClient, *, policy: Literal["tofu", "all"]) -> None:
        self._client = client
        self._policy = policy

    @property
    def policy(self) -> str:
        """The name of the policy, as `matrix.trust` spells it."""
        return self._policy

    async def keys_queried(self, response: KeysQueryResponse) -> None:
        """Notice changed identity keys, then trust the devices seen for the first time."""
        self._key_changes(response)
        self.before_sharing(response.device_keys)

    def before_sharing(self, users: Iterable[str]) -> None:
        """Trust each device of these users seen for the first time."""
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

    def judged(self, user_id: str) -> bool:
        """Every device nio knows has been judged when its keys were queried."""
        return True

    def why_not(self, device: OlmDevice) -> str | None:
        """Why the device is not trusted; None when it is."""
        if self._policy == "all" or self._client.olm.is_device_verified(device):
            return None
        return "its identity key changed since it was first seen"

    async def reset(self, user_id: str) -> str | None:
        """Nothing is pinned per user under this policy."""
        return None

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
                if self._policy == "all":
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
                _new_sessions_with(self._client, user_id)

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


def _published_ed25519(answer: Mapping[str, Any], user_id: str) -> dict[str, str]:
    """Device id → the ed25519 key a /keys/query answer gives for each of the user's devices."""
    section = answer.get("device_keys")
    devices = section.get(user_id) if isinstance(section, dict) else None
    found: dict[str, str] = {}
    for device_id, device in devices.items() if isinstance(devices, dict) else ():
        keys = device.get("keys") if isinstance(device, dict) else None
        ed25519 = keys.get(f"ed25519:{device_id}") if isinstance(keys, dict) else None
        if isinstance(ed25519, str):
            found[device_id] = ed25519
    return found


class CrossSignedTrust:
    """`cross-signed`: as Element since 2026, only devices cross-signed by their owner.

    Each user's master key is pinned on first use (`MasterKeyPins`). Decisions are made in
    memory from the answers of this run; a user not judged yet has every device excluded.
    """

    def __init__(self, client: AsyncClient, pins: MasterKeyPins) -> None:
        self._client = client
        self._pins = pins
        self._decisions: dict[str, UserTrust] = {}
        self._ed25519: dict[str, dict[str, str]] = {}  # user → device → key cross-signed

    @property
    def policy(self) -> str:
        """The name of the policy, as `matrix.trust` spells it."""
        return "cross-signed"

    async def keys_queried(self, response: KeysQueryResponse) -> None:
        """Judge the devices of every user the query answered for, with the pinned identities."""
        # nio keeps no cross-signing keys: read them in the body it fetched.
        answer = await keys_query_answer(response)
        if answer is None:
            log.warning("cannot read the cross-signing keys of a key query: its devices wait")
            return
        for user_id, decision in (await self._pins.assess(answer)).items():
            self._decisions[user_id] = decision
            self._ed25519[user_id] = _published_ed25519(answer, user_id)
            self._apply(user_id)

    def before_sharing(self, users: Iterable[str]) -> None:
        """Mark the devices of these users as their judgement says, excluded if none yet."""
        for user_id in users:
            self._apply(user_id)

    def judged(self, user_id: str) -> bool:
        """True once the user's devices have been judged in this run."""
        return user_id in self._decisions

    def why_not(self, device: OlmDevice) -> str | None:
        """Why the device is not trusted; None when it is."""
        decision = self._decisions.get(device.user_id)
        if decision is None:
            return NOT_JUDGED
        if not decision.trusts(device.id):
            return decision.excluded.get(device.id, "not cross-signed by its owner")
        if self._ed25519.get(device.user_id, {}).get(device.id) != device.ed25519:
            # nio keeps a device's first keys; the ones cross-signed are others.
            return "its identity key is not the one its owner cross-signed"
        return None

    async def reset(self, user_id: str) -> str | None:
        """Forget the user's pinned identity and judgement; return the old pin, if any."""
        old = await self._pins.reset(user_id)
        self._decisions.pop(user_id, None)
        return old

    def _apply(self, user_id: str) -> None:
        client = self._client
        changed = False
        for device in client.device_store.active_user_devices(user_id):
            why = self.why_not(device)
            if why is None:
                if not client.olm.is_device_verified(device):
                    log.info(
                        "trusting device %s of %s: cross-signed by its owner", device.id, user_id
                    )
                    client.verify_device(device)
                    changed = True
            elif not client.olm.is_device_blacklisted(device):
                log.info(
                    "device %s of %s gets no room keys and its commands are ignored: %s",
                    device.id,
                    user_id,
                    why,
                )
                client.blacklist_device(device)
                changed = True
        if changed:
            _new_sessions_with(client, user_id)
