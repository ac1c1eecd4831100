"""The Matrix side against a real Synapse: login and device, joins, invites, commands, sending."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient, AsyncClientConfig, Event
from nio.crypto import ENCRYPTION_ENABLED

from bot.config import MatrixConfig
from bot.errors import HomeserverUnavailable, RateLimited, RoomUnavailable
from bot.matrix import CREATOR_POWER, CommandHandler, CommandView, MatrixBot
from bot.model import Entry
from bot.store import Store
from tests.e2e_support import eventually, membership, wait_for_membership
from tests.synapse_server import Account, ClientFactory, SynapseServer

REGION = "ile-de-france"
WAIT = 15.0

needs_e2e = pytest.mark.skipif(not ENCRYPTION_ENABLED, reason="needs the e2e extra")


@dataclass(frozen=True)
class Said:
    """An answer, as the command handler gives it."""

    text: str
    html: str | None


@dataclass
class Recorder:
    """A command handler that records what it is given and answers every command."""

    calls: list[tuple[str, str, str, str]] = field(default_factory=list)
    fail_on: str | None = None

    @property
    def bodies(self) -> list[str]:
        return [body for _, _, _, body in self.calls]

    async def __call__(
        self, room: CommandView, room_id: str, sender: str, event_id: str, body: str
    ) -> Said:
        self.calls.append((room_id, sender, event_id, body))
        if body == self.fail_on:
            raise RuntimeError(f"{body} went wrong")
        return Said(f"ok {body}", f"<b>ok</b> {body}")


class Bots:
    """Makes MatrixBots for one bot account and one store; runs and stops them."""

    def __init__(self, server: SynapseServer, account: Account, store: Store, data: Path) -> None:
        self.server = server
        self.account = account
        self.store = store
        self.data = data
        self.config = MatrixConfig(
            homeserver=server.base_url, user_id=account.user_id, password=account.password
        )
        self._bots: list[MatrixBot] = []
        self._tasks: dict[MatrixBot, asyncio.Task[None]] = {}

    @property
    def user_id(self) -> str:
        return self.account.user_id

    def make(
        self,
        *,
        rooms: Sequence[str] = (),
        commands: CommandHandler | None = None,
        **config: Any,
    ) -> MatrixBot:
        bot = MatrixBot(
            replace(self.config, **config),
            self.store,
            data_dir=self.data,
            region_rooms={REGION: list(rooms)},
            commands=commands,
        )
        self._bots.append(bot)
        return bot

    async def run(self, bot: MatrixBot) -> MatrixBot:
        """Start the bot and its sync loop."""
        await bot.start()
        self.loop(bot)
        return bot

    def loop(self, bot: MatrixBot) -> None:
        """Run the sync loop of a started bot until the test ends."""
        self._tasks[bot] = asyncio.create_task(bot.sync_forever())

    async def stop(self, bot: MatrixBot) -> None:
        task = self._tasks.pop(bot, None)
        if task is not None:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        if bot in self._bots:
            self._bots.remove(bot)
            await bot.close()

    async def stop_all(self) -> None:
        for bot in list(self._bots):
            await self.stop(bot)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "crieur.sqlite3")
    yield db
    await db.close()


async def bots_on(server: SynapseServer, store: Store, data: Path) -> Bots:
    account = await server.register_account(server.unique_localpart("crieur"))
    return Bots(server, account, store, data)


@pytest.fixture
async def bots(synapse: SynapseServer, store: Store, tmp_path: Path) -> AsyncIterator[Bots]:
    made = await bots_on(synapse, store, tmp_path / "data")
    yield made
    await made.stop_all()


@pytest.fixture
async def alice(matrix_client: ClientFactory) -> AsyncClient:
    return await matrix_client("alice")


def replies_to(event_id: str) -> Callable[[list[Event]], bool]:
    def check(events: list[Event]) -> bool:
        return any(reply_of(event) == event_id for event in events)

    return check


def reply_of(event: Event) -> str | None:
    relation = event.source.get("content", {}).get("m.relates_to", {})
    target = relation.get("m.in_reply_to", {}).get("event_id")
    return target if isinstance(target, str) else None


async def devices(server: SynapseServer, token: str) -> set[str]:
    status, body = await server.request("GET", "/_matrix/client/v3/devices", token=token)
    assert status == 200, body
    return {device["device_id"] for device in body["devices"]}


async def room_with_bot(alice: AsyncClient, bots: Bots, **options: Any) -> str:
    """A room of alice's to which the bot is invited (it joins when configured for it)."""
    return await SynapseServer.create_room(alice, invite=[bots.user_id], join=False, **options)


