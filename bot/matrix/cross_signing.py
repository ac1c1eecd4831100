"""The bot's cross-signing identity: its master, self-signing and user-signing keys.

Element shares no room key with a device its owner has not cross-signed (MSC4153), so the bot
holds an identity of its own, kept beside its device in the crypto store: on start it makes sure
the homeserver publishes that identity and that the bot's device is signed by it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import aiohttp
from canonicaljson import encode_canonical_json
from signedjson.sign import sign_json

from ..errors import (
    ConfigError,
    CrieurError,
    CrossSigningError,
    HomeserverUnavailable,
    RateLimited,
)
from .identity_keys import Identity, identity_path, load_identity, save_identity
from .trust import signed_by

log = logging.getLogger(__name__)

KEYS_QUERY: Final = "/_matrix/client/v3/keys/query"
SIGNING_KEYS_UPLOAD: Final = "/_matrix/client/v3/keys/device_signing/upload"
SIGNATURES_UPLOAD: Final = "/_matrix/client/v3/keys/signatures/upload"
PASSWORD_AUTH: Final = "m.login.password"
REQUEST_TIMEOUT: Final = 30.0
DEFAULT_RETRY_AFTER: Final = 5.0  # seconds, when a 429 does not say

JsonDict = dict[str, Any]

DeviceSigner = Callable[[bytes], str]
"""Sign bytes (canonical JSON) with the device's own ed25519 key; return the unpadded base64."""


class HomeserverApi(Protocol):
    """One authenticated client-server API request."""

    async def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        """Send `body` as JSON; return the HTTP status and the decoded JSON answer (or None)."""
        ...


# -- talking to the homeserver ------------------------------------------------------------------


def _refused(what: str, status: int, body: object) -> CrieurError:
    """The error for a homeserver's refusal, as the rest of Crieur raises them."""
    errcode = body.get("errcode") if isinstance(body, dict) else None
    message = body.get("error") if isinstance(body, dict) else None
    text = f"{what}: {errcode or status} {message or 'refused'}"
    if status == 429 or errcode == "M_LIMIT_EXCEEDED":
        delay = body.get("retry_after_ms") if isinstance(body, dict) else None
        seconds = delay / 1000 if isinstance(delay, int) else DEFAULT_RETRY_AFTER
        return RateLimited(seconds, text)
    if status >= 500 or errcode == "M_UNKNOWN_TOKEN":
        return HomeserverUnavailable(text, errcode=errcode if isinstance(errcode, str) else None)
    return CrossSigningError(text)


def _section(body: object, name: str, user_id: str) -> JsonDict | None:
    section = body.get(name) if isinstance(body, dict) else None
    value = section.get(user_id) if isinstance(section, dict) else None
    return value if isinstance(value, dict) else None


def _has_key(key_object: JsonDict | None, public: str) -> bool:
    keys = key_object.get("keys") if key_object is not None else None
    return isinstance(keys, dict) and keys.get(f"ed25519:{public}") == public


def _published_master(body: object, user_id: str) -> str | None:
    keys = (_section(body, "master_keys", user_id) or {}).get("keys")
    if not isinstance(keys, dict):
        return None
    return next((key for key in keys.values() if isinstance(key, str)), None)


def _publishes(published: object, identity: Identity) -> bool:
    """True if the homeserver publishes exactly this identity's public keys."""
    user_id = identity.user_id
    user_signing = _section(published, "user_signing_keys", user_id)
    return (
        _has_key(_section(published, "master_keys", user_id), identity.master_key)
        and _has_key(_section(published, "self_signing_keys", user_id), identity.self_signing_key)
        # Only the owner is shown the user-signing key; take its absence as nothing to check.
        and (user_signing is None or _has_key(user_signing, identity.user_signing_key))
    )


@dataclass(frozen=True, slots=True)
class IdentityReport:
    """What `CrossSigning.ensure` found and did."""

    master_key: str
    created: bool  # new private keys were made
    uploaded: bool  # the public keys were uploaded now
    replaced: str | None  # a published master key the bot did not hold, now replaced
    signed_device: bool  # the device got its signature now
    signed_master: bool  # the device signed the master key now
    warning: str | None  # for the admin room: the identity was lost and made again


