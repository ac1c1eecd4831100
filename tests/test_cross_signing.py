"""The bot's cross-signing identity against a real Synapse, on bare nio clients with encryption.

What is checked is what the homeserver publishes and what another user's client reads from
it: the master key, the self-signing key signed by it, the bot's device signed by that, and
that the trust rules Element follows accept the device. Restarts, a lost device store and a
lost identity are played by removing the files a real loss would remove.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    KeysQueryResponse,
    ToDeviceMessage,
    UnknownToDeviceEvent,
)
from nio.crypto import ENCRYPTION_ENABLED

from bot.errors import ConfigError, HomeserverUnavailable
from bot.matrix.cross_signing import (
    SIGNATURES_UPLOAD,
    SIGNING_KEYS_UPLOAD,
    CrossSigning,
    IdentityReport,
    NioHomeserver,
    keys_query_answer,
    nio_device_signer,
)
from bot.matrix.identity_keys import Identity, identity_path, save_identity
from bot.matrix.trust import assess, signed_by
from bot.matrix.withheld import withheld_key
from tests.synapse_server import Account, SynapseServer

pytestmark = pytest.mark.skipif(not ENCRYPTION_ENABLED, reason="needs the e2e extra")


class Recording:
    """The real homeserver API, remembering which requests went through it."""

    def __init__(self, api: NioHomeserver) -> None:
        self.api = api
        self.paths: list[str] = []

    async def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        self.paths.append(path)
        return await self.api.request(method, path, body)

    @property
    def uploads(self) -> list[str]:
        return [path for path in self.paths if path in (SIGNING_KEYS_UPLOAD, SIGNATURES_UPLOAD)]


class Bot:
    """The bot's account: a device on a nio client with encryption, its store kept on disk."""

    def __init__(self, synapse: SynapseServer, account: Account, store: Path) -> None:
        self.synapse = synapse
        self.account = account
        self.store = store
        self.clients: list[AsyncClient] = []

    @property
    def user_id(self) -> str:
        return self.account.user_id

    @property
    def keys_file(self) -> Path:
        return identity_path(self.store, self.user_id)

    async def device(self, account: Account | None = None) -> AsyncClient:
        """A client on the account's device with its keys published, as the bot logs in."""
        account = account or self.account
        self.store.mkdir(mode=0o700, parents=True, exist_ok=True)
        client = AsyncClient(
            self.synapse.base_url,
            account.user_id,
            device_id=account.device_id,
            store_path=str(self.store),
            config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False),
        )
        self.clients.append(client)
        client.restore_login(account.user_id, account.device_id, account.access_token)
        if client.should_upload_keys:
            await client.keys_upload()
        return client

    async def ensure(
        self, client: AsyncClient, *, password: str | None = None
    ) -> tuple[IdentityReport, Recording]:
        api = Recording(NioHomeserver(client))
        identity = CrossSigning(
            api,
            user_id=client.user_id,
            device_id=client.device_id,
            store_dir=self.store,
            password=password,
            device_signer=nio_device_signer(client),
        )
        return await identity.ensure(), api

    async def new_device(self) -> AsyncClient:
        """Log in again as a new device, its predecessor's device store lost."""
        for old in self.store.glob("*.db"):
            old.unlink()
        account = await self.synapse.login_account(self.account.localpart, self.account.password)
        return await self.device(account)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


@pytest.fixture
async def bot(synapse: SynapseServer, tmp_path: Path) -> AsyncIterator[Bot]:
    localpart = synapse.unique_localpart("crieur")
    account = await synapse.register_account(localpart, f"{localpart}-secret")
    made = Bot(synapse, account, tmp_path / "matrix-store")
    yield made
    await made.close()


async def keys_seen_by_someone_else(synapse: SynapseServer, user_id: str) -> dict[str, Any]:
    """The /keys/query answer another user of the homeserver gets for `user_id`."""
    other = await synapse.register_account(synapse.unique_localpart("alice"))
    status, body = await synapse.request(
        "POST",
        "/_matrix/client/v3/keys/query",
        token=other.access_token,
        json={"device_keys": {user_id: []}},
    )
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def published_master(keys: dict[str, Any], user_id: str) -> str:
    (master,) = keys["master_keys"][user_id]["keys"].values()
    return str(master)


async def test_first_start_publishes_an_identity_without_a_password(bot: Bot) -> None:
    report, _ = await bot.ensure(await bot.device())

    assert report.created and report.uploaded and report.signed_device
    assert report.replaced is None and report.warning is None
    keys = await keys_seen_by_someone_else(bot.synapse, bot.user_id)
    assert published_master(keys, bot.user_id) == report.master_key


async def test_another_user_sees_the_device_signed_by_the_self_signing_key_signed_by_the_master(
    bot: Bot,
) -> None:
    client = await bot.device()
    report, _ = await bot.ensure(client)

    keys = await keys_seen_by_someone_else(bot.synapse, bot.user_id)
    (self_signing,) = keys["self_signing_keys"][bot.user_id]["keys"].values()
    ssk_object = keys["self_signing_keys"][bot.user_id]
    device = keys["device_keys"][bot.user_id][client.device_id]
    assert signed_by(ssk_object, bot.user_id, report.master_key, report.master_key)
    assert signed_by(device, bot.user_id, self_signing, self_signing)
    assert assess(keys, {})[bot.user_id].trusts(client.device_id)


