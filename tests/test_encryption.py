"""Encrypted rooms, end to end: a real Synapse, the whole bot in this process, and people on
real nio clients with encryption on and crypto stores of their own, each cross-signed by an
identity of their own (as Element users are), unless a test says otherwise.

What is checked is what those people see: the bot's events in an encrypted room are
`m.room.encrypted` on the homeserver, and each person's client decrypts them to the expected
text, also after the bot restarts and for someone who joined later; a device whose identity
key changes gets nothing more; undecryptable events are counted and skipped. The configuration
side (the default, a missing e2e extra, the trust policy) is checked without Synapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
from nio import AsyncClient, AsyncClientConfig, Event, ToDeviceMessage
from nio.crypto import ENCRYPTION_ENABLED
from prometheus_client.parser import text_string_to_metric_families

from bot.commands.trust import short_key
from bot.config import MatrixConfig
from bot.errors import ConfigError
from bot.i18n import t
from bot.matrix import MatrixBot
from bot.matrix.cross_signing import CrossSigning, NioHomeserver, nio_device_signer
from bot.matrix.identity_keys import Identity, identity_path
from bot.store import Store
from tests.e2e_support import (
    WAIT,
    BotWaits,
    Feeds,
    RunningBot,
    bot_account,
    config_data,
    content,
    eventually,
    load,
    reply_of,
    send_encrypted,
    sender,
    unless_stopped,
    wait_for_membership,
)
from tests.feed_server import FeedServer
from tests.synapse_server import Account, SynapseServer

T = TypeVar("T")

needs_e2e = pytest.mark.skipif(not ENCRYPTION_ENABLED, reason="needs the e2e extra")

ORG = "april"


class Crieur(BotWaits):
    """The bot under test, with a database (and crypto store) that outlive its restarts."""

    def __init__(self, synapse: SynapseServer, account: Account, feeds: Feeds, tmp: Path) -> None:
        self.synapse = synapse
        self.account = account
        self.feeds = feeds
        self.tmp = tmp
        self.running: RunningBot | None = None

    async def start(self, http: dict[str, Any] | None = None, **matrix: Any) -> None:
        data = config_data(
            http=http,
            synapse=self.synapse,
            account=self.account,
            feeds=self.feeds,
            database=self.tmp / "crieur.sqlite3",
            organisations=[ORG],
            accept_invites_from=[_server(self.account.user_id)],
        )
        data["matrix"].update(matrix)
        self.running = await RunningBot(load(data, self.tmp)).start()

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop()
            self.running = None

    async def guard(self, awaitable: Awaitable[T]) -> T:
        task = self.running.task if self.running is not None else None
        return await unless_stopped(awaitable, [task] if task is not None else [])


class Person:
    """A user on a nio client with encryption, its crypto store under the test's directory."""

    def __init__(self, synapse: SynapseServer, account: Account, store: Path) -> None:
        store.mkdir(parents=True)
        self.synapse = synapse
        self.account = account
        self.store = store
        self.client = AsyncClient(
            synapse.base_url,
            account.user_id,
            device_id=account.device_id,
            store_path=str(store),
            config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False),
        )
        self.client.restore_login(account.user_id, account.device_id, account.access_token)

    @property
    def user_id(self) -> str:
        return self.account.user_id

    async def sync(self) -> None:
        """Sync once (room keys arrive as to-device messages) and publish this device's keys."""
        await self.client.sync(timeout=0)
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        if self.client.should_query_keys:
            await self.client.keys_query()

    async def cross_sign(self, *, new_identity: bool = False) -> str:
        """Sign this device with a cross-signing identity (a new one if asked); its master key.

        The same library as the bot's, on the person's own keys: nio cannot cross-sign.
        """
        if new_identity:
            identity_path(self.store, self.user_id).unlink()
        report = await CrossSigning(
            NioHomeserver(self.client),
            user_id=self.user_id,
            device_id=self.account.device_id,
            store_dir=self.store,
            password=self.account.password,
            device_signer=nio_device_signer(self.client),
        ).ensure()
        return report.master_key

    async def send(self, room_id: str, body: str) -> str:
        """Send an encrypted text message; return its event id."""
        await self.sync()
        return await send_encrypted(self.client, room_id, body)

    async def decrypted(self, room_id: str, bot: str) -> list[Event]:
        """The bot's messages in the room that this client decrypted, oldest first."""
        await self.sync()
        events = await SynapseServer.timeline(self.client, room_id)
        return [event for event in events if event.decrypted and sender(event) == bot]

    async def wait_decrypted(
        self, room_id: str, bot: str, found: Callable[[list[Event]], Event | None]
    ) -> Event:
        """Wait until a decrypted message of the bot satisfies `found`; return it."""
        result: list[Event] = []

        async def check() -> bool:
            event = found(await self.decrypted(room_id, bot))
            if event is not None:
                result.append(event)
            return event is not None

        await eventually(check, WAIT, what=f"a message {self.user_id} can decrypt", interval=0.3)
        return result[0]

    async def raw(self, room_id: str, event_id: str) -> dict[str, Any]:
        """The event as the homeserver stores it, not decrypted."""
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(event_id)}"
        status, body = await self.synapse.request("GET", path, token=self.account.access_token)
        assert status == 200, body
        assert isinstance(body, dict)
        return body


