"""The bot's cross-signing identity, made sure of after each log-in as a device."""

from __future__ import annotations

import logging
from pathlib import Path

from nio import AsyncClient

from .cross_signing import CrossSigning, NioHomeserver, nio_device_signer
from .protocols import MatrixListener
from .trust import MasterKeyPins

log = logging.getLogger(__name__)


class BotIdentity:
    """Publishes the identity kept in the crypto store and signs the current device with it."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        store_dir: Path,
        password: str | None,
        listener: MatrixListener,
        pins: MasterKeyPins,
    ) -> None:
        self._client = client
        self._store_dir = store_dir
        self._password = password
        self._listener = listener
        self._pins = pins
        self._master_key: str | None = None
        self._signed_device: str | None = None  # the device this run has signed

    @property
    def master_key(self) -> str | None:
        """The public master key (None until `ensure` succeeds)."""
        return self._master_key

    async def ensure(self) -> None:
        """Create or reuse the identity and sign the device; once per device and run.

        Call after the device keys are uploaded. Raise ConfigError when the homeserver wants
        a password that is not configured, CrossSigningError when it refuses, and
        HomeserverUnavailable or RateLimited when trying again later will do.
        """
        device_id = str(self._client.device_id or "")
        if not device_id or device_id == self._signed_device:
            return
        report = await CrossSigning(
            NioHomeserver(self._client),
            user_id=str(self._client.user_id),
            device_id=device_id,
            store_dir=self._store_dir,
            password=self._password,
            device_signer=nio_device_signer(self._client),
        ).ensure()
        self._master_key = report.master_key
        self._signed_device = device_id
        log.info(
            "cross-signing identity of %s: master key %s, device %s signed",
            self._client.user_id,
            report.master_key,
            device_id,
        )
        if report.replaced is not None:
            # The bot's own identity changed on purpose: not a change to refuse its devices for.
            await self._pins.reset(str(self._client.user_id))
        if report.warning is not None:
            # Logged where it was replaced; the listener passes it on (the admin room).
            self._listener.identity_replaced(report.warning)
