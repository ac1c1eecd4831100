"""`crieur run` as an operator starts it: a separate process, stopped by signals, restarted on the
same database, against a real Synapse and real local feeds."""

from __future__ import annotations

import secrets
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from nio import AsyncClient

from tests.e2e_support import (
    BotWaits,
    CrieurProcess,
    Feeds,
    bot_account,
    command,
    config_data,
    posts_from,
    titles_posted,
    unless_processes_exit,
    write_config,
)
from tests.feed_server import FeedServer
from tests.synapse_server import Account, ClientFactory, SynapseServer

T = TypeVar("T")


@dataclass
class Deployment(BotWaits):
    """A configuration file for one bot account, and the `crieur run` processes started on it."""

    synapse: SynapseServer
    account: Account
    feeds: Feeds
    directory: Path
    processes: list[CrieurProcess] = field(default_factory=list)

    @property
    def database(self) -> Path:
        return self.directory / "data" / "crieur.sqlite3"

    def configure(self, *, password: str | None = None, **options: Any) -> Path:
        data = config_data(
            synapse=self.synapse,
            account=self.account,
            feeds=self.feeds,
            database=Path("data/crieur.sqlite3"),  # relative: resolved beside the file
            **options,
        )
        if password is not None:
            data["matrix"]["password"] = password
        return write_config(data, self.directory / "config.yaml")

    async def run(self, *, log_level: str = "info", wait_running: bool = True) -> CrieurProcess:
        """Start `crieur run -c config.yaml` and return once it runs (if `wait_running`)."""
        process = CrieurProcess(self.directory / "config.yaml", log_level=log_level)
        self.processes.append(process)
        return await process.start(wait_running=wait_running)

    async def kill_all(self) -> None:
        for process in self.processes:
            await process.kill()

    # Waits that fail at once, with the log, if `crieur run` exits by itself meanwhile.

    async def guard(self, awaitable: Awaitable[T]) -> T:
        def logs() -> str:
            return "\n".join(process.log for process in self.processes if process.exited)

        return await unless_processes_exit(awaitable, self.processes, logs)

    def stored_value(self, key: str) -> str | None:
        with sqlite3.connect(self.database) as db:
            row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])


async def deploy(synapse: SynapseServer, feed_server: FeedServer, directory: Path) -> Deployment:
    return Deployment(synapse, await bot_account(synapse), Feeds(feed_server), directory)


@pytest.fixture
async def deployment(
    synapse: SynapseServer, feed_server: FeedServer, tmp_path: Path
) -> AsyncIterator[Deployment]:
    made = await deploy(synapse, feed_server, tmp_path)
    yield made
    await made.kill_all()  # only what a failed test left running


@pytest.fixture
async def alice(matrix_client: ClientFactory) -> AsyncClient:
    return await matrix_client("alice")


async def region_room(owner: AsyncClient, deployment: Deployment) -> str:
    return await SynapseServer.create_room(owner, invite=[deployment.user_id], join=False)


async def test_sigterm_stops_crieur_run_within_seconds_with_exit_code_0(
    deployment: Deployment, alice: AsyncClient
) -> None:
    room = await region_room(alice, deployment)
    deployment.configure(rooms={"ile-de-france": [room]})
    process = await deployment.run()
    await deployment.wait_seeded()

    began = time.monotonic()
    code = await process.terminate(timeout=10)

    assert code == 0, process.log
    assert time.monotonic() - began < 5
    assert "Traceback" not in process.log


async def test_entries_published_while_crieur_run_was_stopped_arrive_once_after_restart(
    deployment: Deployment, alice: AsyncClient
) -> None:
    room = await region_room(alice, deployment)
    deployment.configure(rooms={"ile-de-france": [room]})
    first = await deployment.run()
    await deployment.wait_seeded("parinux")
    before = deployment.feeds.publish("parinux", "Avant l'arrêt")
    await deployment.wait_for_titles(alice, room, [before])
    assert await first.terminate() == 0

    during = [
        deployment.feeds.publish("parinux", "Pendant l'arrêt, premier"),
        deployment.feeds.publish("parinux", "Pendant l'arrêt, second"),
    ]
    second = await deployment.run()
    await deployment.wait_for_titles(alice, room, during)
    await deployment.quiet("parinux")
    assert await second.terminate() == 0

    events = await SynapseServer.timeline(alice, room)
    titles = [before, *during]
    assert titles_posted(events, deployment.user_id, titles) == titles
    assert len(posts_from(events, deployment.user_id)) == 3


async def test_crash_in_the_middle_of_a_burst_loses_nothing_and_posts_nothing_twice(
    synapse_strict: SynapseServer,
    feed_server: FeedServer,
    tmp_path: Path,
    matrix_client: ClientFactory,
) -> None:
    owner = await matrix_client("alice", server=synapse_strict)
    await synapse_strict.exempt_from_rate_limits(owner.user_id)
    deployment = await deploy(synapse_strict, feed_server, tmp_path)
    room = await region_room(owner, deployment)
    deployment.configure(rooms={"ile-de-france": [room]}, max_posts_per_poll=8)
    try:
        crashing = await deployment.run()
        await deployment.wait_seeded("parinux")
        titles = deployment.feeds.publish_many(
            "parinux", [f"Atelier {number} du cycle d'automne" for number in range(1, 7)]
        )
        # The homeserver lets one message through every 2 s: kill the bot with most to send.
        events = await deployment.guard(
            SynapseServer.wait_for_messages(
                owner,
                room,
                lambda events: len(posts_from(events, deployment.user_id)) >= 2,
                timeout=60,
            )
        )
        await crashing.kill()
        assert crashing.returncode == -signal.SIGKILL
        assert len(posts_from(events, deployment.user_id)) < len(titles)  # killed mid-burst

        await deployment.run()
        await deployment.wait_for_titles(owner, room, titles, timeout=90)
        await deployment.quiet("parinux")
    finally:
        await deployment.kill_all()

    events = await SynapseServer.timeline(owner, room)
    assert titles_posted(events, deployment.user_id, titles) == titles


async def test_debug_logs_show_neither_the_password_nor_the_access_token(
    deployment: Deployment, alice: AsyncClient
) -> None:
    room = await region_room(alice, deployment)
    deployment.configure(rooms={"ile-de-france": [room]})
    logs: list[str] = []
    # The first run logs in with the password; the second resumes with the stored token.
    for run in (1, 2):
        process = await deployment.run(log_level="debug")
        await deployment.wait_seeded("parinux")
        await deployment.guard(command(alice, room, "!status"))
        title = deployment.feeds.publish("parinux", f"Nouvelle de la session {run}")
        await deployment.wait_for_titles(alice, room, [title])
        assert await process.terminate() == 0
        logs.append(process.log)

    token = deployment.stored_value("matrix.access_token")
    assert token
    for log in logs:
        assert " DEBUG " in log  # the level asked for is in effect
        assert deployment.account.password not in log
        assert token not in log


async def test_refused_password_ends_crieur_run_with_exit_code_1_naming_the_key(
    deployment: Deployment,
) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    deployment.configure(password=wrong)

    process = await deployment.run(wait_running=False)

    assert await process.wait() == 1
    assert process.lines[-1].startswith("error: matrix.password: refused by the homeserver")
    assert wrong not in process.log
