"""The bot's session: log-in on the stored device, resuming a token, logging in again."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, TypeVar

from nio import AsyncClient, LoginResponse, WhoamiResponse

from ..config import MatrixConfig
from ..errors import (
    ConfigError,
    CrossSigningError,
    HomeserverUnavailable,
    RateLimited,
    SendError,
)
from ..store import Store
from .crypto import Crypto
from .events import text
from .protocols import MatrixListener
from .requests import call, refusal_expected, response_error

log = logging.getLogger(__name__)

T = TypeVar("T")

KEY_USER_ID: Final = "matrix.user_id"
KEY_DEVICE_ID: Final = "matrix.device_id"
KEY_ACCESS_TOKEN: Final = "matrix.access_token"
KEY_SYNC_TOKEN: Final = "matrix.sync_token"
KEY_ROOM_REFS: Final = "matrix.room_refs"  # JSON: configured alias or id → room id last joined

BACKOFF_START: Final = 1.0
BACKOFF_MAX: Final = 60.0
# A failed sync is how the end of an outage is noticed (and /health recovers): keep it frequent.
SYNC_RETRY_MAX: Final = 10.0
LOGIN_WAIT_MAX: Final = 600.0  # seconds; a rate-limited log-in is tried again at least this often


async def retrying(what: str, step: Callable[[], Awaitable[T]]) -> T:
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


class Session:
    """One device of the bot's account, kept across restarts so that sends stay deduplicated."""

    def __init__(
        self,
        client: AsyncClient,
        config: MatrixConfig,
        store: Store,
        crypto: Crypto,
        listener: MatrixListener,
        *,
        crypto_store: Path | None,
    ) -> None:
        self._client = client
        self._config = config
        self._store = store
        self._crypto = crypto
        self._listener = listener
        self._crypto_store = crypto_store  # None without encryption
        self._user_id = config.user_id
        self._device_id: str | None = None

    @property
    def user_id(self) -> str:
        """The bot's Matrix user id."""
        return self._user_id

    @property
    def device_id(self) -> str | None:
        """The device logged in as (None before log-in)."""
        return self._device_id

    async def log_in(self) -> None:
        """Resume the stored or configured session, else log in with the password."""
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

    async def relogin(self) -> bool:
        """Log in again after the homeserver forgot our token; False if impossible."""
        if not self._config.password:
            log.error("the homeserver rejected the access token and no password is configured")
            return False
        try:
            await self._password_login(self._device_id)
        except ConfigError as error:
            log.error("cannot log in again: %s", error)
            return False
        try:
            # A new device needs the identity's signature, or Element users stop hearing it.
            await self._crypto.set_up()
        except (ConfigError, CrossSigningError, SendError) as error:
            log.error("logged in again, but cannot sign the device for cross-signing: %s", error)
        return True

    async def _has_crypto_store(self, device_id: str) -> bool:
        if self._crypto_store is None:
            return True
        path = self._crypto_store / f"{self._config.user_id}_{device_id}.db"  # nio's naming
        return await asyncio.to_thread(path.exists)

    async def _resume(self, token: str, device_id: str | None, *, configured: bool) -> bool:
        """Use an existing access token; False if the homeserver rejects it."""
        self._client.user_id = self._config.user_id
        self._client.access_token = token
        response = await call("check the access token", self._client.whoami())
        if not isinstance(response, WhoamiResponse):
            error = response_error("check the access token", response)
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
        device = text(response.device_id) or device_id
        if device is None:
            if self._crypto_store is not None:
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
        response = await self._login_request(self._config.password)
        user_id, device = str(response.user_id), str(response.device_id)
        await self._store.set_value(KEY_DEVICE_ID, device)
        await self._store.set_value(KEY_ACCESS_TOKEN, str(response.access_token))
        self._listener.new_token(str(response.access_token))
        self._user_id, self._device_id = user_id, device
        log.info("logged in as %s on device %s", user_id, device)
        await self._crypto.upload_keys()

    async def _login_request(self, password: str) -> LoginResponse:
        """Log in, waiting as long as the homeserver asks while it rate-limits the log-in."""
        while True:
            with refusal_expected():
                response = await call(
                    "log in",
                    self._client.login(password=password, device_name=self._config.device_name),
                )
            if isinstance(response, LoginResponse):
                return response
            error = response_error("log in", response)
            if not isinstance(error, RateLimited):
                if isinstance(error, HomeserverUnavailable):
                    raise error
                raise _login_error("matrix.password", error)
            wait = min(error.retry_after, LOGIN_WAIT_MAX)
            log.warning("the homeserver rate-limits the log-in; retrying in %d s", math.ceil(wait))
            await asyncio.sleep(wait)


def _login_error(key: str, error: SendError) -> ConfigError:
    return ConfigError([(key, f"refused by the homeserver: {error}")])
