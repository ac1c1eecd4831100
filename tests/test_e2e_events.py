"""Calendars against a real Synapse and a local HTTP server serving iCalendar exports.

The bot runs in this process (as in test_e2e.py); people are real Matrix users, and what is
checked is what they see: the first fetch is silent, a new event is announced once with the
times of its region, a past event never, and `!events` lists what is coming in start order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient, Event

from tests.e2e_support import (
    Feeds,
    RunningBot,
    bot_account,
    command,
    config_data,
    content,
    eventually,
    load,
    posts_from,
    replies_to,
    wait_for_titles,
)
from tests.feed_server import FeedServer
from tests.ics_export import Item, ics
from tests.synapse_server import ClientFactory, SynapseServer

REGION_ICS = "/agenda-reunion.ics"
LUG_ICS = "/lug-974.ics"
# Tomorrow's midnight (UTC) and on: every test's times fall on whole hours, far from now.
DAY0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


class Calendars:
    """The two calendars on the feed server, each version with an ETag of its own."""

    def __init__(self, server: FeedServer) -> None:
        self.server = server
        self.items: dict[str, list[Item]] = {REGION_ICS: [], LUG_ICS: []}
        self._versions = 0

    def serve(self, path: str, items: Sequence[Item]) -> None:
        self.items[path] = list(items)
        self._versions += 1
        self.server.set_feed(
            path, ics(items), etag=f"v{self._versions}", content_type="text/calendar"
        )

    def add(self, path: str, *items: Item) -> None:
        self.serve(path, [*self.items[path], *items])

    async def polls(self, path: str, count: int) -> None:
        """Wait until the calendar answered `count` more requests than now."""
        target = self.server.hits(path) + count
        await eventually(lambda: self.server.hits(path) >= target, what=f"polls of {path}")


@pytest.fixture
async def alice(matrix_client: ClientFactory) -> AsyncClient:
    return await matrix_client("alice")


@pytest.fixture
async def calendars(feed_server: FeedServer) -> Calendars:
    made = Calendars(feed_server)
    made.serve(REGION_ICS, [("1001", "Rencontre mensuelle", DAY0 + timedelta(days=5, hours=6))])
    made.serve(LUG_ICS, [])
    return made


@pytest.fixture
async def running(
    synapse: SynapseServer,
    feed_server: FeedServer,
    calendars: Calendars,
    alice: AsyncClient,
    tmp_path: Path,
) -> AsyncIterator[tuple[RunningBot, str, str]]:
    account = await bot_account(synapse)
    room = await SynapseServer.create_room(alice, invite=[account.user_id])
    data: dict[str, Any] = config_data(
        synapse=synapse,
        account=account,
        feeds=Feeds(feed_server),
        database=tmp_path / "crieur.sqlite3",
        organisations=[],
    )
    data["regions"]["la-reunion"] = {
        "name": "La Réunion",
        "timezone": "Indian/Reunion",
        "rooms": [room],
        "events": [feed_server.url(REGION_ICS)],
    }
    data["organisations"] = {
        "lug-974": {
            "name": "LUG 974",
            "region": "la-reunion",
            "events": [feed_server.url(LUG_ICS)],
        }
    }
    bot = await RunningBot(load(data, tmp_path)).start()
    await eventually(
        lambda: feed_server.hits(REGION_ICS) >= 2 and feed_server.hits(LUG_ICS) >= 2,
        what="first fetches of the calendars",
    )
    yield bot, room, account.user_id
    await bot.stop()


async def test_a_new_event_is_announced_once_in_its_region_s_time_and_a_past_one_never(
    running: tuple[RunningBot, str, str], calendars: Calendars, alice: AsyncClient
) -> None:
    _, room, bot = running
    new = "Install party à Saint-Denis"
    calendars.add(
        REGION_ICS,
        ("1002", new, DAY0 + timedelta(days=3, hours=10)),  # 14 h in La Réunion
        ("1003", "Atelier d'hier", DAY0 - timedelta(days=2)),
        ("1004", "Fête dans quatre mois", DAY0 + timedelta(days=120)),
    )
    events = await wait_for_titles(alice, room, bot, [new])
    (post,) = posts_from(events, bot)
    body = str(content(post)["body"])
    assert body.splitlines()[:3] == [
        "La Réunion",
        new,
        "https://www.agendadulibre.org/events/1002",
    ]
    assert ", 14 h – 18 h (heure de La Réunion, UTC+4)" in body
    assert "Médiathèque François Mitterrand, Saint-Denis" in body

    await calendars.polls(REGION_ICS, 3)
    events = await SynapseServer.timeline(alice, room)
    assert len(posts_from(events, bot)) == 1  # once; the first fetch's, the past and far: never


async def test_events_lists_what_is_coming_in_start_order(
    running: tuple[RunningBot, str, str], calendars: Calendars, alice: AsyncClient
) -> None:
    _, room, _ = running
    calendars.add(LUG_ICS, ("2001", "Permanence du LUG", DAY0 + timedelta(days=4, hours=5)))
    calendars.add(REGION_ICS, ("1005", "Install party", DAY0 + timedelta(days=2, hours=6)))
    await calendars.polls(LUG_ICS, 2)
    await calendars.polls(REGION_ICS, 2)
    _, answer = await command(alice, room, "!agenda")
    lines = str(content(answer)["body"]).splitlines()
    assert "Prochains événements :" in lines
    listed = [line for line in lines if " — " in line]
    assert [line.split(" : ", 1)[1].split(" — ")[0] for line in listed] == [
        "Install party",
        "Permanence du LUG",
        "Rencontre mensuelle",
    ]
    assert "LUG 974 : Permanence du LUG" in listed[1]


async def test_a_change_and_a_cancellation_answer_the_announcement(
    running: tuple[RunningBot, str, str], calendars: Calendars, alice: AsyncClient
) -> None:
    _, room, bot = running
    title = "Atelier Linux"
    start = DAY0 + timedelta(days=6, hours=10)
    calendars.add(REGION_ICS, ("1010", title, start))
    events = await wait_for_titles(alice, room, bot, [title])
    (announcement,) = posts_from(events, bot)

    moved = [item for item in calendars.items[REGION_ICS] if item[0] != "1010"]
    calendars.serve(REGION_ICS, [*moved, ("1010", title, start + timedelta(hours=2))])

    def answers(events: list[Event]) -> list[str]:
        return [str(content(event)["body"]) for event in replies_to(events, announcement.event_id)]

    events = await SynapseServer.wait_for_messages(alice, room, lambda found: bool(answers(found)))
    (changed,) = answers(events)
    assert changed.splitlines()[1] == f"Modifié : {title}"
    assert ", 16 h – 20 h (heure de La Réunion, UTC+4)" in changed

    calendars.server.set_feed(
        REGION_ICS,
        ics([*moved, ("1010", title, start + timedelta(hours=2))]).replace(
            b"UID:1010@agendadulibre.org\r\n", b"UID:1010@agendadulibre.org\r\nSTATUS:CANCELLED\r\n"
        ),
        etag="cancelled",
        content_type="text/calendar",
    )
    events = await SynapseServer.wait_for_messages(
        alice, room, lambda found: len(answers(found)) >= 2
    )
    assert answers(events)[1].splitlines()[1] == f"Annulé : {title}"
    await calendars.polls(REGION_ICS, 3)
    events = await SynapseServer.timeline(alice, room)
    assert len(answers(events)) == 2 and len(posts_from(events, bot)) == 1
