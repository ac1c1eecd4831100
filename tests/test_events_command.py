"""`!events`: the next events of what a room follows, or of one name, soonest first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.calendar import Event, Rule
from bot.catalogue import Catalogue
from bot.config import Organisation, Region
from bot.store import Store
from tests.test_commands import NOW, ROOM, Bot

REGIONS = {
    "la-reunion": Region("la-reunion", "La Réunion", timezone="Indian/Reunion"),
    "bretagne": Region("bretagne", "Bretagne"),
}
ORGANISATIONS = {
    "lug-974": Organisation("lug-974", "LUG 974", "la-reunion", url="https://lug974.example/"),
    "infini": Organisation("infini", "Infini", "bretagne", url="https://infini.example/"),
}
REGION_ICS = "https://agenda.example/events.ics?region=26"
LUG_ICS = "https://lug974.example/agenda.ics"
INFINI_ICS = "https://infini.example/agenda.ics"


def event(key: str, start: datetime, **changes: object) -> Event:
    values: dict[str, object] = {
        "key": key,
        "title": f"Event {key}",
        "start": start,
        "end": start + timedelta(hours=4),
        "place": None,
        "city": None,
        "url": f"https://agenda.example/events/{key}",
        "description_html": "",
        "status": "confirmed",
    }
    values.update(changes)
    return Event(**values)  # type: ignore[arg-type]


def at(days: int, hour: int) -> datetime:
    return (datetime.fromtimestamp(NOW, UTC) + timedelta(days=days)).replace(hour=hour, minute=0)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    store = await Store.open(tmp_path / "crieur.sqlite3")
    await store.sync_feeds(
        [], [("", "la-reunion", REGION_ICS), ("lug-974", "", LUG_ICS), ("infini", "", INFINI_ICS)]
    )
    weekly = Rule("WEEKLY", weekdays=((0, 1),))
    calendars = {
        REGION_ICS: (
            "la-reunion",
            [
                event("late", at(9, 6)),
                event("gone", at(1, 6), status="cancelled"),
                event("past", at(-1, 6)),
            ],
        ),
        LUG_ICS: (
            "la-reunion",
            [
                event("soon", at(2, 10)),
                event("weekly", at(-30, 14), rule=weekly, next_start=at(5, 14)),
                event("weekly#x", at(6, 14)),
            ],
        ),
        INFINI_ICS: ("bretagne", [event("breizh", at(3, 17))]),
    }
    for feed in await store.feeds():
        region, events = calendars[feed.config_url]
        await store.record_calendar(
            feed, region, events, zone="Indian/Reunion", now=NOW, next_poll=NOW,
            within=60 * 86400.0, max_posts=5, etag=None, last_modified=None, body_hash=None,
        )  # fmt: skip
    made = Bot(store, Catalogue(REGIONS, ORGANISATIONS), language="fr")
    yield made
    await store.close()


async def test_a_room_sees_the_events_of_its_regions_in_start_order(bot: Bot) -> None:
    await bot.store.follow(ROOM, "region", "la-reunion", now=NOW)
    lines = (await bot.ask("!events")).splitlines()
    assert lines[0] == "Prochains événements :"
    titles = [line.split(" : ", 1)[1].split(" — ")[0] for line in lines[1:]]
    assert titles == ["Event soon", "Event weekly", "Event late"]
    # In the room's zone (La Réunion's), named: 10:00 UTC is 14 h there.
    assert lines[1].startswith("dimanche 11 janvier 2026, 14 h – 18 h (heure de La Réunion")
    assert "LUG 974 : Event soon — https://agenda.example/events/soon" in lines[1]


async def test_a_name_and_a_count_choose_whose_and_how_many(bot: Bot) -> None:
    assert (
        (await bot.ask("!agenda Bretagne"))
        .splitlines()[1]
        .endswith("Infini : Event breizh — https://agenda.example/events/breizh")
    )
    lines = (await bot.ask("!evenements La Réunion 1")).splitlines()
    assert lines[0] == "Prochains événements — La Réunion :"
    assert len(lines) == 2 and "Event soon" in lines[1]
    assert len((await bot.ask("!events 2")).splitlines()) == 1  # the room follows nothing


async def test_a_muted_organisation_s_events_are_left_out(bot: Bot) -> None:
    await bot.store.follow(ROOM, "region", "la-reunion", now=NOW)
    await bot.store.mute(ROOM, "lug-974", now=NOW)
    lines = (await bot.ask("!events")).splitlines()
    assert [line.rsplit(" : ", 1)[1].split(" — ")[0] for line in lines[1:]] == ["Event late"]


@pytest.mark.parametrize("text", ["!events 11", "!events Bretagne 0", "!events Nulle part 3"])
async def test_a_wrong_count_or_name_is_explained(bot: Bot, text: str) -> None:
    answer = await bot.ask(text)
    assert "10" in answer or "Nulle part" in answer


async def test_status_shows_the_health_of_the_room_s_calendars(bot: Bot) -> None:
    await bot.store.follow(ROOM, "region", "la-reunion", now=NOW)
    answer = await bot.ask("!status")
    (line,) = [line for line in answer.splitlines() if REGION_ICS in line]
    assert "La Réunion" in line
    assert LUG_ICS in answer and INFINI_ICS not in answer