# -- login and device ----------------------------------------------------------------------------


async def test_password_login_keeps_one_device_across_restarts(
    bots: Bots, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first = bots.make()
    await first.start()
    device = first.device_id
    token = await store.get_value("matrix.access_token")
    assert device is not None and token is not None
    assert await store.get_value("matrix.device_id") == device
    await bots.stop(first)

    second = bots.make()
    await second.start()
    assert second.device_id == device
    assert await store.get_value("matrix.access_token") == token
    assert await devices(bots.server, token) == {bots.account.device_id, device}
    ours = "\n".join(
        record.getMessage() for record in caplog.records if record.name.startswith("bot.")
    )
    assert "logged in as" in ours
    assert token not in ours
    assert bots.account.password not in ours


async def test_rejected_stored_token_logs_in_again_on_the_same_device(
    bots: Bots, store: Store
) -> None:
    first = bots.make()
    await first.start()
    await bots.stop(first)
    old_token = await store.get_value("matrix.access_token")
    status, _ = await bots.server.request("POST", "/_matrix/client/v3/logout", token=old_token)
    assert status == 200

    second = bots.make()
    await second.start()
    assert second.device_id == first.device_id
    new_token = await store.get_value("matrix.access_token")
    assert new_token is not None and new_token != old_token
    assert first.device_id in await devices(bots.server, new_token)


async def test_access_token_from_the_config_is_used_without_a_password(
    bots: Bots, store: Store
) -> None:
    bot = bots.make(password=None, access_token=bots.account.access_token)
    await bot.start()
    assert bot.device_id == bots.account.device_id
    assert await store.get_value("matrix.access_token") is None  # configured secrets stay there
    assert await devices(bots.server, bots.account.access_token) == {bots.account.device_id}


async def test_refused_stored_sync_token_starts_from_now(bots: Bots, store: Store) -> None:
    await store.set_value("matrix.sync_token", "not-a-token")
    bot = bots.make()
    await bot.start()
    assert await store.get_value("matrix.sync_token") not in (None, "not-a-token")
    assert bot.last_sync_ok is not None


# -- rooms and invites ---------------------------------------------------------------------------


async def test_configured_alias_is_joined_and_follows_its_region(
    bots: Bots, store: Store, alice: AsyncClient
) -> None:
    room_id = await room_with_bot(alice, bots)
    alias = f"#{bots.server.unique_localpart('idf')}:{bots.server.server_name}"
    await alice.room_put_alias(alias, room_id)

    await bots.make(rooms=[alias]).start()
    assert await membership(alice, room_id, bots.user_id) == "join"
    assert (await store.subscriptions(room_id)).regions == (REGION,)
    assert await store.room_state(room_id) is None


async def test_invites_from_an_allowed_user_are_accepted_and_others_declined(
    bots: Bots, alice: AsyncClient, matrix_client: ClientFactory
) -> None:
    mallory = await matrix_client("mallory")
    await bots.run(bots.make(accept_invites_from=(alice.user_id,)))
    welcome = await room_with_bot(alice, bots)
    unwelcome = await room_with_bot(mallory, bots)

    await wait_for_membership(alice, welcome, bots.user_id, "join")

    async def declined() -> bool:
        return await membership(mallory, unwelcome, bots.user_id) == "leave"

    await eventually(declined)


async def test_invites_from_an_allowed_server_are_accepted(bots: Bots, alice: AsyncClient) -> None:
    await bots.run(bots.make(accept_invites_from=("example.org", bots.server.server_name)))
    room_id = await room_with_bot(alice, bots)
    await wait_for_membership(alice, room_id, bots.user_id, "join")


@pytest.mark.parametrize("how", ["kick", "ban"])
async def test_kick_or_ban_marks_the_room_left_and_drops_its_pending_messages(
    how: str, bots: Bots, store: Store, alice: AsyncClient
) -> None:
    room_id = await room_with_bot(alice, bots)
    await bots.run(bots.make(rooms=[room_id]))
    await queue_messages(store, room_id, 2)
    assert await store.outbox_size(room_id) == 2

    if how == "kick":
        await alice.room_kick(room_id, bots.user_id, reason="too chatty")
    else:
        await alice.room_ban(room_id, bots.user_id, reason="too chatty")

    async def left() -> bool:
        state = await store.room_state(room_id)
        return state is not None and state.left_at is not None

    await eventually(left)
    state = await store.room_state(room_id)
    verb = "kicked" if how == "kick" else "banned"
    assert state is not None and state.paused_reason == f"{verb} by {alice.user_id}: too chatty"
    assert await store.outbox_size(room_id) == 0


async def test_tombstone_moves_subscriptions_to_the_replacement_room(
    bots: Bots, store: Store, alice: AsyncClient
) -> None:
    old = await room_with_bot(alice, bots)
    bot = await bots.run(bots.make(rooms=[old]))
    # As an upgrading client does: the new room, the tombstone, then invites to the new room.
    new = await SynapseServer.create_room(alice)
    content = {"body": "This room moved", "replacement_room": new}
    await alice.room_put_state(old, "m.room.tombstone", content)
    await alice.room_invite(new, bots.user_id)

    async def moved() -> bool:
        return (await store.subscriptions(new)).regions == (REGION,)

    await eventually(moved)
    assert (await store.subscriptions(old)).regions == ()
    assert await membership(alice, new, bots.user_id) == "join"

    # The configuration still names the old room: a restart keeps the region on the new one.
    await bots.stop(bot)
    await bots.make(rooms=[old]).start()
    assert (await store.subscriptions(new)).regions == (REGION,)
    assert (await store.subscriptions(old)).regions == ()


# -- commands ------------------------------------------------------------------------------------


async def test_member_command_is_answered_with_a_reply_notice(
    bots: Bots, alice: AsyncClient
) -> None:
    room_id = await room_with_bot(alice, bots)
    recorder = Recorder()
    await bots.run(bots.make(rooms=[room_id], commands=recorder))

    event_id = await SynapseServer.send_text(alice, room_id, "!help me")
    events = await SynapseServer.wait_for_messages(alice, room_id, replies_to(event_id))

    assert recorder.calls == [(room_id, alice.user_id, event_id, "!help me")]
    (reply,) = [event for event in events if reply_of(event) == event_id]
    content = reply.source["content"]
    assert reply.sender == bots.user_id
    assert content["msgtype"] == "m.notice"
    assert content["body"] == "ok !help me"
    assert content["format"] == "org.matrix.custom.html"
    assert content["formatted_body"] == "<b>ok</b> !help me"


async def test_commands_sent_before_the_bot_joined_are_not_executed(
    bots: Bots, alice: AsyncClient
) -> None:
    recorder = Recorder()
    await bots.run(bots.make(commands=recorder, accept_invites_from=(alice.user_id,)))
    room_id = await SynapseServer.create_room(alice)
    await SynapseServer.send_text(alice, room_id, "!early")
    await alice.room_invite(room_id, bots.user_id)
    await wait_for_membership(alice, room_id, bots.user_id, "join")

    event_id = await SynapseServer.send_text(alice, room_id, "!late")
    await SynapseServer.wait_for_messages(alice, room_id, replies_to(event_id))
    assert recorder.bodies == ["!late"]


async def test_handled_command_is_not_executed_again_after_a_restart(
    bots: Bots, alice: AsyncClient
) -> None:
    room_id = await room_with_bot(alice, bots)
    first_recorder = Recorder()
    first = await bots.run(bots.make(rooms=[room_id], commands=first_recorder))
    one = await SynapseServer.send_text(alice, room_id, "!one")
    await SynapseServer.wait_for_messages(alice, room_id, replies_to(one))
    await bots.stop(first)

    await SynapseServer.send_text(alice, room_id, "!two")  # while the bot is stopped
    second_recorder = Recorder()
    await bots.run(bots.make(rooms=[room_id], commands=second_recorder))
    three = await SynapseServer.send_text(alice, room_id, "!three")
    events = await SynapseServer.wait_for_messages(alice, room_id, replies_to(three))

    assert first_recorder.bodies == ["!one"]
    assert second_recorder.bodies == ["!two", "!three"]
    assert [reply_of(event) for event in events].count(one) == 1


async def test_bot_ignores_its_own_messages(bots: Bots, alice: AsyncClient) -> None:
    room_id = await room_with_bot(alice, bots)
    recorder = Recorder()
    bot = await bots.run(bots.make(rooms=[room_id], commands=recorder))

    await bot.send_notice(room_id, {"msgtype": "m.text", "body": "!help"}, "crieur.test.own")
    marker = await SynapseServer.send_text(alice, room_id, "!marker")
    await SynapseServer.wait_for_messages(alice, room_id, replies_to(marker))
    assert recorder.bodies == ["!marker"]


async def test_failing_command_is_logged_and_the_loop_goes_on(
    bots: Bots, alice: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    room_id = await room_with_bot(alice, bots)
    recorder = Recorder(fail_on="!boom")
    await bots.run(bots.make(rooms=[room_id], commands=recorder))

    await SynapseServer.send_text(alice, room_id, "!boom")
    after = await SynapseServer.send_text(alice, room_id, "!after")
    await SynapseServer.wait_for_messages(alice, room_id, replies_to(after))
    assert recorder.bodies == ["!boom", "!after"]
    assert "!boom went wrong" in caplog.text


# -- power levels --------------------------------------------------------------------------------


async def test_power_level_ranks_v12_creators_above_everyone(
    bots: Bots, alice: AsyncClient, matrix_client: ClientFactory
) -> None:
    carol = await matrix_client("carol")
    dave = await matrix_client("dave")
    room_id = await SynapseServer.create_room(
        alice,
        invite=[carol, dave, bots.user_id],
        power_levels={"users": {carol.user_id: 50}},
    )
    bot = bots.make(rooms=[room_id])
    await bot.start()  # no sync has shown the room's state yet: read from the homeserver

    assert await bot.power_level(room_id, alice.user_id) == CREATOR_POWER
    assert await bot.power_level(room_id, carol.user_id) == 50
    assert await bot.power_level(room_id, dave.user_id) == 0

    bots.loop(bot)  # from now on, the sync keeps the levels up to date
    current = await alice.room_get_state_event(room_id, "m.room.power_levels")
    levels = dict(current.content)
    levels["users"] = {**levels["users"], carol.user_id: 0, dave.user_id: 75}
    await alice.room_put_state(room_id, "m.room.power_levels", levels)

    async def updated() -> bool:
        return await bot.power_level(room_id, dave.user_id) == 75

    await eventually(updated)
    assert await bot.power_level(room_id, carol.user_id) == 0
    assert await bot.power_level(room_id, alice.user_id) == CREATOR_POWER


# -- sending -------------------------------------------------------------------------------------


async def test_same_transaction_id_twice_posts_one_event_even_after_a_restart(
    bots: Bots, alice: AsyncClient
) -> None:
    room_id = await room_with_bot(alice, bots)
    content = {"msgtype": "m.notice", "body": "April: a new post"}
    first = bots.make(rooms=[room_id])
    await first.start()
    event_id = await first.send_notice(room_id, content, "crieur.test.once")
    assert await first.send_notice(room_id, content, "crieur.test.once") == event_id
    await bots.stop(first)

    second = bots.make(rooms=[room_id])
    await second.start()
    assert await second.send_notice(room_id, content, "crieur.test.once") == event_id
    events = await SynapseServer.timeline(alice, room_id)
    assert [event.source["content"]["body"] for event in events] == ["April: a new post"]


async def test_send_to_a_room_the_bot_is_not_in_raises_room_unavailable(
    bots: Bots, alice: AsyncClient
) -> None:
    room_id = await SynapseServer.create_room(alice)
    bot = bots.make()
    await bot.start()
    with pytest.raises(RoomUnavailable):
        await bot.send_notice(room_id, {"msgtype": "m.notice", "body": "hi"}, "crieur.test.x")


async def test_encrypted_room_gets_no_plain_text_without_encryption(
    bots: Bots, alice: AsyncClient
) -> None:
    room_id = await room_with_bot(alice, bots, encrypted=True)
    bot = bots.make(rooms=[room_id], encryption=False)
    await bot.start()
    with pytest.raises(RoomUnavailable, match="encrypted"):
        await bot.send_notice(room_id, {"msgtype": "m.notice", "body": "hi"}, "crieur.test.e")
    assert await SynapseServer.timeline(alice, room_id) == []


async def test_rate_limited_send_raises_rate_limited_with_retry_after(
    synapse_strict: SynapseServer,
    matrix_client: ClientFactory,
    store: Store,
    tmp_path: Path,
) -> None:
    owner = await matrix_client("owner", server=synapse_strict)
    await synapse_strict.exempt_from_rate_limits(owner.user_id)
    strict_bots = await bots_on(synapse_strict, store, tmp_path / "data")
    room_id = await room_with_bot(owner, strict_bots)
    bot = strict_bots.make(rooms=[room_id])
    try:
        await bot.start()
        began = time.monotonic()
        with pytest.raises(RateLimited) as raised:
            for n in range(10):
                content = {"msgtype": "m.notice", "body": f"post {n}"}
                await bot.send_notice(room_id, content, f"crieur.test.rate.{n}")
        assert raised.value.retry_after > 0
        assert time.monotonic() - began < 10
    finally:
        await strict_bots.stop_all()


async def test_send_during_an_outage_fails_promptly_and_the_sync_loop_resumes(
    bots: Bots, alice: AsyncClient, synapse: SynapseServer
) -> None:
    room_id = await room_with_bot(alice, bots)
    recorder = Recorder()
    bot = await bots.run(bots.make(rooms=[room_id], commands=recorder))

    async with synapse.outage():
        began = time.monotonic()
        with pytest.raises(HomeserverUnavailable):
            await bot.send_notice(room_id, {"msgtype": "m.notice", "body": "x"}, "crieur.test.o")
        assert time.monotonic() - began < 5

    event_id = await SynapseServer.send_text(alice, room_id, "!after")
    await SynapseServer.wait_for_messages(alice, room_id, replies_to(event_id), timeout=40)
    assert recorder.bodies == ["!after"]


@needs_e2e
async def test_encrypted_command_gets_an_encrypted_answer_with_the_e2e_extra(
    bots: Bots, synapse: SynapseServer
) -> None:
    account = await synapse.register_account(synapse.unique_localpart("alice"))
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    alice = synapse.client_for(account, config)
    try:
        await alice.sync(timeout=0)
        await alice.keys_upload()
        room_id = await room_with_bot(alice, bots, encrypted=True)
        recorder = Recorder()
        # Alice's nio client cannot cross-sign: trust on first use.
        bot = await bots.run(
            bots.make(rooms=[room_id], commands=recorder, encryption=True, trust="tofu")
        )
        await wait_for_membership(alice, room_id, bots.user_id, "join")
        await alice.sync(timeout=0)
        sent = await alice.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": "!help"},
            ignore_unverified_devices=True,
        )
        command_id = sent.event_id

        async def answered() -> bool:
            await alice.sync(timeout=0)  # brings the bot's room key; nio then decrypts
            events = await SynapseServer.timeline(alice, room_id)
            return any(
                reply_of(event) == command_id and event.decrypted and event.body == "ok !help"
                for event in events
            )

        await eventually(answered)
        assert recorder.bodies == ["!help"]

        # A restart reuses the device and its crypto store: sending still works.
        await bots.stop_all()
        second = bots.make(rooms=[room_id], encryption=True, trust="tofu")
        await second.start()
        assert second.device_id == bot.device_id
        content = {"msgtype": "m.notice", "body": "April: a new post"}
        await second.send_notice(room_id, content, "crieur.test.e2e")

        async def delivered() -> bool:
            await alice.sync(timeout=0)
            events = await SynapseServer.timeline(alice, room_id)
            return any(event.decrypted and event.body == content["body"] for event in events)

        await eventually(delivered)
    finally:
        await alice.close()


# -- helpers that need the store -----------------------------------------------------------------


async def queue_messages(store: Store, room_id: str, count: int) -> None:
    """Give a room `count` pending messages of organisation april."""
    await store.sync_feeds([("april", "https://april.example/rss")])
    await store.follow(room_id, "organisation", "april", now=time.time())
    (feed,) = await store.feeds(["april"])
    now = datetime.now(UTC)
    options: dict[str, Any] = {
        "next_poll": now.timestamp() + 1800,
        "max_age": 1e9,
        "max_posts": 100,
        "etag": None,
        "last_modified": None,
        "body_hash": None,
    }
    await store.record_poll(feed, REGION, [], now=now.timestamp(), **options)  # seeds the feed
    entries = [
        Entry(f"key-{n}", f"Post {n}", f"https://april.example/{n}", now, "<p>hi</p>")
        for n in range(count)
    ]
    (feed,) = await store.feeds(["april"])
    await store.record_poll(feed, REGION, entries, now=now.timestamp(), **options)