def _server(user_id: str) -> str:
    return user_id.partition(":")[2]


def answering(event_id: str) -> Callable[[list[Event]], Event | None]:
    return lambda events: next((event for event in events if reply_of(event) == event_id), None)


def announcing(title: str) -> Callable[[list[Event]], Event | None]:
    def find(events: list[Event]) -> Event | None:
        for event in events:
            body = str(content(event).get("body", ""))
            if reply_of(event) is None and title in body.splitlines():
                return event
        return None

    return find


async def published_master_key(reader: Person, user_id: str) -> str:
    """The master cross-signing key `user_id` has published, as `reader` queries it."""
    status, body = await reader.synapse.request(
        "POST",
        "/_matrix/client/v3/keys/query",
        token=reader.account.access_token,
        json={"device_keys": {user_id: []}},
    )
    assert status == 200, body
    (key,) = body["master_keys"][user_id]["keys"].values()
    return str(key)


async def bot_devices(synapse: SynapseServer, user_id: str) -> set[str]:
    admin = await synapse.admin_account()
    status, body = await synapse.request(
        "GET", f"/_synapse/admin/v2/users/{quote(user_id)}/devices", token=admin.access_token
    )
    assert status == 200, body
    return {device["device_id"] for device in body["devices"]}


@pytest.fixture
async def crieur(
    synapse: SynapseServer, feed_server: FeedServer, tmp_path: Path
) -> AsyncIterator[Crieur]:
    made = Crieur(synapse, await bot_account(synapse), Feeds(feed_server), tmp_path / "bot")
    made.tmp.mkdir()
    yield made
    await made.stop()


@pytest.fixture
async def people(synapse: SynapseServer, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Person] = []

    async def make(name: str, *, cross_signed: bool = True) -> Person:
        account = await synapse.register_account(synapse.unique_localpart(name))
        person = Person(synapse, account, tmp_path / "people" / account.localpart)
        made.append(person)
        await person.sync()
        if cross_signed:
            await person.cross_sign()
        return person

    yield make
    for person in made:
        await person.client.close()


async def encrypted_room_with_bot(owner: Person, crieur: Crieur) -> str:
    room_id = await SynapseServer.create_room(
        owner.client, invite=[crieur.user_id], join=False, encrypted=True
    )
    await crieur.guard(wait_for_membership(owner.client, room_id, crieur.user_id, "join"))
    return room_id


