"""Calendar parser: golden exports of the kinds the community publishes, and the bounds kept."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.calendar import HORIZON, MAX_EVENTS, Event, is_past, parse
from bot.errors import ParseError
from tests.calendar_json import event_json

CALENDARS = Path(__file__).parent / "data" / "calendars"
GOLDEN = sorted(
    path.name.removesuffix(".expected.json") for path in CALENDARS.glob("*.expected.json")
)
NOW = datetime(2026, 2, 1, tzinfo=UTC)


def calendar(*events: str, header: str = "") -> bytes:
    """Build a VCALENDAR around the given VEVENT bodies."""
    body = "".join(f"BEGIN:VEVENT\r\n{event.strip()}\r\nEND:VEVENT\r\n" for event in events)
    return (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Crieur tests//FR\r\n{header}"
        f"{body}END:VCALENDAR\r\n"
    ).encode()


def vevent(uid: str, start: str, *lines: str, summary: str = "Atelier") -> str:
    return "\r\n".join((f"UID:{uid}", f"DTSTART:{start}", f"SUMMARY:{summary}", *lines))


def parse_one(body: bytes, *, now: datetime = NOW, zone: str = "Europe/Paris") -> Event:
    (event,) = parse(body, now=now, zone=zone)
    return event


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_calendars_parse_to_their_expected_events(name: str) -> None:
    expected = json.loads((CALENDARS / f"{name}.expected.json").read_text(encoding="utf-8"))
    body = (CALENDARS / f"{name}.ics").read_bytes()
    events = parse(body, now=datetime.fromisoformat(expected["now"]), zone=expected["zone"])
    assert [event_json(event) for event in events] == expected["events"]


@pytest.mark.parametrize("name", ["broken.ics", "not_a_calendar.html", "no_readable_event.ics"])
def test_a_body_that_is_not_a_readable_calendar_is_a_parse_error(name: str) -> None:
    with pytest.raises(ParseError):
        parse((CALENDARS / name).read_bytes(), now=NOW, zone="Europe/Paris")


@pytest.mark.parametrize(
    "body", [b"", b"   ", b"\x00\xff\xfe", b"BEGIN:VCARD\r\nFN:x\r\nEND:VCARD\r\n", b"{}"]
)
def test_empty_or_foreign_bodies_are_parse_errors(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse(body, now=NOW, zone="Europe/Paris")


def test_a_calendar_without_events_is_empty_not_an_error() -> None:
    # A region's export is legitimately empty in a quiet month.
    assert parse(calendar(), now=NOW, zone="Europe/Paris") == []


def test_agenda_du_libre_uids_are_the_keys_and_its_html_description_is_kept() -> None:
    event = parse_one(
        calendar(vevent("31204@agendadulibre.org", "20260214T130000Z", "DESCRIPTION:<p>Hi</p>"))
    )
    assert event.key == "31204@agendadulibre.org"
    assert event.description_html == "<p>Hi</p>"


def test_a_plain_text_description_becomes_html_with_its_lines() -> None:
    event = parse_one(calendar(vevent("a", "20260214T130000Z", "DESCRIPTION:un < deux\\ntrois")))
    assert event.description_html == "un &lt; deux<br>trois"


def test_an_html_alternative_description_wins_over_the_text_one() -> None:
    event = parse_one(
        calendar(
            vevent(
                "a",
                "20260214T130000Z",
                "DESCRIPTION:texte",
                "X-ALT-DESC;FMTTYPE=text/html:<p>riche</p>",
            )
        )
    )
    assert event.description_html == "<p>riche</p>"


def test_floating_times_follow_the_calendar_zone_first() -> None:
    body = calendar(vevent("a", "20260214T140000"), header="X-WR-TIMEZONE:America/Cayenne\r\n")
    assert parse_one(body, zone="Indian/Reunion").start == datetime(2026, 2, 14, 17, tzinfo=UTC)


def test_floating_times_without_a_calendar_zone_follow_the_given_zone() -> None:
    body = calendar(vevent("a", "20260214T140000"))
    assert parse_one(body, zone="Indian/Reunion").start == datetime(2026, 2, 14, 10, tzinfo=UTC)


def test_an_unknown_calendar_zone_falls_back_to_the_given_zone() -> None:
    body = calendar(vevent("a", "20260214T140000"), header="X-WR-TIMEZONE:Nowhere/Land\r\n")
    assert parse_one(body).start == datetime(2026, 2, 14, 13, tzinfo=UTC)


def test_all_day_events_keep_dates_distinct_from_times() -> None:
    event = parse_one(calendar(vevent("a", "20260214", "DTEND;VALUE=DATE:20260216")))
    assert event.start == date(2026, 2, 14) and event.end == date(2026, 2, 16)
    assert event.all_day


def test_a_duration_gives_the_end() -> None:
    event = parse_one(calendar(vevent("a", "20260214T130000Z", "DURATION:PT2H30M")))
    assert event.end == datetime(2026, 2, 14, 15, 30, tzinfo=UTC)


def test_an_end_before_the_start_is_dropped() -> None:
    event = parse_one(calendar(vevent("a", "20260214T130000Z", "DTEND:20260214T120000Z")))
    assert event.end is None


def test_a_city_after_a_postcode_is_told_apart_from_the_place() -> None:
    event = parse_one(
        calendar(
            vevent("a", "20260214T130000Z", "LOCATION:Salle 3\\, 2 rue Haute\\, 31000 Toulouse")
        )
    )
    assert (event.place, event.city) == ("Salle 3, 2 rue Haute", "Toulouse")


def test_a_location_without_a_separable_city_is_all_place() -> None:
    event = parse_one(calendar(vevent("a", "20260214T130000Z", "LOCATION:En ligne")))
    assert (event.place, event.city) == ("En ligne", None)


def test_a_title_is_one_line_of_plain_text() -> None:
    event = parse_one(calendar(vevent("a", "20260214T130000Z", summary="Un\\ntitre\tlong")))
    assert event.title == "Un titre long"


def test_only_web_urls_are_kept() -> None:
    event = parse_one(calendar(vevent("a", "20260214T130000Z", "URL:javascript:alert(1)")))
    assert event.url is None


def test_a_modified_occurrence_is_keyed_by_uid_and_recurrence_id() -> None:
    events = parse(
        calendar(
            vevent("s", "20260203T180000Z", "RRULE:FREQ=WEEKLY"),
            vevent("s", "20260211T180000Z", "RECURRENCE-ID:20260210T180000Z"),
        ),
        now=NOW,
        zone="Europe/Paris",
    )
    assert [event.key for event in events] == ["s", "s#20260210T180000Z"]
    assert events[1].rule is None


def test_the_higher_sequence_of_a_repeated_uid_wins() -> None:
    event = parse_one(
        calendar(
            vevent("a", "20260214T130000Z", "SEQUENCE:1", summary="Nouveau"),
            vevent("a", "20260214T130000Z", "SEQUENCE:0", summary="Ancien"),
        )
    )
    assert event.title == "Nouveau"


def test_without_uid_the_key_is_a_hash_of_title_start_and_place() -> None:
    body = calendar("DTSTART:20260214T130000Z\r\nSUMMARY:Sans UID")
    first, again = parse_one(body), parse_one(body)
    assert first.key.startswith("sha256:") and first.key == again.key


def test_a_cancelled_event_says_so() -> None:
    assert parse_one(calendar(vevent("a", "20260214T130000Z", "STATUS:CANCELLED"))).status == (
        "cancelled"
    )


def test_a_series_gets_its_rule_and_its_next_occurrence_skipping_excluded_dates() -> None:
    event = parse_one(
        calendar(
            vevent(
                "s",
                "20260106T180000Z",
                "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU",
                "EXDATE:20260203T180000Z",
            )
        )
    )
    assert event.rule is not None
    assert (event.rule.frequency, event.rule.interval, event.rule.weekdays) == (
        "WEEKLY",
        2,
        ((0, 1),),
    )
    assert event.next_start == datetime(2026, 2, 17, 18, tzinfo=UTC)


def test_a_cancelled_occurrence_is_not_the_next_one() -> None:
    events = parse(
        calendar(
            vevent("s", "20260106T180000Z", "RRULE:FREQ=WEEKLY"),
            vevent("s", "20260203T180000Z", "RECURRENCE-ID:20260203T180000Z", "STATUS:CANCELLED"),
        ),
        now=NOW,
        zone="Europe/Paris",
    )
    series = next(event for event in events if event.key == "s")
    assert series.next_start == datetime(2026, 2, 10, 18, tzinfo=UTC)


def test_a_finished_series_has_no_next_occurrence_and_is_past() -> None:
    event = parse_one(calendar(vevent("s", "20250106T180000Z", "RRULE:FREQ=WEEKLY;COUNT=3")))
    assert event.next_start is None
    assert is_past(event, NOW, zone="Europe/Paris")


def test_a_series_whose_next_occurrence_is_beyond_the_horizon_has_none() -> None:
    start = (NOW + HORIZON + timedelta(days=30)).strftime("%Y%m%dT%H%M%SZ")
    event = parse_one(
        calendar(vevent("s", "20200101T100000Z", f"RDATE:{start}", "RRULE:FREQ=YEARLY;COUNT=1"))
    )
    assert event.next_start is None


def test_an_hourly_rule_is_kept_but_not_expanded() -> None:
    event = parse_one(calendar(vevent("s", "19700101T000000Z", "RRULE:FREQ=SECONDLY")))
    assert event.rule is not None and event.rule.frequency == "SECONDLY"
    assert event.next_start is None


def test_a_daily_series_from_long_ago_is_expanded_quickly() -> None:
    started = time.perf_counter()
    event = parse_one(calendar(vevent("s", "19800101T180000Z", "RRULE:FREQ=DAILY")))
    assert event.next_start == datetime(2026, 2, 1, 18, tzinfo=UTC)
    assert time.perf_counter() - started < 5


def test_a_single_event_is_past_once_started() -> None:
    event = parse_one(calendar(vevent("a", "20260131T230000Z")))
    assert is_past(event, NOW, zone="Europe/Paris")
    assert not is_past(event, NOW - timedelta(hours=2), zone="Europe/Paris")


def test_a_huge_calendar_keeps_the_2000_soonest_upcoming_events() -> None:
    past = [
        vevent(f"p{n}", (NOW - timedelta(days=1 + n)).strftime("%Y%m%dT%H%M%SZ"))
        for n in range(500)
    ]
    future = [
        vevent(f"f{n}", (NOW + timedelta(hours=1 + n)).strftime("%Y%m%dT%H%M%SZ"))
        for n in range(2500)
    ]
    events = parse(calendar(*past, *future), now=NOW, zone="Europe/Paris")
    assert len(events) == MAX_EVENTS
    assert [event.key for event in events] == [f"f{n}" for n in range(MAX_EVENTS)]


def test_a_huge_calendar_fills_up_with_the_latest_past_events() -> None:
    past = [
        vevent(f"p{n}", (NOW - timedelta(days=1 + n)).strftime("%Y%m%dT%H%M%SZ"))
        for n in range(2100)
    ]
    future = [vevent("f", (NOW + timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ"))]
    events = parse(calendar(*past, *future), now=NOW, zone="Europe/Paris")
    assert len(events) == MAX_EVENTS
    assert events[-1].key == "f" and events[-2].key == "p0"
    assert "p2099" not in {event.key for event in events}


def test_an_all_day_event_starts_at_midnight_in_the_regions_zone() -> None:
    event = parse_one(calendar(vevent("a", "20260201")))
    # Midnight in Saint-Denis (UTC+4) is 20:00 UTC the day before; in Cayenne, 03:00 UTC.
    assert is_past(event, NOW, zone="Indian/Reunion")
    assert not is_past(event, NOW, zone="America/Cayenne")


def test_a_series_counts_as_upcoming_and_is_ordered_by_its_next_occurrence() -> None:
    events = parse(
        calendar(
            vevent("single", "20260203T100000Z"),
            vevent("series", "20200101T090000Z", "RRULE:FREQ=WEEKLY;BYDAY=MO"),
        ),
        now=NOW,
        zone="Europe/Paris",
    )
    assert [event.key for event in events] == ["series", "single"]  # Monday 2 February first
    assert not is_past(events[0], NOW, zone="Europe/Paris")


def test_a_rule_with_a_zero_interval_is_kept_but_not_expanded() -> None:
    event = parse_one(calendar(vevent("s", "20260106T180000Z", "RRULE:FREQ=WEEKLY;INTERVAL=0")))
    assert event.rule is not None and event.next_start is None


@pytest.mark.parametrize("start", ["00010101T000000Z", "99991231T230000Z", "18500101"])
def test_a_start_outside_sane_years_is_unreadable(start: str) -> None:
    with pytest.raises(ParseError):
        parse(calendar(vevent("a", start)), now=NOW, zone="Europe/Paris")


def test_a_daily_series_older_than_the_stepping_bound_has_no_next_occurrence() -> None:
    event = parse_one(calendar(vevent("s", "19000101T180000Z", "RRULE:FREQ=DAILY")))
    assert event.rule is not None and event.next_start is None


def test_many_old_series_stay_cheap_to_expand() -> None:
    series = [vevent(f"s{n}", "19800101T180000Z", "RRULE:FREQ=DAILY") for n in range(200)]
    started = time.perf_counter()
    events = parse(calendar(*series), now=NOW, zone="Europe/Paris")
    assert time.perf_counter() - started < 10
    expanded = [event for event in events if event.next_start is not None]
    # 46 years of days each: only the first few fit in the calendar's budget.
    assert 0 < len(expanded) < 10
