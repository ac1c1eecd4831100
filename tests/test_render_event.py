"""Rendering calendar events into Matrix content: when, where, how often, in the room's words."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from bot.calendar import Event, Rule, parse
from bot.config import Language
from bot.event_words import rule_words
from bot.render import MAX_CONTENT_SIZE, content_size
from bot.render_event import EventSource, render_event
from bot.zones import Zone
from tests.html_safety import assert_safe

CALENDARS = Path(__file__).parent / "data" / "calendars"
PARIS = Zone("Europe/Paris")
REUNION = Zone("Indian/Reunion", "La Réunion")
TOULIBRE = EventSource("Occitanie", "Toulibre", "https://toulibre.org")
NOW = datetime(2026, 2, 1, tzinfo=UTC)


def event(**fields: object) -> Event:
    values: dict[str, object] = {
        "key": "31204@agendadulibre.org",
        "title": "Install-party GNU/Linux",
        "start": datetime(2026, 2, 14, 13, tzinfo=UTC),  # 14 h in Paris
        "end": datetime(2026, 2, 14, 17, tzinfo=UTC),
        "place": "Médiathèque José Cabanis",
        "city": "Toulouse",
        "url": "https://www.agendadulibre.org/events/31204",
        "description_html": "<p>Venez avec votre ordinateur.</p>",
        "status": "confirmed",
    }
    values.update(fields)
    return Event(**values)  # type: ignore[arg-type]


def when_line(content: dict[str, object]) -> str:
    body = str(content["body"])
    return body.split("\n")[3]


def golden(name: str, zone: str, now: datetime = NOW) -> list[Event]:
    return parse((CALENDARS / f"{name}.ics").read_bytes(), now=now, zone=zone)


def test_a_new_event_is_a_notice_with_its_linked_title_time_place_and_summary() -> None:
    content = render_event(event(), TOULIBRE, "fr", zone=PARIS)
    assert content["msgtype"] == "m.notice"
    assert content["body"] == (
        "Toulibre · Occitanie\n"
        "Install-party GNU/Linux\n"
        "https://www.agendadulibre.org/events/31204\n"
        "samedi 14 février 2026, 14 h – 18 h\n"
        "Lieu : Médiathèque José Cabanis, Toulouse\n"
        "\n"
        "Venez avec votre ordinateur."
    )
    assert content["formatted_body"] == (
        "<p><b>Toulibre</b> · Occitanie<br>"
        '<a href="https://www.agendadulibre.org/events/31204"><b>Install-party GNU/Linux</b></a>'
        "<br><i>samedi 14 février 2026, 14 h – 18 h</i><br>"
        "Lieu : Médiathèque José Cabanis, Toulouse</p>"
        "<blockquote><p>Venez avec votre ordinateur.</p></blockquote>"
    )


def test_english_hours_read_as_people_write_them() -> None:
    content = render_event(event(), TOULIBRE, "en", zone=PARIS)
    assert when_line(content) == "Saturday 14 February 2026, 2:00 – 6:00 pm"
    assert "Where: Médiathèque José Cabanis, Toulouse" in str(content["body"])


def test_minutes_are_written_only_when_there_are_some() -> None:
    half_past = event(start=datetime(2026, 2, 14, 13, 30, tzinfo=UTC))
    assert when_line(render_event(half_past, TOULIBRE, "fr", zone=PARIS)) == (
        "samedi 14 février 2026, 14 h 30 – 18 h"
    )


def test_a_morning_to_afternoon_event_names_both_halves_in_english() -> None:
    morning = event(start=datetime(2026, 2, 14, 9, tzinfo=UTC))
    assert when_line(render_event(morning, TOULIBRE, "en", zone=PARIS)) == (
        "Saturday 14 February 2026, 10:00 am – 6:00 pm"
    )


def test_an_event_without_end_shows_its_start_alone() -> None:
    content = render_event(event(end=None), TOULIBRE, "en", zone=PARIS)
    assert when_line(content) == "Saturday 14 February 2026, 2:00 pm"


def test_an_event_over_several_days_gives_both_days() -> None:
    long = event(end=datetime(2026, 2, 15, 17, tzinfo=UTC))
    assert when_line(render_event(long, TOULIBRE, "fr", zone=PARIS)) == (
        "samedi 14 février 2026, 14 h – dimanche 15 février 2026, 18 h"
    )


@pytest.mark.parametrize(
    ("start", "end", "language", "expected"),
    [
        (date(2026, 2, 14), date(2026, 2, 15), "fr", "samedi 14 février 2026"),
        (date(2026, 2, 14), None, "en", "Saturday 14 February 2026"),
        (date(2026, 3, 14), date(2026, 3, 16), "fr", "du samedi 14 au dimanche 15 mars 2026"),
        (date(2026, 3, 14), date(2026, 3, 16), "en", "Saturday 14 – Sunday 15 March 2026"),
        (
            date(2026, 2, 28),
            date(2026, 3, 2),
            "fr",
            "du samedi 28 février au dimanche 1er mars 2026",
        ),
        (
            date(2026, 12, 31),
            date(2027, 1, 2),
            "en",
            "Thursday 31 December 2026 – Friday 1 January 2027",
        ),
    ],
)
def test_all_day_events_show_their_days_without_hours(
    start: date, end: date | None, language: Language, expected: str
) -> None:
    all_day = event(start=start, end=end)
    assert when_line(render_event(all_day, TOULIBRE, language, zone=REUNION)) == expected


def test_an_event_given_in_utc_is_shown_in_reunion_time_named() -> None:
    (rencontre,) = golden("reunion_utc", "Indian/Reunion")
    content = render_event(rencontre, EventSource("La Réunion"), "fr", zone=REUNION)
    assert when_line(content) == (
        "samedi 14 février 2026, 14 h – 18 h (heure de La Réunion, UTC+4)"
    )
    assert str(content["body"]).startswith("La Réunion\n")


def test_a_series_across_the_spring_change_keeps_its_local_hour() -> None:
    weekly, _ = golden("dst_change", "Europe/Paris", datetime(2026, 3, 27, 12, tzinfo=UTC))
    content = render_event(weekly, TOULIBRE, "fr", zone=PARIS)
    assert when_line(content) == (
        "tous les jeudis — prochaine fois : jeudi 2 avril 2026, 19 h – 21 h"
    )


def test_a_night_across_the_autumn_change_shows_local_hours() -> None:
    _, night = golden("dst_change", "Europe/Paris", datetime(2026, 3, 27, 12, tzinfo=UTC))
    assert when_line(render_event(night, TOULIBRE, "fr", zone=PARIS)) == (
        "samedi 24 octobre 2026, 22 h – dimanche 25 octobre 2026, 4 h"
    )


def test_a_series_with_excluded_dates_shows_its_rule_and_next_meeting() -> None:
    permanence = golden("nextcloud", "Europe/Zurich")[0]
    content = render_event(permanence, TOULIBRE, "en", zone=Zone("Europe/Zurich", "Genève"))
    assert when_line(content) == (
        "every Tuesday — next: Tuesday 17 February 2026, 6:30 – 9:00 pm (Genève time, UTC+1)"
    )


def test_a_series_without_a_next_occurrence_shows_its_first_and_its_rule() -> None:
    finished = event(rule=Rule("WEEKLY", weekdays=((0, 5),)), next_start=None)
    lines = str(render_event(finished, TOULIBRE, "fr", zone=PARIS)["body"]).split("\n")
    assert lines[3:5] == ["samedi 14 février 2026, 14 h – 18 h", "tous les samedis"]


FIRST = date(2026, 2, 10)  # a Tuesday, the 10th


@pytest.mark.parametrize(
    ("rule", "french", "english"),
    [
        (Rule("DAILY"), "tous les jours", "every day"),
        (Rule("DAILY", interval=3), "tous les 3 jours", "every 3 days"),
        (Rule("WEEKLY"), "tous les mardis", "every Tuesday"),
        (
            Rule("WEEKLY", weekdays=((0, 1), (0, 3))),
            "tous les mardis et jeudis",
            "every Tuesday and Thursday",
        ),
        (
            Rule("WEEKLY", interval=2, weekdays=((0, 1),)),
            "un mardi sur deux",
            "every other Tuesday",
        ),
        (
            Rule("WEEKLY", interval=3, weekdays=((0, 4),)),
            "un vendredi toutes les 3 semaines",
            "every 3 weeks on Friday",
        ),
        (
            Rule("MONTHLY", weekdays=((2, 1),)),
            "le deuxième mardi du mois",
            "on the second Tuesday of the month",
        ),
        (
            Rule("MONTHLY", weekdays=((-1, 3),)),
            "le dernier jeudi du mois",
            "on the last Thursday of the month",
        ),
        (Rule("MONTHLY", month_days=(1,)), "le 1er de chaque mois", "on day 1 of each month"),
        (Rule("MONTHLY"), "le 10 de chaque mois", "on day 10 of each month"),
        (
            Rule("MONTHLY", interval=2, weekdays=((1, 5),)),
            "le premier samedi du mois, tous les 2 mois",
            "on the first Saturday of the month, every 2 months",
        ),
        (Rule("YEARLY"), "tous les ans", "every year"),
        (Rule("HOURLY"), "à intervalles réguliers", "repeatedly"),
    ],
)
def test_a_rule_is_put_into_words(rule: Rule, french: str, english: str) -> None:
    assert rule_words(rule, FIRST, "fr") == french
    assert rule_words(rule, FIRST, "en") == english


def test_an_event_without_url_links_to_its_sources_site() -> None:
    content = render_event(event(url=None), TOULIBRE, "fr", zone=PARIS)
    assert '<a href="https://toulibre.org"><b>Install-party GNU/Linux</b></a>' in str(
        content["formatted_body"]
    )


def test_an_event_without_any_link_has_a_plain_title() -> None:
    content = render_event(event(url=None), EventSource("Occitanie"), "fr", zone=PARIS)
    assert "<a " not in str(content["formatted_body"])
    assert str(content["body"]).split("\n")[:3] == [
        "Occitanie",
        "Install-party GNU/Linux",
        "samedi 14 février 2026, 14 h – 18 h",
    ]


@pytest.mark.parametrize(
    ("change", "language", "heading"),
    [
        ("changed", "fr", "Modifié : Install-party GNU/Linux"),
        ("cancelled", "fr", "Annulé : Install-party GNU/Linux"),
        ("changed", "en", "Changed: Install-party GNU/Linux"),
        ("cancelled", "en", "Cancelled: Install-party GNU/Linux"),
    ],
)
def test_a_change_or_cancellation_is_headed_so(
    change: str, language: Language, heading: str
) -> None:
    content = render_event(event(), TOULIBRE, language, zone=PARIS, change=change)  # type: ignore[arg-type]
    assert str(content["body"]).split("\n")[1] == heading
    assert f"<b>{heading}</b>" in str(content["formatted_body"])


def test_the_summary_is_sanitised_and_cut_like_entries() -> None:
    hostile = "<script>alert(1)</script><p onclick='x()'>" + "mot " * 400 + "</p>"
    content = render_event(event(description_html=hostile), TOULIBRE, "fr", zone=PARIS)
    assert_safe(str(content["formatted_body"]))
    assert "alert" not in str(content["body"])
    assert str(content["body"]).endswith("…")
    assert len(str(content["body"]).split("\n\n", 1)[1]) < 600


def test_titles_and_places_lose_control_and_direction_characters() -> None:
    sneaky = event(title="Atelier\u202e gnp.exe", place="Salle\x07 B")
    body = str(render_event(sneaky, TOULIBRE, "fr", zone=PARIS)["body"])
    assert "\u202e" not in body and "\x07" not in body
    assert "Lieu : Salle B, Toulouse" in body


def test_an_absurdly_large_event_still_fits_in_one_message() -> None:
    huge = event(
        title="T" * 100_000,
        place="P" * 100_000,
        description_html="<p>" + "<a href='https://x.org/'>x</a>" * 20_000 + "</p>",
    )
    content = render_event(huge, EventSource("R" * 5000, "O" * 5000), "fr", zone=PARIS)
    assert content_size(content) <= MAX_CONTENT_SIZE