@needs_e2e
async def test_commands_and_announcements_are_encrypted_and_survive_a_restart(
    synapse: SynapseServer, crieur: Crieur, people: Callable[..., Awaitable[Person]]
) -> None:
    alice = await people("alice")
    await crieur.start()
    await crieur.wait_seeded(ORG)
    room_id = await encrypted_room_with_bot(alice, crieur)

    command_id = await crieur.guard(alice.send(room_id, "!subscribe april"))
    reply = await crieur.guard(alice.wait_decrypted(room_id, crieur.user_id, answering(command_id)))
    assert content(reply)["body"] == t("fr", "subscribe.done", names="April")

    title = crieur.feeds.publish(ORG, "April : nouvelle campagne d'adhésion")
    post = await crieur.guard(alice.wait_decrypted(room_id, crieur.user_id, announcing(title)))
    for event in (reply, post):
        raw = await alice.raw(room_id, event.event_id)
        assert raw["type"] == "m.room.encrypted"
        assert "ciphertext" in raw["content"] and "body" not in raw["content"]
    sender_key = (await alice.raw(room_id, post.event_id))["content"]["sender_key"]
    devices = await bot_devices(synapse, crieur.user_id)

    await crieur.stop()
    late = crieur.feeds.publish(ORG, "April : l'assemblée générale est reportée")
    await crieur.start()
    after = await crieur.guard(alice.wait_decrypted(room_id, crieur.user_id, announcing(late)))
    raw = await alice.raw(room_id, after.event_id)
    assert raw["type"] == "m.room.encrypted"
    # Same device, same identity key: the restart reused the device and its crypto store.
    assert raw["content"]["sender_key"] == sender_key
    assert await bot_devices(synapse, crieur.user_id) == devices
    # Exactly once: each entry was posted one time, restart or not.
    posted = await alice.decrypted(room_id, crieur.user_id)
    assert len([e for e in posted if announcing(title)([e])]) == 1
    assert len([e for e in posted if announcing(late)([e])]) == 1


@needs_e2e
async def test_a_member_who_joins_later_decrypts_what_is_sent_after(
    synapse: SynapseServer, crieur: Crieur, people: Callable[..., Awaitable[Person]]
) -> None:
    alice, bob = await people("alice"), await people("bob")
    await crieur.start()
    await crieur.wait_seeded(ORG)
    room_id = await encrypted_room_with_bot(alice, crieur)
    command_id = await crieur.guard(alice.send(room_id, "!subscribe april"))
    await crieur.guard(alice.wait_decrypted(room_id, crieur.user_id, answering(command_id)))
    before = crieur.feeds.publish(ORG, "April : avant l'arrivée de Bob")
    await crieur.guard(alice.wait_decrypted(room_id, crieur.user_id, announcing(before)))

    await alice.client.room_invite(room_id, bob.user_id)
    await SynapseServer.join(bob.client, room_id)
    # Bob's command comes after his join: answering it, the bot knows he is a member.
    status_id = await crieur.guard(bob.send(room_id, "!status"))
    status = await crieur.guard(bob.wait_decrypted(room_id, crieur.user_id, answering(status_id)))
    assert t("fr", "status.encryption_on_encrypted") in content(status)["body"]
    master = await published_master_key(bob, crieur.user_id)
    identity = t("fr", "status.identity", master_key=short_key(master), policy="cross-signed")
    assert identity in content(status)["body"].splitlines()

    after = crieur.feeds.publish(ORG, "April : bienvenue aux nouveaux membres")
    for person in (bob, alice):
        await crieur.guard(person.wait_decrypted(room_id, crieur.user_id, announcing(after)))
    # Megolm keys are shared from the join on: what came before stays unreadable to Bob.
    assert announcing(before)(await bob.decrypted(room_id, crieur.user_id)) is None


@needs_e2e
async def test_with_encryption_off_an_encrypted_room_is_told_and_nothing_breaks(
    synapse: SynapseServer, crieur: Crieur, people: Callable[..., Awaitable[Person]]
) -> None:
    alice = await people("alice")
    await crieur.start(encryption=False)
    room_id = await encrypted_room_with_bot(alice, crieur)

    def notice(events: list[Event]) -> bool:
        return any(
            sender(event) == crieur.user_id
            and content(event).get("msgtype") == "m.notice"
            and content(event).get("body") == t("fr", "bot.encryption_off")
            for event in events
        )

    events = await crieur.guard(SynapseServer.wait_for_messages(alice.client, room_id, notice))
    notices = [event for event in events if sender(event) == crieur.user_id]
    assert len(notices) == 1 and not notices[0].decrypted  # sent in clear, once

    # The bot keeps working elsewhere, and says that encryption is off.
    plain = await SynapseServer.create_room(alice.client, invite=[crieur.user_id], join=False)
    await crieur.guard(wait_for_membership(alice.client, plain, crieur.user_id, "join"))
    await alice.sync()  # nio sends only into rooms it has synced
    _, reply = await crieur.command(alice.client, plain, "!status")
    assert t("fr", "status.encryption_off") in content(reply)["body"]
    assert crieur.running is not None and crieur.running.task is not None
    assert not crieur.running.task.done()