class CrossSigning:
    """Publish the bot's cross-signing identity and sign its device with it."""

    def __init__(
        self,
        api: HomeserverApi,
        *,
        user_id: str,
        device_id: str,
        store_dir: Path,
        password: str | None,
        device_signer: DeviceSigner | None = None,
    ) -> None:
        self._api = api
        self._user_id = user_id
        self._device_id = device_id
        self._path = identity_path(store_dir, user_id)
        self._password = password
        self._device_signer = device_signer

    async def ensure(self) -> IdentityReport:
        """Create or reuse the identity, publish it if need be, sign the device; idempotent.

        Call after the device keys are uploaded. Raise ConfigError when replacing a published
        identity needs a password that is not configured, CrossSigningError on a refusal,
        HomeserverUnavailable or RateLimited when trying again later will do.
        """
        user_id = self._user_id
        identity = await asyncio.to_thread(load_identity, self._path, user_id)
        created = identity is None
        if identity is None:
            identity = Identity.generate(user_id)
            # Saved before the upload: keys published but lost would need a password to replace.
            await asyncio.to_thread(save_identity, self._path, identity)
            log.info("made a new cross-signing identity (master key %s)", identity.master_key)
        published = await self._query()
        master = _published_master(published, user_id)
        current = _publishes(published, identity)
        replaced = master if master is not None and master != identity.master_key else None
        warning = None
        if replaced is not None:
            warning = (
                f"the homeserver published a cross-signing identity of {user_id} (master key "
                f"{replaced}) whose keys Crieur does not hold; replaced by master key "
                f"{identity.master_key}: people who verified the bot must verify it again"
            )
        if not current:
            await self._upload_keys(identity, replacing=master is not None)
            if warning is not None:
                log.warning("%s", warning)
            else:
                log.info(
                    "published the cross-signing identity (master key %s)", identity.master_key
                )
            published = await self._query()
        signed_device = await self._sign_device(identity, published)
        signed_master = await self._sign_master(identity, published)
        return IdentityReport(
            master_key=identity.master_key,
            created=created,
            uploaded=not current,
            replaced=replaced,
            signed_device=signed_device,
            signed_master=signed_master,
            warning=warning,
        )

    async def _query(self) -> JsonDict:
        what = "read the bot's published keys"
        status, body = await self._api.request(
            "POST", KEYS_QUERY, {"device_keys": {self._user_id: []}}
        )
        if status != 200 or not isinstance(body, dict):
            raise _refused(what, status, body)
        return body

    async def _upload_keys(self, identity: Identity, *, replacing: bool) -> None:
        """Upload the public keys: without authentication first (MSC3967), else the password."""
        what = "publish the cross-signing keys"
        body = identity.upload_body()
        status, answer = await self._api.request("POST", SIGNING_KEYS_UPLOAD, body)
        if status == 200:
            return
        flows = answer.get("flows") if isinstance(answer, dict) else None
        if status != 401 or not isinstance(flows, list):
            raise _refused(what, status, answer)
        offered = any(
            isinstance(flow, dict) and flow.get("stages") == [PASSWORD_AUTH] for flow in flows
        )
        if not self._password or not offered:
            reason = (
                "the homeserver offers no password authentication for it"
                if self._password
                else "set matrix.password"
            )
            raise ConfigError(
                [
                    (
                        "matrix.password",
                        f"needed to {'replace' if replacing else 'publish'} the bot's "
                        f"cross-signing identity, which the homeserver protects: {reason}, or "
                        "reset the identity of the bot's account from a client logged in as it",
                    )
                ]
            )
        assert isinstance(answer, dict)
        auth = {
            "type": PASSWORD_AUTH,
            "identifier": {"type": "m.id.user", "user": self._user_id},
            "password": self._password,
            "session": answer.get("session"),
        }
        status, answer = await self._api.request(
            "POST", SIGNING_KEYS_UPLOAD, {**body, "auth": auth}
        )
        if status == 200:
            return
        if status in (401, 403):
            raise ConfigError(
                [("matrix.password", "refused by the homeserver to publish the cross-signing keys")]
            )
        raise _refused(what, status, answer)

    async def _sign_device(self, identity: Identity, published: JsonDict) -> bool:
        """Sign the device's published keys with the self-signing key, unless already done."""
        devices = _section(published, "device_keys", self._user_id) or {}
        device = devices.get(self._device_id)
        if not isinstance(device, dict):
            raise CrossSigningError(
                f"the keys of device {self._device_id} are not published: upload them first"
            )
        if signed_by(device, self._user_id, identity.self_signing_key, identity.self_signing_key):
            return False
        signed = {key: value for key, value in device.items() if key != "unsigned"}
        sign_json(signed, self._user_id, identity.self_signing)
        await self._upload_signatures({self._device_id: signed}, "sign the bot's device")
        log.info("signed device %s with the cross-signing identity", self._device_id)
        return True

    async def _sign_master(self, identity: Identity, published: JsonDict) -> bool:
        """Have the device sign the master key, as a device that trusts its own identity does."""
        if self._device_signer is None:
            return False
        master = _section(published, "master_keys", self._user_id)
        key_id = f"ed25519:{self._device_id}"
        devices = _section(published, "device_keys", self._user_id) or {}
        device = devices.get(self._device_id)
        device_keys = device.get("keys") if isinstance(device, dict) else None
        ed25519 = device_keys.get(key_id) if isinstance(device_keys, dict) else None
        if (
            master is not None
            and isinstance(ed25519, str)
            and signed_by(master, self._user_id, self._device_id, ed25519)
        ):
            return False
        # Only the device's signature: the homeserver checks each one against a device.
        unsigned = identity.key_object("master")
        signature = self._device_signer(encode_canonical_json(unsigned))
        signed = {**unsigned, "signatures": {self._user_id: {key_id: signature}}}
        await self._upload_signatures({identity.master_key: signed}, "sign the master key")
        return True

    async def _upload_signatures(self, signed: Mapping[str, JsonDict], what: str) -> None:
        status, answer = await self._api.request(
            "POST", SIGNATURES_UPLOAD, {self._user_id: dict(signed)}
        )
        if status != 200:
            raise _refused(what, status, answer)
        failures = answer.get("failures") if isinstance(answer, dict) else None
        if failures:
            raise CrossSigningError(f"{what}: refused by the homeserver: {json.dumps(failures)}")


