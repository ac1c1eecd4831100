"""The fr and en catalogues, plural forms, lists and dates."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.dates import format_date
from bot.i18n import CATALOGUES, join_list, plural, quote, t, t_html
from bot.zones import Zone

PARIS = Zone("Europe/Paris")


def placeholders(message: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(message) if field is not None}


def test_both_catalogues_have_the_same_keys() -> None:
    assert set(CATALOGUES["fr"]) == set(CATALOGUES["en"])


@pytest.mark.parametrize("key", sorted(CATALOGUES["fr"]))
def test_both_languages_use_the_same_placeholders(key: str) -> None:
    assert placeholders(CATALOGUES["fr"][key]) == placeholders(CATALOGUES["en"][key])


def test_every_plural_key_has_its_two_forms() -> None:
    for catalogue in CATALOGUES.values():
        stems = {key.rsplit(".", 1)[0] for key in catalogue if key.endswith((".one", ".other"))}
        for stem in stems:
            assert f"{stem}.one" in catalogue and f"{stem}.other" in catalogue


def test_no_message_is_empty_or_padded() -> None:
    for catalogue in CATALOGUES.values():
        for message in catalogue.values():
            assert message and message == message.strip()


def test_every_command_has_a_help_line_in_both_languages() -> None:
    commands = ("help", "orgs", "regions", "subscribe", "unsubscribe")
    for command in (*commands, "subscriptions", "latest", "status"):
        assert t("fr", f"help.{command}") and t("en", f"help.{command}")


def test_a_message_is_filled_in_from_its_parameters() -> None:
    assert t("en", "error.permission", level=50) == (
        "Sorry, only this room's moderators can do that (power level 50 needed)."
    )


def test_french_messages_use_french_typography() -> None:
    message = t("fr", "unsubscribe.not_subscribed", name="april")
    assert message == "Ce salon ne suit pas « april »."
    assert t("fr", "status.last_error", error="HTTP 500") == "dernière erreur : HTTP 500"


def test_an_unknown_key_is_an_error() -> None:
    with pytest.raises(KeyError):
        t("fr", "no.such.key")


def test_french_plural_is_singular_for_zero_and_one() -> None:
    assert plural("fr", "regions.line", 0, name="Bretagne", slug="bretagne").endswith(
        "0 organisation"
    )
    assert plural("fr", "regions.line", 1, name="Bretagne", slug="bretagne").endswith(
        "1 organisation"
    )
    assert plural("fr", "regions.line", 2, name="Bretagne", slug="bretagne").endswith(
        "2 organisations"
    )


def test_english_plural_is_singular_for_one_only() -> None:
    assert plural("en", "status.errors", 0) == "0 consecutive errors"
    assert plural("en", "status.errors", 1) == "1 consecutive error"


def test_lists_read_as_prose_in_each_language() -> None:
    names = [quote("fr", name) for name in ("april", "aprilf", "apriil")]
    assert join_list("fr", names, last="or") == "« april », « aprilf » ou « apriil »"
    assert join_list("en", ["a", "b"]) == "a and b"
    assert join_list("en", ["a"]) == "a"
    assert join_list("en", []) == ""


def test_html_messages_escape_their_text_but_not_their_parameters() -> None:
    assert t_html("en", "orgs.header_filtered", filter="<b>x</b>", count="2") == (
        "Organisations matching “<b>x</b>” (2):"
    )
    assert t_html("fr", "error.permission", level="50").count("'") == 0


def test_french_date_is_spelled_out_in_paris_time() -> None:
    # 21:01 UTC in January is 22:01 in Paris (UTC+1).
    when = datetime(2026, 1, 8, 21, 1, tzinfo=UTC)
    assert format_date(when, "fr", PARIS) == "jeudi 8 janvier 2026 à 22 h 01"


def test_english_date_is_spelled_out_in_paris_time() -> None:
    when = datetime(2026, 1, 8, 21, 1, tzinfo=UTC)
    assert format_date(when, "en", PARIS) == "Thursday 8 January 2026, 22:01"


def test_summer_dates_follow_paris_daylight_saving_time() -> None:
    when = datetime(2026, 7, 14, 8, 5, tzinfo=UTC)
    assert format_date(when, "fr", PARIS) == "mardi 14 juillet 2026 à 10 h 05"
    assert format_date(when, "en", PARIS) == "Tuesday 14 July 2026, 10:05"


def test_the_first_of_the_month_is_written_1er_in_french() -> None:
    when = datetime(2026, 4, 1, 7, 0, tzinfo=UTC)
    assert format_date(when, "fr", PARIS) == "mercredi 1er avril 2026 à 9 h 00"
    assert format_date(when, "en", PARIS) == "Wednesday 1 April 2026, 09:00"


def test_a_date_in_another_timezone_is_shown_in_paris_time() -> None:
    when = datetime(2026, 1, 8, 17, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert format_date(when, "fr", PARIS) == "jeudi 8 janvier 2026 à 23 h 01"


def test_a_naive_date_is_taken_as_utc() -> None:
    assert format_date(datetime(2026, 1, 8, 21, 1), "en", PARIS) == "Thursday 8 January 2026, 22:01"


def test_a_date_crossing_midnight_in_paris_changes_day() -> None:
    when = datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    assert format_date(when, "fr", PARIS) == "jeudi 1er janvier 2026 à 0 h 30"


def test_a_date_in_a_region_zone_is_shown_in_that_zone_and_named() -> None:
    when = datetime(2026, 1, 8, 21, 1, tzinfo=UTC)
    reunion = Zone("Indian/Reunion", "La Réunion")
    assert format_date(when, "fr", reunion) == (
        "vendredi 9 janvier 2026 à 1 h 01 (heure de La Réunion, UTC+4)"
    )
    assert format_date(when, "en", reunion) == (
        "Friday 9 January 2026, 01:01 (La Réunion time, UTC+4)"
    )


def test_a_zone_behind_utc_is_named_with_a_minus_offset() -> None:
    when = datetime(2026, 1, 8, 21, 1, tzinfo=UTC)
    guyane = Zone("America/Cayenne", "Guyane")
    assert format_date(when, "fr", guyane) == (
        "jeudi 8 janvier 2026 à 18 h 01 (heure de Guyane, UTC-3)"
    )