@needs_e2e
@pytest.mark.parametrize("trust", ["tofu", "all"])
async def test_a_device_whose_identity_key_changes_is_trusted_only_under_all(
    synapse: SynapseServer,
    crieur: Crieur,
    people: Callable[..., Awaitable[Person]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    trust: str,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.matrix")
    alice, bob = await people("alice"), await people("bob")
    await crieur.start(trust=trust)
    await crieur.wait_seeded(ORG)
    room_id = await encrypted_room_with_bot(alice, crieur)
    await alice.client.room_invite(room_id, bob.user_id)
    await SynapseServer.join(bob.client, room_id)
    await crieur.guard(alice.send(room_id, "!subscribe april"))
    command_id = await crieur.guard(bob.send(room_id, "!help"))
    await crieur.guard(bob.wait_decrypted(room_id, crieur.user_id, answering(command_id)))
    assert f"trusting device {bob.account.device_id} of {bob.user_id} on first use" in caplog.text

    # Bob's device id comes back with other keys (a client that lost its storage, or not Bob).
    impostor = Person(synapse, bob.account, tmp_path / "impostor")
    try:
        await impostor.client.sync(timeout=0)  # loads its own fresh crypto store
        keys = impostor.client.olm.share_keys()["device_keys"]
        status, body = await synapse.request(
            "POST",
            "/_matrix/client/v3/keys/upload",
            token=bob.account.access_token,
            json={"device_keys": keys},
        )
        assert status == 200, body
        device = f"device {bob.account.device_id} of {bob.user_id}"
        changed = {
            "tofu": f"{device} changed its identity key",
            "all": f"{device} has a new identity key; trusted",
        }[trust]
        await crieur.guard(
            eventually(lambda: changed in caplog.text, WAIT, what="the key change noticed")
        )

        # The others go on receiving, in a new session.
        title = crieur.feeds.publish(ORG, "April : après le changement de clé de Bob")
        await crieur.guard(alice.wait_decrypted(room_id, crieur.user_id, announcing(title)))
        if trust == "tofu":
            assert announcing(title)(await impostor.decrypted(room_id, crieur.user_id)) is None
    finally:
        await impostor.client.close()


@needs_e2e
async def test_an_encrypted_send_repeated_after_a_restart_posts_once(
    synapse: SynapseServer, people: Callable[..., Awaitable[Person]], tmp_path: Path
) -> None:
    alice = await people("alice")
    account = await bot_account(synapse)
    config = MatrixConfig(
        homeserver=synapse.base_url,
        user_id=account.user_id,
        password=account.password,
        encryption=True,
        accept_invites_from=(alice.user_id,),
    )
    store = await Store.open(tmp_path / "crieur.sqlite3")
    content = {"msgtype": "m.notice", "body": "April : une seule fois"}
    room_id = await SynapseServer.create_room(
        alice.client, invite=[account.user_id], join=False, encrypted=True
    )

    async def run_and_send() -> str:
        bot = MatrixBot(config, store, data_dir=tmp_path / "matrix", region_rooms={})
        try:
            await bot.start()
            sync = asyncio.create_task(bot.sync_forever())
            try:
                await wait_for_membership(alice.client, room_id, account.user_id, "join")
                await eventually(lambda: bot.room_encrypted(room_id) is True)
            finally:
                sync.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sync
            return await bot.send_notice(room_id, dict(content), "crieur.once")
        finally:
            await bot.close()

    try:
        # The second run plays a restart after a send the bot could not record.
        event_ids = [await run_and_send(), await run_and_send()]
    finally:
        await store.close()

    assert event_ids[0] == event_ids[1]
    raw = await alice.raw(room_id, event_ids[0])
    assert raw["type"] == "m.room.encrypted"
    await alice.wait_decrypted(room_id, account.user_id, lambda events: next(iter(events), None))
    bodies = [
        str(event.source["content"]["body"])
        for event in await alice.decrypted(room_id, account.user_id)
    ]
    assert bodies == [content["body"]]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def counter(listen: str, name: str) -> float:
    """The value of the counter `name` (without `_total`) on the bot's metrics page."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"http://{listen}/metrics") as response,
    ):
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == name
        for sample in family.samples
        if sample.name == f"{name}_total"
    )


async def undecryptable_count(listen: str) -> float:
    return await counter(listen, "crieur_undecryptable_events")


@needs_e2e
async def test_an_undecryptable_message_is_counted_and_the_bot_goes_on(
    crieur: Crieur, people: Callable[..., Awaitable[Person]]
) -> None:
    alice = await people("alice")
    listen = f"127.0.0.1:{free_port()}"
    await crieur.start(http={"listen": listen})
    room_id = await encrypted_room_with_bot(alice, crieur)
    assert await undecryptable_count(listen) == 0

    # Alice withholds the room key from the bot's device: the bot gets a message it cannot read.
    await alice.client.joined_members(room_id)
    await alice.sync()  # queries the keys of the members she now knows
    (device,) = alice.client.device_store.active_user_devices(crieur.user_id)
    alice.client.blacklist_device(device)
    await alice.send(room_id, "!help")
    await crieur.guard(
        eventually(lambda: _at_least(undecryptable_count(listen), 1), WAIT, what="a count")
    )

    # Given keys again (a new session), the bot still reads and answers commands.
    alice.client.unblacklist_device(device)
    alice.client.invalidate_outbound_session(room_id)
    command_id = await crieur.guard(alice.send(room_id, "!help"))
    await crieur.guard(alice.wait_decrypted(room_id, crieur.user_id, answering(command_id)))
    assert await undecryptable_count(listen) == 1


async def _at_least(count: Awaitable[float], minimum: float) -> bool:
    return await count >= minimum


async def members(owner: Person, room_id: str, *others: Person) -> None:
    """Invite and join `others` to the owner's room."""
    for person in others:
        await owner.client.room_invite(room_id, person.user_id)
        await SynapseServer.join(person.client, room_id)


@needs_e2e
async def test_a_command_from_a_device_not_cross_signed_is_not_run(
    crieur: Crieur, people: Callable[..., Awaitable[Person]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.matrix")
    alice = await people("alice")
    mallory = await people("mallory", cross_signed=False)
    listen = f"127.0.0.1:{free_port()}"
    await crieur.start(http={"listen": listen})  # matrix.trust: cross-signed, the default
    room_id = await encrypted_room_with_bot(alice, crieur)
    await members(alice, room_id, mallory)

    ignored = await crieur.guard(mallory.send(room_id, "!help"))

    await crieur.guard(
        eventually(
            lambda: _at_least(counter(listen, "crieur_untrusted_commands"), 1),
            WAIT,
            what="a command left unrun",
        )
    )
    assert f"not running command 'help' from {mallory.user_id} in {room_id}" in caplog.text
    # Alice's device is cross-signed: her command runs; the answer is not for Mallory's device.
    command_id = await crieur.guard(alice.send(room_id, "!help"))
    await crieur.guard(alice.wait_decrypted(room_id, crieur.user_id, answering(command_id)))
    assert answering(ignored)(await alice.decrypted(room_id, crieur.user_id)) is None
    assert await mallory.decrypted(room_id, crieur.user_id) == []


@needs_e2e
async def test_a_withheld_room_key_is_logged_with_its_reason_and_counted(
    crieur: Crieur, people: Callable[..., Awaitable[Person]], caplog: pytest.LogCaptureFixture
) -> None:
    alice = await people("alice")
    listen = f"127.0.0.1:{free_port()}"
    await crieur.start(http={"listen": listen})
    room_id = await encrypted_room_with_bot(alice, crieur)
    await alice.client.joined_members(room_id)
    await alice.sync()
    (device,) = alice.client.device_store.active_user_devices(crieur.user_id)
    alice.client.blacklist_device(device)
    await alice.client.share_group_session(room_id, ignore_unverified_devices=True)
    session_id = alice.client.olm.outbound_group_sessions[room_id].id
    reason = "The sender disabled sending keys to unverified devices."
    withheld = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": room_id,
        "session_id": session_id,
        "sender_key": alice.client.olm.account.identity_keys["curve25519"],
        "from_device": alice.account.device_id,
        "code": "m.unverified",
        "reason": reason,
    }
    # As Element does, Alice's client tells the bot's device why it gets no key.
    await alice.client.to_device(
        ToDeviceMessage("m.room_key.withheld", crieur.user_id, device.id, withheld)
    )

    await alice.send(room_id, "!help")

    await crieur.guard(
        eventually(
            lambda: _at_least(counter(listen, "crieur_withheld_room_keys"), 1),
            WAIT,
            what="a withheld key counted",
        )
    )
    assert (
        f"{alice.user_id} (device {alice.account.device_id}) withheld a room key in {room_id} "
        f"for session {session_id}: m.unverified: {reason}"
    ) in caplog.text
    await crieur.guard(eventually(lambda: "the sender withheld its room key" in caplog.text, WAIT))
    assert "no room key for it" not in caplog.text
    assert await counter(listen, "crieur_withheld_room_keys") == 1


@needs_e2e
async def test_a_new_identity_is_trusted_again_once_an_admin_resets_it(
    crieur: Crieur, people: Callable[..., Awaitable[Person]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.matrix")
    alice, admin = await people("alice"), await people("admin")
    await crieur.start(admins=[admin.user_id])
    room_id = await encrypted_room_with_bot(alice, crieur)
    await members(alice, room_id, admin)
    first = await crieur.guard(alice.send(room_id, f"!trust reset {admin.user_id}"))
    refused = await crieur.guard(alice.wait_decrypted(room_id, crieur.user_id, answering(first)))
    assert content(refused)["body"] == t("fr", "error.admins_only")
    old = await published_master_key(admin, alice.user_id)

    await alice.cross_sign(new_identity=True)  # a reset of her identity, or someone else
    changed = f"the cross-signing identity of {alice.user_id} changed"
    await crieur.guard(eventually(lambda: changed in caplog.text, WAIT, what="the change seen"))
    ignored = await crieur.guard(alice.send(room_id, "!help"))
    await crieur.guard(
        eventually(lambda: f"not running command 'help' from {alice.user_id}" in caplog.text)
    )

    reset = await crieur.guard(admin.send(room_id, f"!trust reset {alice.user_id}"))
    done = await crieur.guard(admin.wait_decrypted(room_id, crieur.user_id, answering(reset)))
    assert content(done)["body"] == t(
        "fr", "trust.reset_done", user=alice.user_id, master_key=short_key(old)
    )
    again = await crieur.guard(alice.send(room_id, "!help"))
    await crieur.guard(alice.wait_decrypted(room_id, crieur.user_id, answering(again)))
    assert answering(ignored)(await alice.decrypted(room_id, crieur.user_id)) is None


@needs_e2e
async def test_replacing_an_identity_without_the_password_stops_the_bot_with_one_clear_line(
    synapse: SynapseServer, tmp_path: Path
) -> None:
    account = await bot_account(synapse)
    # The account publishes an identity whose keys the bot does not hold (made by another
    # client, or its keys file lost): replacing it needs the password, and only a token is set.
    status, body = await synapse.request(
        "POST",
        "/_matrix/client/v3/keys/device_signing/upload",
        token=account.access_token,
        json=Identity.generate(account.user_id).upload_body(),
    )
    assert status == 200, body
    config = MatrixConfig(
        homeserver=synapse.base_url,
        user_id=account.user_id,
        access_token=account.access_token,
        encryption=True,
    )
    store = await Store.open(tmp_path / "crieur.sqlite3")
    bot = MatrixBot(config, store, data_dir=tmp_path / "matrix", region_rooms={})
    try:
        with pytest.raises(ConfigError) as caught:
            await bot.start()
    finally:
        await bot.close()
        await store.close()

    (line,) = caught.value.lines()
    assert line.startswith(
        "matrix.password: needed to replace the bot's cross-signing identity, which the "
        "homeserver protects: set matrix.password"
    ), line
