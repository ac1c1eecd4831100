"""Calendars' events in the store: silent first fetch, the window, caps, and their messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.calendar import Event, Rule
from bot.catalogue import Catalogue
from bot.config import Organisation, Region
from bot.dispatcher import DeliveryRenderer
from bot.event_posting import Pending, first_state, plan_announcements
from bot.store import FeedState, Store
from bot.store.event_rows import event_from_json, event_to_json

NOW = datetime(2026, 2, 10, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400.0
WINDOW = 60 * DAY
REGION_ICS = "https://agenda.example.org/events.ics?region=26"
ORG_ICS = "https://lug.example.org/agenda.ics"


def event(key: str, *, days: float, title: str | None = None, **changes: object) -> Event:
    start = datetime.fromtimestamp(NOW, UTC) + timedelta(days=days)
    values: dict[str, object] = {
        "key": key,
        "title": title or f"Event {key}",
        "start": start,
        "end": start + timedelta(hours=4),
        "place": "Médiathèque",
        "city": "Saint-Denis",
        "url": f"https://agenda.example.org/events/{key}",
        "description_html": "<p>Venez !</p>",
        "status": "confirmed",
    }
    values.update(changes)
    return Event(**values)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "crieur.sqlite3")
    await db.sync_feeds(
        [("lug", "https://lug.example.org/feed")],
        [("", "la-reunion", REGION_ICS), ("lug", "", ORG_ICS)],
    )
    await db.follow("!reunion:example.org", "region", "la-reunion", now=NOW)
    await db.follow("!lug:example.org", "organisation", "lug", now=NOW)
    yield db
    await db.close()


async def calendar(store: Store, url: str) -> FeedState:
    (feed,) = [feed for feed in await store.feeds() if feed.config_url == url]
    return feed


async def poll(store: Store, url: str, events: list[Event], *, now: float = NOW, **kw: object):  # type: ignore[no-untyped-def]
    feed = await calendar(store, url)
    region = "la-reunion"
    options: dict[str, object] = {
        "zone": "Indian/Reunion",
        "now": now,
        "next_poll": now + 1800,
        "within": WINDOW,
        "max_posts": 5,
        "etag": None,
        "last_modified": None,
        "body_hash": None,
    }
    options.update(kw)
    return await store.record_calendar(feed, region, events, **options)  # type: ignore[arg-type]


async def announced(store: Store, room: str = "!reunion:example.org") -> list[str]:
    rows = await store.pending_deliveries(NOW + 365 * DAY, limit=100)
    return [
        row.event.key if row.event else f"+{row.digest_count}"
        for row in rows
        if row.room_id == room
    ]


async def test_calendars_are_feed_rows_of_their_own_kind(store: Store) -> None:
    region = await calendar(store, REGION_ICS)
    assert (region.kind, region.region, region.organisation) == ("calendar", "la-reunion", "")
    organisation = await calendar(store, ORG_ICS)
    assert (organisation.kind, organisation.organisation) == ("calendar", "lug")
    (feed,) = [feed for feed in await store.feeds() if feed.kind == "feed"]
    assert feed.organisation == "lug"


async def test_the_first_fetch_announces_nothing_whatever_the_dates(store: Store) -> None:
    record = await poll(store, REGION_ICS, [event("1", days=1), event("2", days=3)])
    assert record.seeded and record.deliveries == 0
    assert await announced(store) == []
    # Still nothing later: what the first fetch brought is only seen.
    record = await poll(store, REGION_ICS, [event("1", days=1), event("2", days=3)])
    assert record.deliveries == 0 and record.new_events == 0


async def test_a_new_event_is_announced_once_to_the_followers_of_its_region(store: Store) -> None:
    await poll(store, REGION_ICS, [event("1", days=1)])
    record = await poll(store, REGION_ICS, [event("1", days=1), event("2", days=5)])
    assert (record.new_events, record.announced, record.deliveries) == (1, 1, 1)
    assert await announced(store) == ["2"]
    assert await announced(store, "!lug:example.org") == []  # it follows no region
    await poll(store, REGION_ICS, [event("1", days=1), event("2", days=5)])
    assert await announced(store) == ["2"]


async def test_an_organisation_s_event_reaches_its_followers_and_its_region_s(
    store: Store,
) -> None:
    await poll(store, ORG_ICS, [])
    await poll(store, ORG_ICS, [event("a", days=2)])
    assert await announced(store, "!lug:example.org") == ["a"]
    assert await announced(store, "!reunion:example.org") == ["a"]
    await store.mute("!reunion:example.org", "lug", now=NOW)
    await poll(store, ORG_ICS, [event("a", days=2), event("b", days=3)])
    assert await announced(store, "!reunion:example.org") == ["a"]
    assert await announced(store, "!lug:example.org") == ["a", "b"]


async def test_past_events_are_never_announced(store: Store) -> None:
    await poll(store, REGION_ICS, [])
    await poll(store, REGION_ICS, [event("old", days=-1)])
    await poll(store, REGION_ICS, [event("old", days=-1)], now=NOW + DAY)
    assert await announced(store) == []


async def test_an_event_further_ahead_is_announced_when_it_comes_within_the_window(
    store: Store,
) -> None:
    await poll(store, REGION_ICS, [])
    far = [event("far", days=90)]
    record = await poll(store, REGION_ICS, far)
    assert (record.new_events, record.deliveries) == (1, 0)
    feed = await calendar(store, REGION_ICS)
    # An unchanged export (304) still lets it come due.
    assert (
        await store.announce_due_events(
            feed, "la-reunion", now=NOW + 20 * DAY, within=WINDOW, max_posts=5
        )
        == 0
    )
    assert (
        await store.announce_due_events(
            feed, "la-reunion", now=NOW + 31 * DAY, within=WINDOW, max_posts=5
        )
        == 1
    )
    await poll(store, REGION_ICS, far, now=NOW + 32 * DAY)
    assert await announced(store) == ["far"]


async def test_beyond_the_cap_events_become_one_line(store: Store) -> None:
    await poll(store, REGION_ICS, [])
    events = [event(str(n), days=1 + n) for n in range(4)]
    record = await poll(store, REGION_ICS, events, max_posts=2)
    assert (record.announced, record.digested) == (2, 2)
    assert await announced(store) == ["0", "1", "+2"]
    await poll(store, REGION_ICS, events, max_posts=2)
    assert await announced(store) == ["0", "1", "+2"]


async def test_cancelled_events_and_a_series_modified_occurrences_are_not_announced(
    store: Store,
) -> None:
    await poll(store, REGION_ICS, [])
    weekly = Rule("WEEKLY", weekdays=((0, 1),))
    series = event("s", days=-30, rule=weekly, next_start=event("x", days=6).start)
    moved = event("s#20260217T170000Z", days=7)
    cancelled = event("c", days=2, status="cancelled")
    await poll(store, REGION_ICS, [series, moved, cancelled])
    assert await announced(store) == ["s"]


async def test_upcoming_events_are_in_start_order_without_cancelled_ones(store: Store) -> None:
    await poll(
        store, REGION_ICS, [event("late", days=9), event("gone", days=1, status="cancelled")]
    )
    await poll(store, ORG_ICS, [event("soon", days=2), event("past", days=-2)])
    found = await store.upcoming_events(["la-reunion"], ["lug"], now=NOW, limit=5)
    assert [(item.event.key, item.organisation) for item in found] == [
        ("soon", "lug"),
        ("late", ""),
    ]
    assert [
        item.event.key for item in await store.upcoming_events([], ["lug"], now=NOW, limit=5)
    ] == ["soon"]
    assert await store.upcoming_events(["la-reunion"], [], now=NOW, limit=1) != []


async def test_an_event_message_shows_the_time_of_its_region(store: Store) -> None:
    await poll(store, REGION_ICS, [])
    start = datetime(2026, 2, 14, 10, 0, tzinfo=UTC)  # 14 h in La Réunion
    await poll(store, REGION_ICS, [event("1", days=4, start=start, end=start + timedelta(hours=4))])
    (delivery,) = await store.pending_deliveries(NOW + DAY)
    catalogue = Catalogue(
        {"la-reunion": Region("la-reunion", "La Réunion", timezone="Indian/Reunion")},
        {"lug": Organisation("lug", "Mon LUG", "la-reunion")},
    )
    body = DeliveryRenderer(catalogue, "fr")(delivery)["body"]
    assert "samedi 14 février 2026, 14 h – 18 h" in body
    assert "La Réunion" in body and "Médiathèque, Saint-Denis" in body


def test_events_keep_their_kind_of_dates_through_the_store() -> None:
    weekly = Rule("WEEKLY", 2, ((0, 1),), (), (), None, date(2026, 6, 30))
    original = event("1", days=1, rule=weekly, next_start=date(2026, 2, 17), end=None)
    assert event_from_json(event_to_json(original)) == original
    all_day = event("2", days=0, start=date(2026, 2, 14), end=date(2026, 2, 16))
    assert event_from_json(event_to_json(all_day)) == all_day


def test_the_plan_announces_what_has_not_started_within_the_window_soonest_first() -> None:
    pending = [
        Pending(1, "later", NOW + 3 * DAY, False),
        Pending(2, "sooner", NOW + DAY, False),
        Pending(3, "past", NOW - 1, False),
        Pending(4, "far", NOW + 61 * DAY, False),
        Pending(5, "cancelled", NOW + DAY, True),
        Pending(6, "finished series", None, False),
    ]
    plan = plan_announcements(pending, now=NOW, within=WINDOW, max_posts=1)
    assert [p.key for p in plan.post] == ["sooner"]
    assert [p.key for p in plan.digest] == ["later"]


def test_a_first_fetch_and_a_known_series_occurrence_are_only_seen() -> None:
    assert first_state("a", seeded=True, series=set()) == "seen"
    assert first_state("a", seeded=False, series=set()) == "pending"
    assert first_state("s#20260217T170000Z", seeded=False, series={"s"}) == "seen"
    assert first_state("t#20260217T170000Z", seeded=False, series={"s"}) == "pending"


async def changes(store: Store, room: str = "!reunion:example.org") -> list[tuple[str, str]]:
    rows = await store.pending_deliveries(NOW + 365 * DAY, limit=100)
    return [
        (row.event.key, row.change)
        for row in rows
        if row.room_id == room and row.change and row.event
    ]


async def test_a_new_start_place_or_a_cancellation_is_a_reply_to_each_announcement(
    store: Store,
) -> None:
    await poll(store, REGION_ICS, [])
    await poll(store, REGION_ICS, [event("1", days=5), event("2", days=6)])
    (first, _) = await store.pending_deliveries(NOW + DAY)
    await store.mark_sent(first.id, now=NOW, event_id="$announcement")
    # A new description alone says nothing; a new start, place or a cancellation does.
    await poll(
        store, REGION_ICS, [event("1", days=5, description_html="<p>Autre</p>"), event("2", days=6)]
    )
    assert await changes(store) == []
    moved = event("1", days=5, city="Saint-Pierre")
    await poll(store, REGION_ICS, [moved, event("2", days=6, status="cancelled")])
    assert await changes(store) == [("1", "changed"), ("2", "cancelled")]
    await poll(store, REGION_ICS, [moved, event("2", days=6, status="cancelled")])
    assert await changes(store) == [("1", "changed"), ("2", "cancelled")]  # once each
    (reply,) = [row for row in await store.pending_deliveries(NOW + DAY) if row.change == "changed"]
    assert reply.reply_to == "$announcement"
    catalogue = Catalogue(
        {"la-reunion": Region("la-reunion", "La Réunion", timezone="Indian/Reunion")}, {}
    )
    content = DeliveryRenderer(catalogue, "fr")(reply)
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$announcement"}}
    assert content["body"].splitlines()[1] == "Modifié : Event 1"
    assert "Saint-Pierre" in content["body"]


async def test_an_event_that_leaves_the_export_or_was_never_announced_says_nothing(
    store: Store,
) -> None:
    await poll(store, REGION_ICS, [event("1", days=5), event("far", days=90)])
    await poll(store, REGION_ICS, [])  # left the export: not cancelled
    await poll(store, REGION_ICS, [event("far", days=90, status="cancelled")])
    assert await changes(store) == []


async def test_an_unchanged_export_is_read_anew_once_a_series_next_occurrence_started(
    store: Store,
) -> None:
    weekly = Rule("WEEKLY", weekdays=((0, 1),))
    series = event("s", days=-30, rule=weekly, next_start=event("x", days=2).start)
    await poll(store, REGION_ICS, [series], etag='"v1"', body_hash="h1")
    feed = await calendar(store, REGION_ICS)
    await store.announce_due_events(feed, "la-reunion", now=NOW + DAY, within=WINDOW, max_posts=5)
    assert (await calendar(store, REGION_ICS)).etag == '"v1"'
    await store.announce_due_events(
        feed, "la-reunion", now=NOW + 3 * DAY, within=WINDOW, max_posts=5
    )
    refreshed = await calendar(store, REGION_ICS)
    assert (refreshed.etag, refreshed.body_hash) == (None, None)
