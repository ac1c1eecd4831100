"""Commands in the events a sync leaves out of a busy room's timeline are still answered.

A sync gives at most TIMELINE_LIMIT events per room and marks the timeline `limited`: after a
restart, an outage or under a flood, the events before those are read back with /messages.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from nio import AsyncClient, AsyncClientConfig

from bot.catalogue import Catalogue
from bot.commands import Commands, Reply
from bot.config import Organisation, Region
from bot.matrix import TIMELINE_LIMIT, CommandView
from bot.matrix import sync as matrix_sync
from bot.store import Store
from tests.e2e_support import eventually, send_encrypted, wait_for_membership
from tests.synapse_server import SynapseServer
from tests.test_matrix import (
    WAIT,
    Bots,
    Recorder,
    bots_on,
    needs_e2e,
    replies_to,
    reply_of,
    room_with_bot,
)

FILLER = TIMELINE_LIMIT + 20  # more than one sync's timeline holds

CATALOGUE = Catalogue(
    {"france": Region("france", "France")},
    {"april": Organisation("april", "April", "france", feeds=("https://april.example/rss",))},
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "crieur.sqlite3")
    await db.sync_feeds([("april", "https://april.example/rss")])
    yield db
    await db.close()


@pytest.fixture
async def bots(synapse: SynapseServer, store: Store, tmp_path: Path) -> AsyncIterator[Bots]:
    made = await bots_on(synapse, store, tmp_path / "data")
    yield made
    await made.stop_all()


async def fast_client(synapse: SynapseServer, name: str) -> AsyncClient:
    """A user whose messages are never rate limited, so a flood is sent at once."""
    client = await synapse.client(name)
    await synapse.exempt_from_rate_limits(client.user_id)
    return client


async def send_filler(client: AsyncClient, room_id: str, count: int, tag: str) -> None:
    for n in range(count):
        await SynapseServer.send_text(client, room_id, f"{tag} chatter {n}")


CommandHandler = Callable[[CommandView, str, str, str, str], Awaitable[Reply | None]]


def real_commands(store: Store) -> tuple[CommandHandler, list[str]]:
    """The real command handler, as the application builds it; and the events it ran."""
    commands = Commands(
        store, CATALOGUE, language="en", prefix="!", admins=(), manage_power_level=50
    )
    ran: list[str] = []

    async def handler(
        room: CommandView, room_id: str, sender: str, event_id: str, body: str
    ) -> Reply | None:
        ran.append(event_id)
        return await commands(room, room_id, sender, event_id, body)

    return handler, ran


class ReverseProxy:
    """A reverse proxy in front of Synapse that answers 502 while Synapse is down, as nginx does.

    The first time it is asked to read a room's events back, it stops Synapse before passing
    the request on: the homeserver goes away between a sync and the reading back of its gap.
    """

    READ_BACK = re.compile(r"/_matrix/client/v3/rooms/[^/]+/messages")

    def __init__(self, synapse: SynapseServer) -> None:
        self._synapse = synapse
        self.stopped_synapse = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock, shutdown_timeout=0.1).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        if self.READ_BACK.fullmatch(request.path) and not self.stopped_synapse.is_set():
            self.stopped_synapse.set()
            await self._synapse.astop()
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("authorization", "content-type")
        }
        try:
            async with self._session.request(
                request.method,
                self._synapse.base_url + request.rel_url.raw_path_qs,
                headers=headers,
                data=await request.read(),
            ) as upstream:
                return web.Response(
                    status=upstream.status,
                    body=await upstream.read(),
                    content_type=upstream.content_type,
                )
        except aiohttp.ClientConnectionError:
            return web.Response(status=502, text="<html>502 Bad Gateway</html>")


@pytest.fixture
async def proxy(synapse: SynapseServer) -> AsyncIterator[ReverseProxy]:
    front = ReverseProxy(synapse)
    await front.start()
    yield front
    await front.close()
    if not synapse.running:
        await synapse.astart()


async def test_command_left_out_of_a_sync_after_a_restart_is_answered_once_and_applied(
    bots: Bots, synapse: SynapseServer, store: Store
) -> None:
    alice = await fast_client(synapse, "alice")  # the room's creator: a moderator
    try:
        room_id = await room_with_bot(alice, bots)
        handler, _ = real_commands(store)
        first = await bots.run(bots.make(rooms=[room_id], commands=handler))
        hello = await SynapseServer.send_text(alice, room_id, "!help")
        await SynapseServer.wait_for_messages(alice, room_id, replies_to(hello))
        await bots.stop(first)

        # While the bot is stopped: the command, then more chatter than a sync's timeline.
        command = await SynapseServer.send_text(alice, room_id, "!subscribe april")
        await send_filler(alice, room_id, FILLER, "stopped")

        handler, ran = real_commands(store)
        await bots.run(bots.make(rooms=[room_id], commands=handler))
        await SynapseServer.wait_for_messages(alice, room_id, replies_to(command))
        marker = await SynapseServer.send_text(alice, room_id, "!help")
        events = await SynapseServer.wait_for_messages(alice, room_id, replies_to(marker))

        # Read back to where the last run stopped, not further: the first !help is not rerun.
        assert ran == [command, marker]
        assert [reply_of(event) for event in events].count(command) == 1
        assert (await store.subscriptions(room_id)).organisations == ("april",)
    finally:
        await alice.close()


async def test_commands_spread_through_a_long_gap_are_each_answered_once(
    bots: Bots, synapse: SynapseServer
) -> None:
    # Several people, three commands each: within the per-person burst the bot answers.
    people = [await fast_client(synapse, name) for name in ("alice", "bob", "carol")]
    try:
        room_id = await SynapseServer.create_room(people[0], invite=[bots.user_id, *people[1:]])
        recorder = Recorder()
        bot = bots.make(rooms=[room_id], commands=recorder)
        await bot.start()  # synced once; the sync loop is not running yet

        # Over two pages of /messages, with the commands spread through it.
        commands: list[str] = []
        for round_ in range(3):
            for person in people:
                body = f"!ask {person.user_id} {round_}"
                commands.append(await SynapseServer.send_text(person, room_id, body))
                await send_filler(person, room_id, 12, f"round {round_}")
        await send_filler(people[0], room_id, FILLER, "tail")

        bots.loop(bot)
        last = commands[-1]
        await SynapseServer.wait_for_messages(people[0], room_id, replies_to(commands[0]))
        await SynapseServer.wait_for_messages(people[0], room_id, replies_to(last))
        marker = await SynapseServer.send_text(people[1], room_id, "!marker")
        events = await SynapseServer.wait_for_messages(people[0], room_id, replies_to(marker))

        assert [event_id for _, _, event_id, _ in recorder.calls] == [*commands, marker]
        answered = [reply_of(event) for event in events]
        assert all(answered.count(event_id) == 1 for event_id in commands)
    finally:
        for person in people:
            await person.close()


async def test_a_gap_longer_than_the_bound_is_read_back_up_to_the_bound(
    bots: Bots,
    synapse: SynapseServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The gap below holds 52 events (102 sent, the last 50 in the sync): !recent is among its
    # newest 30, !too-old is not.
    monkeypatch.setattr(matrix_sync, "MAX_GAP_EVENTS", 30)
    alice = await fast_client(synapse, "alice")
    try:
        room_id = await room_with_bot(alice, bots)
        recorder = Recorder()
        bot = bots.make(rooms=[room_id], commands=recorder)
        await bot.start()

        await SynapseServer.send_text(alice, room_id, "!too-old")
        await send_filler(alice, room_id, 40, "old")
        recent = await SynapseServer.send_text(alice, room_id, "!recent")
        await send_filler(alice, room_id, TIMELINE_LIMIT + 10, "new")

        bots.loop(bot)
        await SynapseServer.wait_for_messages(alice, room_id, replies_to(recent))
        marker = await SynapseServer.send_text(alice, room_id, "!marker")
        await SynapseServer.wait_for_messages(alice, room_id, replies_to(marker))

        assert recorder.bodies == ["!recent", "!marker"]
        assert "only the newest" in caplog.text
    finally:
        await alice.close()


@needs_e2e
async def test_command_left_out_of_an_encrypted_room_is_decrypted_and_answered(
    bots: Bots, synapse: SynapseServer
) -> None:
    account = await synapse.register_account(synapse.unique_localpart("alice"))
    await synapse.exempt_from_rate_limits(account.user_id)
    alice = synapse.client_for(
        account, AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    )
    try:
        await alice.sync(timeout=0)
        await alice.keys_upload()
        room_id = await room_with_bot(alice, bots, encrypted=True)
        # Alice's nio client cannot cross-sign: trust on first use.
        first = await bots.run(
            bots.make(rooms=[room_id], commands=Recorder(), encryption=True, trust="tofu")
        )
        await wait_for_membership(alice, room_id, bots.user_id, "join")
        await bots.stop(first)

        # While the bot is stopped; its device is known, so the room key goes to it.
        await alice.sync(timeout=0)
        command = await send_encrypted(alice, room_id, "!gap")
        for n in range(FILLER):
            await send_encrypted(alice, room_id, f"chatter {n}")

        recorder = Recorder()
        await bots.run(bots.make(rooms=[room_id], commands=recorder, encryption=True, trust="tofu"))

        async def answered() -> bool:
            await alice.sync(timeout=0)
            events = await SynapseServer.timeline(alice, room_id)
            return any(reply_of(event) == command and event.decrypted for event in events)

        await eventually(answered)
        assert recorder.bodies == ["!gap"]
    finally:
        await alice.close()


async def test_a_gap_unreadable_during_an_outage_is_read_once_the_homeserver_is_back(
    bots: Bots,
    synapse: SynapseServer,
    proxy: ReverseProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice = await fast_client(synapse, "alice")
    try:
        room_id = await room_with_bot(alice, bots)
        recorder = Recorder()
        # The bot reaches Synapse through the proxy, which stops Synapse when the gap is read.
        bot = bots.make(rooms=[room_id], commands=recorder, homeserver=proxy.url)
        await bot.start()
        command = await SynapseServer.send_text(alice, room_id, "!during")
        await send_filler(alice, room_id, FILLER, "busy")

        bots.loop(bot)
        await asyncio.wait_for(proxy.stopped_synapse.wait(), WAIT)

        async def retrying() -> bool:
            return "sync failed (read the events missed in" in caplog.text

        await eventually(retrying)
        await synapse.astart()
        await SynapseServer.wait_for_messages(alice, room_id, replies_to(command))
        marker = await SynapseServer.send_text(alice, room_id, "!marker")
        events = await SynapseServer.wait_for_messages(alice, room_id, replies_to(marker))

        assert recorder.bodies == ["!during", "!marker"]
        assert [reply_of(event) for event in events].count(command) == 1
    finally:
        if not synapse.running:
            await synapse.astart()
        await alice.close()