async def test_the_device_signs_its_own_master_key(bot: Bot) -> None:
    client = await bot.device()
    report, _ = await bot.ensure(client)

    status, keys = await bot.synapse.request(
        "POST",
        "/_matrix/client/v3/keys/query",
        token=bot.account.access_token,
        json={"device_keys": {bot.user_id: []}},
    )
    assert status == 200
    master = keys["master_keys"][bot.user_id]
    device_key = client.olm.account.identity_keys["ed25519"]
    assert report.signed_master
    assert signed_by(master, bot.user_id, client.device_id, device_key)


async def test_nios_own_key_query_gives_the_trust_decision_its_cross_signing_keys(
    bot: Bot,
) -> None:
    client = await bot.device()
    report, _ = await bot.ensure(client)
    client.olm.users_for_key_query.add(bot.user_id)

    response = await client.keys_query()

    assert isinstance(response, KeysQueryResponse)
    answer = await keys_query_answer(response)
    assert answer is not None
    assert published_master(answer, bot.user_id) == report.master_key
    assert assess(answer, {})[bot.user_id].trusts(client.device_id)


async def test_private_keys_are_kept_0600_in_a_0700_directory(bot: Bot) -> None:
    await bot.ensure(await bot.device())

    assert stat.S_IMODE(bot.keys_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(bot.store.stat().st_mode) == 0o700


async def test_a_restart_reuses_the_identity_without_uploading_anything(bot: Bot) -> None:
    first, _ = await bot.ensure(await bot.device())

    again, api = await bot.ensure(await bot.device())

    assert again.master_key == first.master_key
    assert not (again.created or again.uploaded or again.signed_device or again.signed_master)
    assert api.uploads == []


async def test_a_new_device_after_a_lost_device_store_is_signed_by_the_same_identity(
    bot: Bot,
) -> None:
    first, _ = await bot.ensure(await bot.device())

    client = await bot.new_device()
    report, api = await bot.ensure(client)

    assert report.master_key == first.master_key
    assert not report.uploaded and report.signed_device
    assert SIGNING_KEYS_UPLOAD not in api.paths
    keys = await keys_seen_by_someone_else(bot.synapse, bot.user_id)
    assert assess(keys, {bot.user_id: first.master_key})[bot.user_id].trusts(client.device_id)


async def test_keys_saved_by_a_start_that_stopped_before_uploading_are_published(
    bot: Bot,
) -> None:
    saved = Identity.generate(bot.user_id)
    save_identity(bot.keys_file, saved)

    report, _ = await bot.ensure(await bot.device())

    assert report.master_key == saved.master_key
    assert report.uploaded and not report.created and report.replaced is None


async def test_a_lost_identity_is_made_again_with_the_password_and_reported(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    lost, _ = await bot.ensure(await bot.device())
    bot.keys_file.unlink()

    with caplog.at_level(logging.WARNING, logger="bot.matrix.cross_signing"):
        report, _ = await bot.ensure(await bot.device(), password=bot.account.password)

    assert report.replaced == lost.master_key and report.master_key != lost.master_key
    assert report.warning is not None and lost.master_key in report.warning
    assert report.warning in caplog.text
    keys = await keys_seen_by_someone_else(bot.synapse, bot.user_id)
    assert published_master(keys, bot.user_id) == report.master_key
    assert assess(keys, {})[bot.user_id].trusts(bot.account.device_id)


async def test_a_lost_identity_without_a_password_is_a_clear_configuration_error(
    bot: Bot,
) -> None:
    await bot.ensure(await bot.device())
    bot.keys_file.unlink()

    with pytest.raises(ConfigError) as raised:
        await bot.ensure(await bot.device())

    assert raised.value.problems[0][0] == "matrix.password"
    assert "set matrix.password" in str(raised.value)


async def test_a_wrong_password_for_a_lost_identity_is_a_clear_configuration_error(
    bot: Bot,
) -> None:
    await bot.ensure(await bot.device())
    bot.keys_file.unlink()

    with pytest.raises(ConfigError, match=r"matrix\.password: refused"):
        await bot.ensure(await bot.device(), password="not-the-password")


async def test_an_unreachable_homeserver_is_reported_as_unavailable(tmp_path: Path) -> None:
    client = AsyncClient("http://127.0.0.1:9", "@crieur:localhost")
    try:
        with pytest.raises(HomeserverUnavailable):
            await NioHomeserver(client, timeout=5).request("POST", "/_matrix/client/v3/keys/query")
    finally:
        await client.close()


async def test_nio_hands_a_withheld_room_key_over_as_an_unknown_to_device_event(
    bot: Bot, matrix_client: Any
) -> None:
    receiver = await bot.device()
    sender = await matrix_client("alice")
    content = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": "!room:localhost",
        "session_id": "session",
        "sender_key": "key",
        "from_device": sender.device_id,
        "code": "m.unverified",
        "reason": "The sender disabled sending keys to unverified devices.",
    }
    message = ToDeviceMessage("m.room_key.withheld", bot.user_id, receiver.device_id, content)
    await sender.to_device(message)

    response = await receiver.sync(timeout=0)

    (event,) = response.to_device_events
    assert isinstance(event, UnknownToDeviceEvent)
    withheld = withheld_key(event)
    assert withheld is not None
    assert withheld.log_line() == (
        f"{sender.user_id} (device {sender.device_id}) withheld a room key in "
        "!room:localhost for session session: m.unverified: "
        "The sender disabled sending keys to unverified devices."
    )