# -- over nio -----------------------------------------------------------------------------------


class NioHomeserver:
    """`HomeserverApi` over a logged-in nio `AsyncClient`, with its access token."""

    def __init__(self, client: Any, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self._client = client
        self._timeout = timeout

    async def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        """Send one request through the client's HTTP session; a transport failure raises."""
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self._client.access_token}",
        }
        data = json.dumps(body) if body is not None else None
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.send(method, path, data, headers)
                try:
                    status = int(response.status)
                    try:
                        answer = await response.json(content_type=None)
                    except ValueError:
                        answer = None  # not JSON: a proxy's error page
                finally:
                    response.release()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise HomeserverUnavailable(
                f"{method} {path}: {type(error).__name__}: {error}"
            ) from error
        return status, answer


def nio_device_signer(client: Any) -> DeviceSigner | None:
    """Sign with the device key of a nio client's Olm account; None before it is loaded."""
    account = getattr(getattr(client, "olm", None), "account", None)
    if account is None:
        return None

    def sign(message: bytes) -> str:
        return str(account.sign(message.decode("utf-8")))

    return sign


async def keys_query_answer(response: object) -> dict[str, Any] | None:
    """The whole JSON answer behind nio's `KeysQueryResponse`, cross-signing keys included.

    nio keeps only `device_keys` and `failures`; the body it read stays cached in the
    transport response, so the trust decision needs no second /keys/query.
    """
    transport = getattr(response, "transport_response", None)
    if transport is None:
        return None
    try:
        body = await transport.json(content_type=None)
    except (aiohttp.ClientError, ValueError):
        return None
    return body if isinstance(body, dict) else None
