"""`crieur run` against a real Synapse: an organisation's feed found on its site at start, and a
configured feed that is gone replaced by the one its site offers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient

from tests.e2e_support import (
    WAIT,
    Feeds,
    RunningBot,
    bot_account,
    command,
    config_data,
    eventually,
    load,
    wait_for_titles,
)
from tests.feed_server import FeedServer
from tests.synapse_server import Account, ClientFactory, SynapseServer
from tests.test_check_online import site_page


@pytest.fixture
async def running() -> AsyncIterator[list[RunningBot]]:
    bots: list[RunningBot] = []
    yield bots
    for bot in bots:
        await bot.stop()


async def test_feeds_found_on_sites_are_polled_shown_and_reported(
    synapse: SynapseServer,
    matrix_client: ClientFactory,
    feed_server: FeedServer,
    running: list[RunningBot],
    tmp_path: Path,
) -> None:
    alice: AsyncClient = await matrix_client("alice")
    account: Account = await bot_account(synapse)
    feeds = Feeds(feed_server)
    room = await SynapseServer.create_room(alice, invite=[account.user_id])
    admin_room = await SynapseServer.create_room(alice, invite=[account.user_id])
    data: dict[str, Any] = config_data(
        synapse=synapse,
        account=account,
        feeds=feeds,
        database=tmp_path / "crieur.sqlite3",
        language="en",
        rooms={"ile-de-france": [room]},
        organisations=["parinux", "ubuntu-paris"],
    )
    data["matrix"]["admin_room"] = admin_room
    # Parinux lists no feed: its site links to it. Ubuntu Paris lists one that is gone.
    feed_server.set_feed("/parinux/", site_page(feeds.url("parinux")), content_type="text/html")
    parinux = data["organisations"]["parinux"]
    del parinux["feeds"]
    parinux["url"] = feed_server.url("/parinux/")
    feed_server.set_feed("/ubuntu/", site_page(feeds.url("ubuntu-paris")), content_type="text/html")
    ubuntu = data["organisations"]["ubuntu-paris"]
    ubuntu["url"] = feed_server.url("/ubuntu/")
    ubuntu["feeds"] = [feed_server.url("/ubuntu-gone.xml")]  # 404: the feed server knows it not

    running.append(await RunningBot(load(data, tmp_path)).start())
    await feeds.wait_seeded(["parinux"])
    title = feeds.publish("parinux", "Install party à Paris")
    await wait_for_titles(alice, room, account.user_id, [title])

    async def replaced() -> bool:
        events = await SynapseServer.timeline(alice, admin_room)
        return any(
            str(event.source["content"].get("body", "")).startswith("🔁 Ubuntu Paris's feed")
            for event in events
            if event.sender == account.user_id
        )

    # 404 three polls in a row (1, 2, 4 s apart): the feed on the site replaces it.
    await eventually(replaced, WAIT, what="the replacement's report")
    await feeds.wait_seeded(["ubuntu-paris"])
    title = feeds.publish("ubuntu-paris", "Ubuntu Party")
    await wait_for_titles(alice, room, account.user_id, [title])

    _, reply = await command(alice, room, "!status")
    lines = str(reply.source["content"]["body"]).splitlines()
    line = next(line for line in lines if line.startswith("Parinux"))
    assert line.startswith(f"Parinux — {feeds.url('parinux')} — found on ")
    line = next(line for line in lines if line.startswith("Ubuntu Paris"))
    assert line.startswith(f"Ubuntu Paris — {feeds.url('ubuntu-paris')} — instead of ")
    assert feed_server.url("/ubuntu-gone.xml") in line
