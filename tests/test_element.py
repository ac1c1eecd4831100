"""Crieur in encrypted rooms as Element sees it since 2026 (MSC4153, issue 15).

The people here use matrix-js-sdk with Rust crypto in ``OnlySignedDevicesIsolationMode``, as
Element does: they share room keys only with devices their owner has cross-signed and refuse to
show what any other device sends. The bot, run in this process against the suite's Synapse with
encryption on, must therefore have a cross-signing identity of its own, keep it across restarts,
and (``matrix.trust: cross-signed``) give room keys only to cross-signed devices.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.i18n import t
from tests.e2e_support import (
    BotWaits,
    Feeds,
    RunningBot,
    bot_account,
    config_data,
    load,
    unless_stopped,
)
from tests.feed_server import FeedServer
from tests.js_client import NO_KEY, JsClient, JsMessage, JsUserFactory, failing
from tests.synapse_server import Account, SynapseServer

T = TypeVar("T")

ORG = "april"  # region "france" in the test catalogue
REGION = "france"


class Crieur(BotWaits):
    """The bot under test; its database and crypto store outlive its restarts."""

    def __init__(self, synapse: SynapseServer, account: Account, feeds: Feeds, tmp: Path) -> None:
        self.synapse = synapse
        self.account = account
        self.feeds = feeds
        self.tmp = tmp
        self.running: RunningBot | None = None
        self._rooms: Sequence[str] = ()
        self._matrix: dict[str, Any] = {}

    async def start(self, *, rooms: Sequence[str] = (), **matrix: Any) -> None:
        """Start the bot; ``rooms`` follow the organisation's region from the start."""
        self._rooms, self._matrix = rooms, matrix
        data = config_data(
            synapse=self.synapse,
            account=self.account,
            feeds=self.feeds,
            database=self.tmp / "crieur.sqlite3",
            organisations=[ORG],
            rooms={REGION: list(rooms)},
            accept_invites_from=[self.account.user_id.partition(":")[2]],
        )
        data["matrix"].update(matrix)
        self.running = await RunningBot(load(data, self.tmp)).start()

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop()
            self.running = None

    async def restart(self) -> None:
        """Stop the bot and start it again with the same configuration and data."""
        await self.stop()
        await self.start(rooms=self._rooms, **self._matrix)

    async def guard(self, awaitable: Awaitable[T]) -> T:
        task = self.running.task if self.running is not None else None
        return await unless_stopped(awaitable, [task] if task is not None else [])


@pytest.fixture
async def crieur(
    synapse: SynapseServer, feed_server: FeedServer, tmp_path: Path
) -> AsyncIterator[Crieur]:
    made = Crieur(synapse, await bot_account(synapse), Feeds(feed_server), tmp_path / "bot")
    made.tmp.mkdir()
    yield made
    await made.stop()


def answering(event_id: str) -> Callable[[list[JsMessage]], JsMessage | None]:
    """Find the decrypted answer to the message ``event_id``."""
    return lambda messages: next(
        (m for m in messages if m.decrypted and m.in_reply_to == event_id), None
    )


def announcing(title: str) -> Callable[[list[JsMessage]], JsMessage | None]:
    """Find the decrypted announcement of the entry ``title``."""
    return lambda messages: next(
        (
            m
            for m in messages
            if m.decrypted and m.in_reply_to is None and title in (m.body or "").splitlines()
        ),
        None,
    )


def trusted(message: JsMessage) -> bool:
    """Element draws no red shield beside the message."""
    return message.shield is not None and message.shield.colour != "red"


async def announced(crieur: Crieur, reader: JsClient, room_id: str, title: str) -> JsMessage:
    """Wait until ``reader`` has decrypted the bot's announcement of ``title``; return it."""
    return await crieur.guard(
        reader.wait_messages(
            room_id, crieur.user_id, announcing(title), what=f"announcement of {title!r}"
        )
    )


async def room_with_bot(crieur: Crieur, owner: JsClient, *members: JsClient) -> str:
    """An encrypted room of ``owner``, the members joined and the bot invited (not joined)."""
    room_id = await owner.create_room(invite=[crieur.user_id, *(m.user_id for m in members)])
    for member in members:
        await member.join(room_id)
        await owner.wait_membership(room_id, member.user_id)
    return room_id


async def following_room(crieur: Crieur, owner: JsClient, *members: JsClient, **matrix: Any) -> str:
    """A room that follows the organisation's region, the bot started, joined and seeded."""
    room_id = await room_with_bot(crieur, owner, *members)
    await crieur.start(rooms=[room_id], **matrix)
    await crieur.guard(owner.wait_membership(room_id, crieur.user_id))
    await crieur.wait_seeded(ORG)
    return room_id


