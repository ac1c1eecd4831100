"""Trust as Element trusts (MSC4153): devices cross-signed by their owner's pinned identity.

Each user's master key is pinned on first use; a device is trusted when its owner's
self-signing key, itself signed by that master key, signed it. A user whose master key changes
has every device excluded until an admin resets the pin (`!trust reset @user`). The decision is
pure (`assess`); the pins live in the store's key-value table (`MasterKeyPins`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from signedjson.key import NACL_ED25519, decode_verify_key_base64
from signedjson.sign import SignatureVerifyException, verify_signed_json

log = logging.getLogger(__name__)

PIN_PREFIX: Final = "matrix.master_key:"  # + user id → the pinned master key

NO_IDENTITY: Final = "its owner has no cross-signing identity"
BAD_SELF_SIGNING: Final = "its owner's self-signing key is missing or not signed by the master key"
NOT_CROSS_SIGNED: Final = "not cross-signed by its owner"
BAD_DEVICE: Final = "its keys are malformed or not signed by the device itself"


class KeyValueStore(Protocol):
    """The store's key-value methods."""

    async def get_value(self, key: str) -> str | None: ...

    async def set_value(self, key: str, value: str) -> None: ...

    async def delete_value(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class UserTrust:
    """How far one user's devices are trusted, from one /keys/query answer."""

    user_id: str
    master_key: str | None  # the master key published now, if well formed
    pin: str | None  # to pin now: the master key seen for the first time
    changed: bool  # the published identity is not the pinned one: every device is excluded
    trusted: frozenset[str]  # device ids cross-signed by the owner
    excluded: Mapping[str, str] = field(default_factory=dict)  # device id → why

    def trusts(self, device_id: str) -> bool:
        """True if the device may get room keys and its messages may be read."""
        return device_id in self.trusted


def _users(response: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    value = response.get(section)
    return value if isinstance(value, dict) else {}


def _single_key(obj: object, user_id: str, usage: str) -> str | None:
    """The public key of a well-formed cross-signing key object of `user_id` and `usage`."""
    if not isinstance(obj, dict) or obj.get("user_id") != user_id:
        return None
    usages, keys = obj.get("usage"), obj.get("keys")
    if not isinstance(usages, list) or usage not in usages or not isinstance(keys, dict):
        return None
    if len(keys) != 1:
        return None
    ((key_id, public),) = keys.items()
    if not isinstance(public, str) or key_id != f"{NACL_ED25519}:{public}":
        return None
    return public


def signed_by(obj: Mapping[str, Any], user_id: str, key_name: str, public: str) -> bool:
    """True if `obj` carries a valid signature by `user_id`'s key `ed25519:<key_name>`."""
    try:
        verify_key = decode_verify_key_base64(NACL_ED25519, key_name, public)
        verify_signed_json(dict(obj), user_id, verify_key)
    except (SignatureVerifyException, ValueError, TypeError, KeyError):
        return False
    return True


def _device_ok(device: object, user_id: str, device_id: str) -> bool:
    """The device's keys name it and its owner, and are signed by its own ed25519 key."""
    if not isinstance(device, dict):
        return False
    keys = device.get("keys")
    ed25519 = keys.get(f"{NACL_ED25519}:{device_id}") if isinstance(keys, dict) else None
    return (
        device.get("user_id") == user_id
        and device.get("device_id") == device_id
        and isinstance(ed25519, str)
        and signed_by(device, user_id, device_id, ed25519)
    )


def assess_user(
    user_id: str,
    devices: Mapping[str, Any],
    master_object: object,
    self_signing_object: object,
    pinned: str | None,
) -> UserTrust:
    """Decide which of one user's devices are cross-signed by the pinned identity."""
    master = _single_key(master_object, user_id, "master")
    device_ids = list(devices)

    def excluding(why: str, *, changed: bool = False) -> UserTrust:
        pin = master if pinned is None and master is not None else None
        excluded = dict.fromkeys(device_ids, why)
        return UserTrust(user_id, master, pin, changed, frozenset(), excluded)

    if pinned is not None and master != pinned:
        what = f"master key {master}" if master is not None else "no master key"
        return excluding(
            f"its owner's identity changed ({what}, pinned {pinned}): "
            f"an admin must reset it (!trust reset {user_id})",
            changed=True,
        )
    if master is None:
        return excluding(NO_IDENTITY)
    self_signing = _single_key(self_signing_object, user_id, "self_signing")
    if self_signing is None or not signed_by(
        self_signing_object if isinstance(self_signing_object, dict) else {},
        user_id,
        master,
        master,
    ):
        return excluding(BAD_SELF_SIGNING)
    trusted: set[str] = set()
    excluded: dict[str, str] = {}
    for device_id in device_ids:
        device = devices[device_id]
        if not _device_ok(device, user_id, device_id):
            excluded[device_id] = BAD_DEVICE
        elif signed_by(device, user_id, self_signing, self_signing):
            trusted.add(device_id)
        else:
            excluded[device_id] = NOT_CROSS_SIGNED
    return UserTrust(
        user_id, master, master if pinned is None else None, False, frozenset(trusted), excluded
    )


def assess(response: Mapping[str, Any], pins: Mapping[str, str]) -> dict[str, UserTrust]:
    """Decide, for every user whose devices a /keys/query answer lists, which are trusted.

    `pins` maps user ids to the master keys pinned so far. Users the answer does not list
    (their server failed to answer, say) are left out: nothing is known of them.
    """
    masters = _users(response, "master_keys")
    self_signing = _users(response, "self_signing_keys")
    result: dict[str, UserTrust] = {}
    for user_id, devices in _users(response, "device_keys").items():
        result[user_id] = assess_user(
            user_id,
            devices if isinstance(devices, dict) else {},
            masters.get(user_id),
            self_signing.get(user_id),
            pins.get(user_id),
        )
    return result


class MasterKeyPins:
    """The master key pinned for each user, in the store's key-value table."""

    def __init__(self, store: KeyValueStore) -> None:
        self._store = store

    async def pinned(self, user_ids: Iterable[str]) -> dict[str, str]:
        """Return the pins of these users (those that have one)."""
        pins: dict[str, str] = {}
        for user_id in user_ids:
            value = await self._store.get_value(PIN_PREFIX + user_id)
            if value is not None:
                pins[user_id] = value
        return pins

    async def reset(self, user_id: str) -> str | None:
        """Forget a user's pin (their next identity is trusted on first use); return it."""
        old = await self._store.get_value(PIN_PREFIX + user_id)
        if old is not None:
            await self._store.delete_value(PIN_PREFIX + user_id)
            log.info("forgot the pinned identity of %s (master key %s)", user_id, old)
        return old

    async def assess(self, response: Mapping[str, Any]) -> dict[str, UserTrust]:
        """`assess` with the stored pins; pin the identities seen for the first time."""
        users = list(_users(response, "device_keys"))
        decisions = assess(response, await self.pinned(users))
        for decision in decisions.values():
            if decision.pin is not None:
                await self._store.set_value(PIN_PREFIX + decision.user_id, decision.pin)
                log.info(
                    "trusting the identity of %s on first use (master key %s)",
                    decision.user_id,
                    decision.pin,
                )
            elif decision.changed:
                log.warning(
                    "the cross-signing identity of %s changed: none of their devices is "
                    "trusted until an admin resets it (!trust reset %s)",
                    decision.user_id,
                    decision.user_id,
                )
        return decisions
