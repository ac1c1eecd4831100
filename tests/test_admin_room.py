"""matrix.admin_room against a real Synapse: each failure, recovery and room left told once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient, Event

from bot.admin import MESSAGES, AdminReports
from bot.catalogue import Catalogue
from bot.errors import RoomUnavailable
from bot.store import Store
from tests.e2e_support import (
    ORGANISATIONS,
    Feeds,
    RunningBot,
    bot_account,
    config_data,
    eventually,
    load,
)
from tests.feed_server import FeedServer
from tests.synapse_server import Account, ClientFactory, SynapseServer

SECRET = "s3cr3t-t0ken"
WAIT = 45.0  # a failing feed is polled again after 1, 2, 4, 8… s


@pytest.fixture
async def alice(matrix_client: ClientFactory) -> AsyncClient:
    return await matrix_client("alice")


@pytest.fixture
async def account(synapse: SynapseServer) -> Account:
    return await bot_account(synapse)


@pytest.fixture
async def running() -> AsyncIterator[list[RunningBot]]:
    bots: list[RunningBot] = []
    yield bots
    for bot in bots:
        await bot.stop()


def bodies(events: list[Event], sender: str) -> list[str]:
    return [str(event.source["content"].get("body")) for event in events if event.sender == sender]


def test_admin_messages_exist_in_both_languages() -> None:
    assert MESSAGES["fr"].keys() == MESSAGES["en"].keys()


class Room:
    """A stand-in for the homeserver: records what is sent, refuses while `down`."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], str]] = []
        self.down = False

    async def send_notice(self, room_id: str, content: dict[str, Any], txn_id: str) -> str:
        if self.down:
            raise RoomUnavailable("send to !admin: M_FORBIDDEN")
        self.sent.append((room_id, content, txn_id))
        return f"$event{len(self.sent)}"


async def test_a_replaced_identity_is_reported_once_even_after_a_refused_send(
    tmp_path: Path,
) -> None:
    async with await Store.open(tmp_path / "crieur.sqlite3") as store:
        reports = AdminReports(store, Catalogue({}, {}), language="fr", report_after=60.0)
        reports.identity_replaced("the private keys file was lost")
        room = Room()
        room.down = True
        await reports.check(room, "!admin")
        room.down = False
        await reports.check(room, "!admin")
        await reports.check(room, "!admin")
    ((room_id, content, _),) = room.sent
    assert room_id == "!admin" and content["msgtype"] == "m.notice"
    assert content["body"] == (
        "⚠ L'identité de signature croisée de Crieur a été remplacée : "
        "the private keys file was lost"
    )


async def test_a_failing_source_its_recovery_and_a_room_left_are_each_reported_once(
    synapse: SynapseServer,
    feed_server: FeedServer,
    alice: AsyncClient,
    account: Account,
    running: list[RunningBot],
    tmp_path: Path,
) -> None:
    feeds = Feeds(feed_server)
    path = ORGANISATIONS["parinux"].path
    admin_room = await SynapseServer.create_room(alice, invite=[account.user_id])
    other_room = await SynapseServer.create_room(alice, invite=[account.user_id])
    data: dict[str, Any] = config_data(
        synapse=synapse,
        account=account,
        feeds=feeds,
        database=tmp_path / "crieur.sqlite3",
        language="en",
        rooms={"ile-de-france": [other_room]},
        organisations=["parinux"],
    )
    url = f"{feeds.url('parinux')}?token={SECRET}"
    data["organisations"]["parinux"]["feeds"] = [url]
    data["matrix"]["admin_room"] = admin_room
    data["polling"]["report_after"] = "2s"
    feed_server.status(path, 500)

    async def start() -> None:
        running.append(await RunningBot(load(data, tmp_path)).start())

    async def said() -> list[str]:
        return bodies(await SynapseServer.timeline(alice, admin_room), account.user_id)

    async def count(prefix: str) -> int:
        return sum(body.startswith(prefix) for body in await said())

    await start()
    failing = "⚠ Source Parinux"
    await eventually(lambda: has(count(failing)), WAIT, what="the failure report")
    (report,) = [body for body in await said() if body.startswith(failing)]
    assert SECRET not in report and "?token=***" in report and "HTTP 500" in report

    # Restarted while the feed still fails: the failure is not reported again.
    await running.pop().stop()
    await start()
    polls = feed_server.hits(path)
    await eventually(lambda: feed_server.hits(path) > polls + 1, WAIT, what="more failed polls")

    feeds.publish("parinux", "De retour")  # the feed answers again
    recovered = "✅ Source Parinux"
    await eventually(lambda: has(count(recovered)), WAIT, what="the recovery report")

    await alice.room_kick(other_room, account.user_id, reason="too chatty")
    left = f"Crieur is no longer in room {other_room}"
    await eventually(lambda: has(count(left)), WAIT, what="the room-left report")

    messages = await said()
    counts = {p: sum(body.startswith(p) for body in messages) for p in (failing, recovered, left)}
    assert counts == {failing: 1, recovered: 1, left: 1}, messages
    assert f"kicked by {alice.user_id}: too chatty" in messages[-1]
    assert all(
        event.source["content"]["msgtype"] == "m.notice"
        for event in await SynapseServer.timeline(alice, admin_room)
        if event.sender == account.user_id
    )


async def has(counted: Any) -> bool:
    return bool(await counted)
