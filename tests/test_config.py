"""The configuration file: what loads, and how each mistake is reported."""

from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path

import pytest

from bot.cli import EXIT_USER_ERROR, main
from bot.config import (
    Config,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
    resolve_config_path,
    schema_keys,
)
from bot.config import schema as config_schema
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.yaml.example"

MINIMAL = """\
matrix:
  homeserver: https://matrix.example.org
  user_id: "@crieur:example.org"
  password: secret
database: crieur.sqlite3
regions:
  ile-de-france:
    name: Île-de-France
    rooms: ["#libre-idf:example.org"]
  france:
    name: France
organisations:
  april:
    name: April
    region: france
    url: https://www.april.org
    feeds: [https://www.april.org/fr/rss.xml]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=env or {})
    return caught.value.lines()


def replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


def test_the_example_config_loads() -> None:
    config = load_config(EXAMPLE, env={})
    assert isinstance(config, Config)
    assert config.language == "fr"
    assert config.polling.interval == 1800
    assert config.polling.max_body == 5 * 1024 * 1024
    assert config.database == EXAMPLE.parent / "data" / "crieur.sqlite3"


def test_the_example_carries_the_reference_catalogue() -> None:
    config = load_config(EXAMPLE, env={})
    assert len(config.organisations) == 16
    assert {"ile-de-france", "la-reunion", "internet", "france", "geneve", "corse"} <= set(
        config.regions
    )
    assert config.regions["ile-de-france"].name == "Île-de-France"
    assert config.organisations["april"].feeds == ("https://www.april.org/fr/rss.xml",)
    assert config.organisations["framasoft"].feeds == ("https://framablog.org/feed/",)
    assert config.organisations["parinux"].region == "ile-de-france"
    assert config.organisations["itopie"].region == "geneve"
    assert config.organisations["wordpress-francophone"].region == "internet"


def test_every_unverified_feed_of_the_example_is_marked_guessed() -> None:
    known = {
        "https://www.april.org/fr/rss.xml",
        "https://framablog.org/feed/",
        "http://blog.mageia.org/fr/?feed=rss",
    }
    lines = EXAMPLE.read_text().splitlines()
    feed_lines = [line for line in lines if line.strip().startswith("feeds:")]
    assert len(feed_lines) == 16
    for line in feed_lines:
        if not any(url in line for url in known):
            assert line.rstrip().endswith("# guessed"), line


def test_a_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert config.matrix.device_name == "crieur"
    assert config.matrix.command_prefix == "!"
    assert config.matrix.accept_invites_from == ()
    assert config.polling.timeout == 20
    assert config.polling.max_age == 7 * 86400
    assert config.http.listen is None
    assert config.organisations["april"].interval is None


def test_five_mistakes_are_reported_together_each_with_its_key(tmp_path: Path) -> None:
    text = MINIMAL
    text = replace(text, '"@crieur:example.org"', "crieur")
    text = replace(text, "database: crieur.sqlite3", "database: crieur.sqlite3\nlanguage: de")
    text = replace(text, "region: france", "region: idf")
    text = replace(text, "url: https://www.april.org", "url: www.april.org")
    text += "polling:\n  interval: 5 minutes\n"
    lines = problems_of(tmp_path, text)
    assert lines == [
        "matrix.user_id: must be a Matrix user id like @name:example.org, not 'crieur'",
        "language: unknown language 'de' (use fr or en)",
        "polling.interval: invalid duration '5 minutes' (use 30s, 5m, 1h, 7d)",
        "organisations.april.region: unknown region 'idf'",
        "organisations.april.url: must be an http(s) URL, not 'www.april.org'",
    ]


def test_unknown_key_is_an_error_naming_its_path(tmp_path: Path) -> None:
    text = MINIMAL + "polling:\n  intervall: 5m\n"
    assert problems_of(tmp_path, text) == [
        "polling.intervall: unknown key (did you mean 'interval'?)"
    ]


def test_unknown_key_without_a_close_match_gets_no_suggestion(tmp_path: Path) -> None:
    text = replace(MINIMAL, "    name: April\n", "    name: April\n    colour: red\n")
    assert problems_of(tmp_path, text) == ["organisations.april.colour: unknown key"]


def test_unknown_region_reference_names_the_organisation_key(tmp_path: Path) -> None:
    text = replace(MINIMAL, "region: france", "region: idf")
    assert problems_of(tmp_path, text) == ["organisations.april.region: unknown region 'idf'"]


def test_a_region_written_by_its_display_name_points_to_its_slug(tmp_path: Path) -> None:
    text = replace(MINIMAL, "region: france", "region: Île-de-France")
    assert problems_of(tmp_path, text) == [
        "organisations.april.region: unknown region 'Île-de-France' (did you mean 'ile-de-france'?)"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("7d", 604800), ("1h30m", 5400), (45, 45)],
)
def test_durations_parse_to_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "1w", "-5m", "m", "", True, "5" * 100])
def test_malformed_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .* \(use 30s, 5m, 1h, 7d\)"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512KiB", 512 * 1024),
        ("5MiB", 5 * 1024 * 1024),
        ("1GiB", 1024**3),
        ("100KB", 100_000),
        ("2mb", 2_000_000),
        ("1.5MiB", 1572864),
        (4096, 4096),
    ],
)
def test_sizes_parse_to_bytes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["5M", "5 megabytes", "MiB", "-1KiB", False])
def test_malformed_sizes_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match=r"invalid size"):
        parse_size(text)


def test_polling_durations_and_sizes_reach_the_config(tmp_path: Path) -> None:
    text = MINIMAL + "polling:\n  interval: 5m\n  timeout: 10\n  max_body: 512KiB\n  max_age: 1d\n"
    text = replace(text, "    feeds: [https", "    interval: 2h\n    feeds: [https")
    config = load_config(write(tmp_path, text), env={})
    assert config.polling.interval == 300
    assert config.polling.timeout == 10
    assert config.polling.max_body == 512 * 1024
    assert config.polling.max_age == 86400
    assert config.organisations["april"].interval == 7200


def test_zero_and_absurd_limits_are_refused(tmp_path: Path) -> None:
    text = MINIMAL + "polling:\n  interval: 0s\n  max_body: 10GiB\n  concurrency: 0\n"
    assert problems_of(tmp_path, text) == [
        "polling.interval: must be longer than zero, not '0s'",
        "polling.concurrency: must be at least 1, not 0",
        "polling.max_body: too large: '10GiB' (at most 1GiB)",
    ]


def test_environment_secrets_override_the_file(tmp_path: Path) -> None:
    env = {"CRIEUR_MATRIX_PASSWORD": "from-env", "CRIEUR_MATRIX_ACCESS_TOKEN": "token"}
    config = load_config(write(tmp_path, MINIMAL), env=env)
    assert config.matrix.password == "from-env"
    assert config.matrix.access_token == "token"


def test_an_environment_secret_completes_a_file_without_one(tmp_path: Path) -> None:
    text = replace(MINIMAL, "  password: secret\n", "")
    config = load_config(write(tmp_path, text), env={"CRIEUR_MATRIX_ACCESS_TOKEN": "token"})
    assert config.matrix.access_token == "token"
    assert config.matrix.password is None


def test_an_empty_environment_variable_does_not_erase_the_file_secret(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={"CRIEUR_MATRIX_PASSWORD": ""})
    assert config.matrix.password == "secret"


def test_a_missing_secret_is_reported_under_matrix_password(tmp_path: Path) -> None:
    text = replace(MINIMAL, "  password: secret\n", "")
    (line,) = problems_of(tmp_path, text)
    assert line.startswith("matrix.password: missing")
    assert "CRIEUR_MATRIX_PASSWORD" in line


def test_secrets_stay_out_of_the_config_repr(tmp_path: Path) -> None:
    text = replace(MINIMAL, "password: secret", "password: hunter2")
    config = load_config(write(tmp_path, text), env={"CRIEUR_MATRIX_ACCESS_TOKEN": "tok123"})
    assert "hunter2" not in repr(config)
    assert "tok123" not in repr(config)


def test_missing_sections_are_named(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "language: en\n") == ["matrix: missing", "database: missing"]


def test_an_empty_organisation_is_reported_with_what_it_needs(tmp_path: Path) -> None:
    text = MINIMAL + "  parinux:\n"
    assert problems_of(tmp_path, text) == ["organisations.parinux: empty: expected name, region"]


@pytest.mark.parametrize(
    ("feeds", "problem"),
    [
        ("[]", "organisations.april.feeds: must list at least one entry"),
        (
            "https://www.april.org/fr/rss.xml",
            "organisations.april.feeds: must be a list (write [https://www.april.org/fr/rss.xml])"
            ", not text",
        ),
        (
            "[https://www.april.org/fr/rss.xml, ftp://april.org/feed]",
            "organisations.april.feeds[1]: must be an http(s) URL, not 'ftp://april.org/feed'",
        ),
        (
            "[https://www.april.org/fr/rss.xml, https://www.april.org/fr/rss.xml]",
            "organisations.april.feeds[1]: listed twice",
        ),
    ],
)
def test_feeds_must_be_a_non_empty_list_of_http_urls(
    tmp_path: Path, feeds: str, problem: str
) -> None:
    text = replace(MINIMAL, "feeds: [https://www.april.org/fr/rss.xml]", f"feeds: {feeds}")
    assert problems_of(tmp_path, text) == [problem]


def test_one_feed_cannot_belong_to_two_organisations(tmp_path: Path) -> None:
    text = MINIMAL + (
        "  april-bis:\n    name: April bis\n    region: france\n"
        "    feeds: [https://www.april.org/fr/rss.xml]\n"
    )
    assert problems_of(tmp_path, text) == [
        "organisations.april-bis.feeds[0]: already a source of organisation 'april'"
    ]


def test_an_organisation_slug_cannot_be_a_region_slug(tmp_path: Path) -> None:
    text = MINIMAL + (
        "  france:\n    name: France Libre\n    region: france\n"
        "    feeds: [https://france.example.org/feed/]\n"
    )
    (line,) = problems_of(tmp_path, text)
    assert line.startswith("organisations.france: 'france' is already a region slug")


@pytest.mark.parametrize("slug", ["Ile-de-France", "île", "ile_de_france", "-idf", "a--b"])
def test_region_keys_must_be_slugs(tmp_path: Path, slug: str) -> None:
    text = replace(MINIMAL, "  france:\n    name: France\n", f"  {slug}:\n    name: X\n")
    text = replace(text, "region: france", "region: ile-de-france")
    (line,) = problems_of(tmp_path, text)
    assert line.startswith(f"regions.{slug}: invalid slug")


@pytest.mark.parametrize(
    "room", ["#libre:example.org", "!abc:example.org", "!abcDEF123", "#a:[::1]:8448"]
)
def test_region_rooms_accept_aliases_and_room_ids(tmp_path: Path, room: str) -> None:
    text = replace(MINIMAL, '["#libre-idf:example.org"]', f'["{room}"]')
    assert load_config(write(tmp_path, text), env={}).regions["ile-de-france"].rooms == (room,)


@pytest.mark.parametrize("room", ["libre-idf", "#libre-idf", "@alice:example.org", "# x:y"])
def test_region_rooms_refuse_anything_else(tmp_path: Path, room: str) -> None:
    text = replace(MINIMAL, '["#libre-idf:example.org"]', f'["{room}"]')
    (line,) = problems_of(tmp_path, text)
    assert line.startswith("regions.ile-de-france.rooms[0]: must be a room alias")


def test_admins_and_invite_sources_are_checked_item_by_item(tmp_path: Path) -> None:
    text = replace(
        MINIMAL,
        "  password: secret\n",
        '  password: secret\n  admins: ["@alice:example.org", alice]\n'
        '  accept_invites_from: [example.org, "@bob:example.org", "not a server"]\n',
    )
    lines = problems_of(tmp_path, text)
    assert [line.split(":")[0] for line in lines] == [
        "matrix.admins[1]",
        "matrix.accept_invites_from[2]",
    ]


def test_the_language_can_be_english(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL + "language: en\n"), env={}).language == "en"


def test_the_time_zone_defaults_to_paris_and_regions_to_the_top_level_one(
    tmp_path: Path,
) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert config.timezone == "Europe/Paris"
    assert config.regions["france"].timezone is None


def test_the_top_level_and_region_time_zones_are_iana_names(tmp_path: Path) -> None:
    text = replace(
        MINIMAL, "    name: France\n", "    name: France\n    timezone: Indian/Reunion\n"
    )
    config = load_config(write(tmp_path, text + "timezone: America/Cayenne\n"), env={})
    assert config.timezone == "America/Cayenne"
    assert config.regions["france"].timezone == "Indian/Reunion"


@pytest.mark.parametrize("zone", ["Europe/Pariss", "Paris", "localtime", "../UTC", "Europe", "3"])
def test_an_unknown_region_time_zone_is_a_problem_naming_its_key(tmp_path: Path, zone: str) -> None:
    text = replace(MINIMAL, "    name: France\n", f"    name: France\n    timezone: {zone}\n")
    (line,) = problems_of(tmp_path, text)
    assert line.startswith("regions.france.timezone: ")
    assert "Europe/Paris" in line or "Indian/Reunion" in line  # the problem shows a valid form


def test_an_unknown_top_level_time_zone_is_a_problem_naming_its_key(tmp_path: Path) -> None:
    (line,) = problems_of(tmp_path, MINIMAL + "timezone: Mars/Olympus\n")
    assert line == (
        "timezone: unknown time zone 'Mars/Olympus' (use an IANA name like Indian/Reunion)"
    )


def test_the_example_gives_overseas_regions_their_time_zones() -> None:
    regions = load_config(EXAMPLE, env={}).regions
    zones = {slug: region.timezone for slug, region in regions.items()}
    assert zones["guadeloupe"] == "America/Guadeloupe"
    assert zones["martinique"] == "America/Martinique"
    assert zones["guyane"] == "America/Cayenne"
    assert zones["la-reunion"] == "Indian/Reunion"
    assert zones["mayotte"] == "Indian/Mayotte"
    assert zones["geneve"] == "Europe/Zurich"
    assert zones["collectivites-d-outre-mer"] is not None
    assert zones["ile-de-france"] is None


def test_the_http_listener_is_off_unless_configured(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + "http:\n  listen: 127.0.0.1:9100\n"), env={})
    assert config.http.listen == "127.0.0.1:9100"
    assert load_config(write(tmp_path, MINIMAL + "http:\n"), env={}).http.listen is None


@pytest.mark.parametrize("listen", ["9100", "localhost", "127.0.0.1:99999", ":9100"])
def test_the_http_listener_must_be_host_and_port(tmp_path: Path, listen: str) -> None:
    (line,) = problems_of(tmp_path, MINIMAL + f'http:\n  listen: "{listen}"\n')
    assert line.startswith("http.listen: must be host:port")


def test_a_relative_database_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "config.yaml"
    path.write_text(replace(MINIMAL, "database: crieur.sqlite3", "database: ../data/c.db"))
    assert load_config(path, env={}).database == tmp_path / "etc" / ".." / "data" / "c.db"


def test_an_absolute_database_path_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "c.db"
    text = replace(MINIMAL, "database: crieur.sqlite3", f"database: {target}")
    assert load_config(write(tmp_path, text), env={}).database == target


def test_parse_config_resolves_against_the_given_directory(tmp_path: Path) -> None:
    import yaml

    config = parse_config(yaml.safe_load(MINIMAL), base_dir=tmp_path, env={})
    assert config.database == tmp_path / "crieur.sqlite3"


def test_invalid_yaml_is_one_problem_with_its_line(tmp_path: Path) -> None:
    text = MINIMAL + "polling:\n  interval: 5m\n    timeout: 20s\n"
    (line,) = problems_of(tmp_path, text)
    assert re.search(r"config\.yaml: invalid YAML at line 20, column \d+: ", line), line


def test_an_unquoted_url_with_a_question_mark_in_a_list_gets_a_hint(tmp_path: Path) -> None:
    text = replace(MINIMAL, "rss.xml]", "rss.xml?lang=fr]")
    (line,) = problems_of(tmp_path, text)
    assert "quote URLs that contain '?'" in line


def test_a_duplicated_key_is_reported_with_both_lines(tmp_path: Path) -> None:
    text = MINIMAL + "  april:\n    name: April\n    region: france\n    feeds: [https://x.org/]\n"
    assert problems_of(tmp_path, text) == [
        "organisations.april: duplicate key (first at line 13, again at line 18)"
    ]


def test_a_missing_file_is_a_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nowhere.yaml", env={})
    (line,) = caught.value.lines()
    assert line.endswith("nowhere.yaml: config file not found")


def test_a_document_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "- just\n- a list\n") == [
        "the configuration must be a mapping of keys to values, not a list"
    ]


def test_an_empty_file_reports_the_required_sections(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "") == ["matrix: missing", "database: missing"]


def test_a_yaml_alias_bomb_is_rejected_quickly(tmp_path: Path) -> None:
    layers = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = f"*a{i - 1}"
        layers.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    text = MINIMAL + "polling:\n" + "".join(f"  {layer}\n" for layer in layers)
    text += "  interval: *a11\n"
    started = time.perf_counter()
    lines = problems_of(tmp_path, text)
    assert time.perf_counter() - started < 2
    assert "polling.interval: invalid duration a list (use 30s, 5m, 1h, 7d)" in lines


def test_the_config_path_comes_from_the_argument_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("")
    assert resolve_config_path("other.yaml", {"CRIEUR_CONFIG": "/env.yaml"}) == Path("other.yaml")


def test_the_config_path_prefers_a_local_config_yaml_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("")
    assert resolve_config_path(None, {"CRIEUR_CONFIG": "/env.yaml"}) == Path("config.yaml")


def test_the_config_path_falls_back_to_the_environment_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path(None, {"CRIEUR_CONFIG": "/env.yaml"}) == Path("/env.yaml")
    assert resolve_config_path(None, {}) == Path("config.yaml")


def test_every_config_key_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `([^`]+)` \|", doc, flags=re.MULTILINE)
    assert sorted(documented) == sorted(schema_keys())


def test_a_mistake_in_a_region_is_not_repeated_by_its_organisations(tmp_path: Path) -> None:
    text = replace(MINIMAL, "    name: France\n", "    names: France\n")
    assert problems_of(tmp_path, text) == [
        "regions.france.names: unknown key (did you mean 'name'?)",
        "regions.france.name: missing",
    ]


# -- encryption -----------------------------------------------------------------------------------


def with_matrix(tmp_path: Path, lines: str) -> Path:
    """Write the minimal configuration with `lines` added to its matrix section."""
    return write(tmp_path, replace(MINIMAL, "  password: secret\n", f"  password: secret\n{lines}"))


def without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_schema, "e2e_available", lambda: False)


def test_encryption_defaults_to_whether_the_extra_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = with_matrix(tmp_path, "")
    assert load_config(path, env={}).matrix.encryption is config_schema.e2e_available()
    assert load_config(path, env={}).matrix.trust == "cross-signed"
    without_the_extra(monkeypatch)
    assert load_config(path, env={}).matrix.encryption is False


def test_encryption_asked_for_without_the_extra_is_a_config_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    without_the_extra(monkeypatch)
    path = with_matrix(tmp_path, "  encryption: true\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    (line,) = caught.value.lines()
    assert line.startswith("matrix.encryption: is true but the e2e extra is not installed")
    for command in ("check", "run"):
        assert main([command, "-c", str(path)]) == EXIT_USER_ERROR
        assert "error: matrix.encryption: " in capsys.readouterr().err
    assert load_config(with_matrix(tmp_path, "  encryption: false\n"), env={})


def test_the_trust_policy_is_cross_signed_tofu_or_all(tmp_path: Path) -> None:
    for policy in ("cross-signed", "tofu", "all"):
        lines = f"  trust: {policy}\n"
        assert load_config(with_matrix(tmp_path, lines), env={}).matrix.trust == policy
    with pytest.raises(ConfigError) as caught:
        load_config(with_matrix(tmp_path, "  trust: verified\n"), env={})
    assert caught.value.lines() == [
        "matrix.trust: unknown trust policy 'verified' (use cross-signed, tofu or all)"
    ]


def test_the_admin_room_and_report_after_are_read_and_checked(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL), env={}).matrix.admin_room is None
    assert load_config(write(tmp_path, MINIMAL), env={}).polling.report_after == 86400.0
    text = replace(
        MINIMAL, "  password: secret\n", '  password: secret\n  admin_room: "#ops:x.org"\n'
    )
    config = load_config(write(tmp_path, text + "polling: {report_after: 6h}\n"), env={})
    assert (config.matrix.admin_room, config.polling.report_after) == ("#ops:x.org", 21600.0)
    bad = replace(MINIMAL, "  password: secret\n", "  password: secret\n  admin_room: ops\n")
    problems = problems_of(tmp_path, bad + "polling: {report_after: soon}\n")
    assert [line.split(":")[0] for line in problems] == [
        "matrix.admin_room",
        "polling.report_after",
    ]


def test_calendars_and_the_events_section_load(tmp_path: Path) -> None:
    text = replace(
        MINIMAL,
        "    name: France\n",
        "    name: France\n    events: ['https://agenda.example.org/events.ics?region=1']\n",
    ) + (
        "  parinux:\n    name: Parinux\n    region: ile-de-france\n"
        "    events: [https://parinux.example.org/agenda.ics]\n"
        "events:\n  announce_within: 30d\n  digest: {day: friday, time: '18:30'}\n"
    )
    config = load_config(write(tmp_path, text), env={})
    assert config.regions["france"].events == ("https://agenda.example.org/events.ics?region=1",)
    assert config.organisations["parinux"].events == ("https://parinux.example.org/agenda.ics",)
    assert config.organisations["parinux"].feeds == ()
    assert config.events.announce_within == 30 * 86400
    assert (config.events.digest_day, config.events.digest_time) == (4, (18, 30))


def test_the_events_section_has_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert config.events.announce_within == 60 * 86400
    assert (config.events.digest_day, config.events.digest_time) == (0, (8, 0))


@pytest.mark.parametrize(
    ("digest", "problem"),
    [
        ("{day: lundi}", "events.digest.day: must be a day of the week like monday, not 'lundi'"),
        ("{time: '25:00'}", "events.digest.time: must be a time of day written"),
        ("{time: '8h'}", "events.digest.time: must be a time of day written"),
        ("{when: monday}", "events.digest.when: unknown key"),
    ],
)
def test_the_digest_day_and_time_are_checked(tmp_path: Path, digest: str, problem: str) -> None:
    (line,) = problems_of(tmp_path, MINIMAL + f"events:\n  digest: {digest}\n")
    assert line.startswith(problem)


def test_an_organisation_needs_a_feed_a_calendar_or_a_site(tmp_path: Path) -> None:
    text = MINIMAL + "  parinux:\n    name: Parinux\n    region: ile-de-france\n"
    assert problems_of(tmp_path, text) == [
        "organisations.parinux: needs feeds, events or url (to discover its feed)"
    ]
    with_url = text + "    url: https://parinux.org/\n"
    assert load_config(write(tmp_path, with_url), env={}).organisations["parinux"].url


def test_a_calendar_url_belongs_to_one_source(tmp_path: Path) -> None:
    text = replace(
        MINIMAL,
        "    name: France\n",
        "    name: France\n    events: [https://a.example.org/x.ics]\n",
    ) + (
        "  parinux:\n    name: Parinux\n    region: ile-de-france\n"
        "    events: [https://a.example.org/x.ics]\n"
    )
    assert problems_of(tmp_path, text) == [
        "organisations.parinux.events[0]: already a source of region 'france'"
    ]