async def master_key(synapse: SynapseServer, reader: JsClient, user_id: str) -> str | None:
    """The master cross-signing key ``user_id`` has published, as any user can query it."""
    status, body = await synapse.request(
        "POST",
        "/_matrix/client/v3/keys/query",
        token=reader.access_token,
        json={"device_keys": {user_id: []}},
    )
    assert status == 200, body
    keys = body.get("master_keys", {}).get(user_id, {}).get("keys", {})
    return next(iter(keys.values()), None)


async def test_a_moderators_encrypted_subscribe_is_answered_and_the_answer_decrypts(
    crieur: Crieur, js_user: JsUserFactory
) -> None:
    alice = await js_user("alice")
    room_id = await room_with_bot(crieur, alice)
    await crieur.start()
    await crieur.guard(alice.wait_membership(room_id, crieur.user_id))

    command_id = await alice.send(room_id, "!subscribe april")

    answer = await crieur.guard(
        alice.wait_messages(
            room_id, crieur.user_id, answering(command_id), what="answer to !subscribe"
        )
    )
    assert answer.body == t("fr", "subscribe.done", names="April")
    assert trusted(answer), answer


async def test_an_announcement_decrypts_with_no_red_shield(
    crieur: Crieur, js_user: JsUserFactory
) -> None:
    alice = await js_user("alice")
    room_id = await following_room(crieur, alice)

    title = crieur.feeds.publish(ORG, "April : campagne d'adhésion 2026")

    message = await announced(crieur, alice, room_id, title)
    assert message.msgtype == "m.notice"
    assert trusted(message), message


async def test_after_a_restart_the_bot_keeps_its_identity_and_its_announcements_decrypt(
    synapse: SynapseServer, crieur: Crieur, js_user: JsUserFactory
) -> None:
    alice = await js_user("alice")
    room_id = await following_room(crieur, alice)
    before = crieur.feeds.publish(ORG, "April : avant le redémarrage")
    await announced(crieur, alice, room_id, before)
    identity = await master_key(synapse, alice, crieur.user_id)
    assert identity is not None, "the bot has published no cross-signing identity"

    await crieur.restart()
    after = crieur.feeds.publish(ORG, "April : après le redémarrage")

    message = await announced(crieur, alice, room_id, after)
    assert trusted(message), message
    assert await master_key(synapse, alice, crieur.user_id) == identity
    seen = await alice.devices(crieur.user_id)
    assert seen["needs_user_approval"] is False, seen  # the identity Alice pinned is unchanged
    assert all(device["signed_by_owner"] for device in seen["devices"]), seen


async def test_a_member_who_joins_later_decrypts_the_next_announcement(
    crieur: Crieur, js_user: JsUserFactory
) -> None:
    alice = await js_user("alice")
    room_id = await following_room(crieur, alice)
    first = crieur.feeds.publish(ORG, "April : avant l'arrivée de Bob")
    await announced(crieur, alice, room_id, first)

    bob = await js_user("bob")
    await alice.invite(room_id, bob.user_id)
    await bob.join(room_id)
    # Bob's command comes after his join: answering it, the bot knows he is a member.
    status_id = await bob.send(room_id, "!status")
    await crieur.guard(
        bob.wait_messages(room_id, crieur.user_id, answering(status_id), what="answer to !status")
    )
    title = crieur.feeds.publish(ORG, "April : bienvenue à Bob")

    for reader in (bob, alice):
        message = await announced(crieur, reader, room_id, title)
        assert trusted(message), message


async def test_with_cross_signed_trust_a_device_not_cross_signed_gets_no_room_key(
    crieur: Crieur, js_user: JsUserFactory
) -> None:
    alice = await js_user("alice")
    # Eve's client reads every device's messages: if she cannot, it is for want of a key.
    eve = await js_user("eve", cross_signed=False, isolation="all")
    room_id = await following_room(crieur, alice, eve, trust="cross-signed")

    title = crieur.feeds.publish(ORG, "April : réservé aux appareils vérifiés")

    message = await announced(crieur, alice, room_id, title)
    assert trusted(message), message
    refused = await crieur.guard(
        eve.wait_messages(room_id, crieur.user_id, failing(message.event_id))
    )
    assert refused.failure in NO_KEY, refused
    await crieur.quiet(ORG)  # a key sent late would have arrived by now
    (still,) = [
        m for m in await eve.messages(room_id, crieur.user_id) if m.event_id == message.event_id
    ]
    assert still.failure in NO_KEY and still.body is None, still
