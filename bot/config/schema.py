"""The configuration's shape: frozen dataclasses, their keys, and YAML data turned into them."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import validate as check
from .source import read_source
from .validate import Problems, Reader, hint
from .values import (
    DEFAULT_RETENTION,
    DEFAULT_TIMEZONE,
    LANGUAGES,
    MAX_CONCURRENCY,
    MAX_OWN_FEEDS,
    MAX_POSTS_PER_POLL,
    Language,
    Trust,
    show,
)

E2E_MODULE = "vodozemac"  # what the e2e extra (matrix-nio[e2e]) adds and nio looks for
# What the e2e extra adds for the bot's cross-signing identity.
E2E_SIGNING_MODULES = ("signedjson", "canonicaljson")
PASSWORD_ENV = "CRIEUR_MATRIX_PASSWORD"
ACCESS_TOKEN_ENV = "CRIEUR_MATRIX_ACCESS_TOKEN"


@dataclass(frozen=True, slots=True)
class MatrixConfig:
    """How the bot logs in to its homeserver and whom it listens to."""

    homeserver: str
    user_id: str
    password: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    device_name: str = "crieur"
    encryption: bool = False  # read from a file, the default is e2e_available()
    # Which devices of room members get room keys and may run commands: as Element, by default.
    trust: Trust = "cross-signed"
    admins: tuple[str, ...] = ()
    manage_power_level: int = 50
    command_prefix: str = "!"
    accept_invites_from: tuple[str, ...] = ()
    admin_room: str | None = None  # alias or room id where the bot reports to its operators


@dataclass(frozen=True, slots=True)
class PollingConfig:
    """How often and how carefully feeds are fetched."""

    interval: float = 1800.0  # seconds
    timeout: float = 20.0  # seconds
    concurrency: int = 16
    per_host: int = 2
    max_body: int = 5 * 1024 * 1024  # bytes
    max_posts_per_poll: int = 5
    max_age: float = 7 * 86400.0  # seconds
    allow_private_networks: bool = False
    report_after: float = 86400.0  # seconds a feed fails before matrix.admin_room is told


@dataclass(frozen=True, slots=True)
class RoomsConfig:
    """What a room may add of its own."""

    max_own_feeds: int = 20  # feeds one room may follow with !subscribe URL


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The optional health and metrics listener."""

    listen: str | None = None  # "host:port"; None = no health/metrics listener
    unhealthy_after: float = 90.0  # seconds the homeserver may fail before /health says 503


@dataclass(frozen=True, slots=True)
class Region:
    """A region: a display name and the rooms that follow it from the start."""

    slug: str
    name: str
    rooms: tuple[str, ...] = ()  # aliases or room ids
    timezone: str | None = None  # IANA name; None = the top-level timezone
    events: tuple[str, ...] = ()  # iCalendar URLs whose events belong to the region


@dataclass(frozen=True, slots=True)
class Organisation:
    """An organisation: its region, homepage, feeds and calendars."""

    slug: str
    name: str
    region: str  # a slug of Config.regions
    url: str | None = None
    feeds: tuple[str, ...] = ()
    interval: float | None = None  # seconds; None = polling.interval
    events: tuple[str, ...] = ()  # iCalendar URLs


@dataclass(frozen=True, slots=True)
class EventsConfig:
    """When events are announced, and when the weekly agenda is posted."""

    announce_within: float = 60 * 86400.0  # seconds: an event further ahead waits
    digest_day: int = 0  # 0 = Monday
    digest_time: tuple[int, int] = (8, 0)  # hour, minute in the room's zone


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    matrix: MatrixConfig
    database: Path
    language: Language = "fr"
    polling: PollingConfig = PollingConfig()
    regions: Mapping[str, Region] = field(default_factory=dict)
    organisations: Mapping[str, Organisation] = field(default_factory=dict)
    http: HttpConfig = HttpConfig()
    rooms: RoomsConfig = RoomsConfig()
    timezone: str = DEFAULT_TIMEZONE  # IANA name: dates of anything not tied to a region
    events: EventsConfig = EventsConfig()
    retention: float = DEFAULT_RETENTION  # seconds entries are kept (each feed's newest 200 always)


# --- the schema -------------------------------------------------------------------------------

_TOP_KEYS = (
    "matrix",
    "rooms",
    "database",
    "language",
    "timezone",
    "polling",
    "http",
    "regions",
    "organisations",
    "events",
    "retention",
)
_MATRIX_KEYS = (
    "homeserver",
    "user_id",
    "password",
    "access_token",
    "device_name",
    "encryption",
    "trust",
    "admins",
    "manage_power_level",
    "command_prefix",
    "accept_invites_from",
    "admin_room",
)
_POLLING_KEYS = (
    "interval",
    "timeout",
    "concurrency",
    "per_host",
    "max_body",
    "max_posts_per_poll",
    "max_age",
    "allow_private_networks",
    "report_after",
)
_HTTP_KEYS = ("listen", "unhealthy_after")
_ROOMS_KEYS = ("max_own_feeds",)
_REGION_KEYS = ("name", "rooms", "timezone", "events")
_ORGANISATION_KEYS = ("name", "region", "url", "feeds", "events", "interval")
_EVENTS_KEYS = ("announce_within", "digest")
_DIGEST_KEYS = ("day", "time")


def schema_keys() -> tuple[str, ...]:
    """Return every configuration key as a dotted path (`regions.<slug>.name` for slugs)."""
    sections = {
        "matrix": _MATRIX_KEYS,
        "polling": _POLLING_KEYS,
        "http": _HTTP_KEYS,
        "rooms": _ROOMS_KEYS,
        "events": ("announce_within", "digest.day", "digest.time"),
        "regions": tuple(f"<slug>.{key}" for key in _REGION_KEYS),
        "organisations": tuple(f"<slug>.{key}" for key in _ORGANISATION_KEYS),
    }
    keys: list[str] = []
    for top in _TOP_KEYS:
        if top in sections:
            keys.extend(f"{top}.{key}" for key in sections[top])
        else:
            keys.append(top)
    return tuple(keys)


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the YAML file at path; raise one ConfigError listing every problem.

    `env` supplies the secrets (`CRIEUR_MATRIX_PASSWORD`, `CRIEUR_MATRIX_ACCESS_TOKEN`); it
    defaults to the process environment.
    """
    if env is None:
        env = os.environ
    data, found = read_source(path)
    problems = Problems(found)
    config = _parse(data, base_dir=path.absolute().parent, env=env, problems=problems)
    return problems.checked(config)


def parse_config(data: object, *, base_dir: Path, env: Mapping[str, str]) -> Config:
    """Turn loaded YAML data into a Config; raise one ConfigError listing every problem."""
    problems = Problems()
    return problems.checked(_parse(data, base_dir=base_dir, env=env, problems=problems))


def e2e_available() -> bool:
    """Tell whether the e2e extra is installed, without importing it."""
    modules = (E2E_MODULE, *E2E_SIGNING_MODULES)
    return all(importlib.util.find_spec(module) is not None for module in modules)


def _parse(
    data: object, *, base_dir: Path, env: Mapping[str, str], problems: Problems
) -> Config | None:
    count = len(problems.items)
    top = check.section(data, "", _TOP_KEYS, ("matrix", "database"), problems, allow_none=True)
    if top is None:
        return None

    matrix = _parse_matrix(top.get("matrix"), "matrix" in top, env, problems)
    database = _parse_database(top.get("database"), "database" in top, base_dir, problems)
    language: Language = "fr"
    if "language" in top:
        value = top["language"]
        for known in LANGUAGES:
            if value == known:
                language = known
                break
        else:
            problems.add("language", f"unknown language {show(value)} (use fr or en)")
    read = Reader(top, "", problems)
    timezone = read.optional("timezone", check.timezone, DEFAULT_TIMEZONE)
    retention = read.optional("retention", check.retention, DEFAULT_RETENTION)
    polling = _parse_polling(top.get("polling"), problems)
    http = _parse_http(top.get("http"), problems)
    rooms = _parse_rooms(top.get("rooms"), problems)
    events = _parse_events(top.get("events"), problems)
    owners: dict[str, str] = {}  # URL → who has it: one URL, one source
    regions = _parse_regions(top.get("regions"), owners, problems)
    # A region with its own mistakes still counts as declared: one mistake, one problem.
    declared = {
        slug for slug, _, _ in check.slug_entries(top.get("regions"), "regions", Problems())
    }
    organisations = _parse_organisations(
        top.get("organisations"), regions, declared, owners, problems
    )

    if len(problems.items) > count or matrix is None or database is None:
        return None
    return Config(
        matrix, database, language, polling, regions, organisations, http, rooms, timezone, events,
        retention,
    )  # fmt: skip


def _parse_matrix(
    value: object, present: bool, env: Mapping[str, str], problems: Problems
) -> MatrixConfig | None:
    if not present:
        return None  # check.section() already reported it missing
    section = check.section(value, "matrix", _MATRIX_KEYS, ("homeserver", "user_id"), problems)
    if section is None:
        return None
    read = Reader(section, "matrix", problems)
    homeserver = read.required("homeserver", check.url)
    user_id = read.required("user_id", check.user_id)
    password = read.optional("password", check.secret, None)
    access_token = read.optional("access_token", check.secret, None)
    # The environment wins so a committed file can keep placeholders; empty variables are unset.
    password = env.get(PASSWORD_ENV) or password
    access_token = env.get(ACCESS_TOKEN_ENV) or access_token
    if password is None and access_token is None and "password" not in read.failed:
        problems.add(
            "matrix.password",
            "missing: set matrix.password or matrix.access_token "
            f"(or the {PASSWORD_ENV} / {ACCESS_TOKEN_ENV} environment variables)",
        )
    defaults = MatrixConfig(homeserver="", user_id="")
    config = MatrixConfig(
        homeserver=homeserver or "",
        user_id=user_id or "",
        password=password,
        access_token=access_token,
        device_name=read.optional("device_name", check.name, defaults.device_name),
        encryption=_encryption(read, problems),
        trust=read.optional("trust", check.trust, defaults.trust),
        admins=read.optional("admins", check.list_of(check.user_id), defaults.admins),
        manage_power_level=read.optional(
            "manage_power_level", check.whole_number(), defaults.manage_power_level
        ),
        command_prefix=read.optional("command_prefix", check.prefix, defaults.command_prefix),
        accept_invites_from=read.optional(
            "accept_invites_from", check.list_of(check.inviter), defaults.accept_invites_from
        ),
        admin_room=read.optional("admin_room", check.room, defaults.admin_room),
    )
    return config if homeserver and user_id else None


def _encryption(read: Reader, problems: Problems) -> bool:
    """On by default when the e2e extra is installed; asked for without it is a mistake."""
    available = e2e_available()
    wanted = read.optional("encryption", check.boolean, available)
    if wanted and not available:
        problems.add(
            "matrix.encryption",
            "is true but the e2e extra is not installed: install crieur-bot[e2e] "
            "or set matrix.encryption: false",
        )
        return False
    return wanted


def _parse_database(
    value: object, present: bool, base_dir: Path, problems: Problems
) -> Path | None:
    if not present:
        return None  # check.section() already reported it missing
    if not isinstance(value, str) or not value.strip():
        problems.add("database", "must be a file path (for example ./data/crieur.sqlite3)")
        return None
    if value == ":memory:":  # SQLite's in-memory database, for tests
        return Path(value)
    path = Path(value)
    return path if path.is_absolute() else base_dir / path


def _optional_section(value: object, key: str, keys: tuple[str, ...], problems: Problems) -> Reader:
    """Return a reader of a section that may be left out: read as empty when it is wrong."""
    found = check.section(value, key, keys, (), problems, allow_none=True)
    return Reader(found or {}, key, problems)


def _parse_polling(value: object, problems: Problems) -> PollingConfig:
    defaults = PollingConfig()
    read = _optional_section(value, "polling", _POLLING_KEYS, problems)
    return PollingConfig(
        interval=read.optional("interval", check.duration, defaults.interval),
        timeout=read.optional("timeout", check.duration, defaults.timeout),
        concurrency=read.optional(
            "concurrency", check.whole_number(1, MAX_CONCURRENCY), defaults.concurrency
        ),
        per_host=read.optional(
            "per_host", check.whole_number(1, MAX_CONCURRENCY), defaults.per_host
        ),
        max_body=read.optional("max_body", check.size, defaults.max_body),
        max_posts_per_poll=read.optional(
            "max_posts_per_poll",
            check.whole_number(1, MAX_POSTS_PER_POLL),
            defaults.max_posts_per_poll,
        ),
        max_age=read.optional("max_age", check.duration, defaults.max_age),
        allow_private_networks=read.optional(
            "allow_private_networks", check.boolean, defaults.allow_private_networks
        ),
        report_after=read.optional("report_after", check.duration, defaults.report_after),
    )


def _parse_http(value: object, problems: Problems) -> HttpConfig:
    defaults = HttpConfig()
    read = _optional_section(value, "http", _HTTP_KEYS, problems)
    return HttpConfig(
        listen=read.optional("listen", check.listen, None),
        unhealthy_after=read.optional("unhealthy_after", check.duration, defaults.unhealthy_after),
    )


def _parse_rooms(value: object, problems: Problems) -> RoomsConfig:
    defaults = RoomsConfig()
    read = _optional_section(value, "rooms", _ROOMS_KEYS, problems)
    return RoomsConfig(
        max_own_feeds=read.optional(
            "max_own_feeds", check.whole_number(0, MAX_OWN_FEEDS), defaults.max_own_feeds
        ),
    )


def _parse_events(value: object, problems: Problems) -> EventsConfig:
    defaults = EventsConfig()
    read = _optional_section(value, "events", _EVENTS_KEYS, problems)
    digest = _optional_section(read.section.get("digest"), "events.digest", _DIGEST_KEYS, problems)
    return EventsConfig(
        announce_within=read.optional("announce_within", check.duration, defaults.announce_within),
        digest_day=digest.optional("day", check.weekday, defaults.digest_day),
        digest_time=digest.optional("time", check.time_of_day, defaults.digest_time),
    )


def _owned(
    urls: tuple[str, ...], key: str, owner: str, owners: dict[str, str], problems: Problems
) -> None:
    """Record who has each URL; report one listed twice or already another's."""
    for index, url in enumerate(urls):
        known = owners.setdefault(url, owner)
        if known != owner:
            problems.add(f"{key}[{index}]", f"already a source of {known}")
        elif url in urls[:index]:
            problems.add(f"{key}[{index}]", "listed twice")


def _parse_regions(value: object, owners: dict[str, str], problems: Problems) -> dict[str, Region]:
    regions: dict[str, Region] = {}
    for slug, key, body in check.slug_entries(value, "regions", problems):
        section = check.section(body, key, _REGION_KEYS, ("name",), problems)
        if section is None:
            continue
        read = Reader(section, key, problems)
        name = read.required("name", check.name)
        no_rooms: tuple[str, ...] = ()
        rooms = read.optional("rooms", check.list_of(check.room), no_rooms)
        timezone = read.optional("timezone", check.timezone, None)
        no_events: tuple[str, ...] = ()
        events = read.optional("events", check.list_of(check.url), no_events)
        _owned(events, f"{key}.events", f"region '{slug}'", owners, problems)
        if name is not None:
            # A room listed twice in one region is harmless: keep the first.
            regions[slug] = Region(
                slug=slug,
                name=name,
                rooms=tuple(dict.fromkeys(rooms)),
                timezone=timezone,
                events=tuple(dict.fromkeys(events)),
            )
    return regions


def _parse_organisations(
    value: object,
    regions: Mapping[str, Region],
    declared: set[str],
    owners: dict[str, str],
    problems: Problems,
) -> dict[str, Organisation]:
    organisations: dict[str, Organisation] = {}
    for slug, key, body in check.slug_entries(value, "organisations", problems):
        if slug in declared:
            # Commands take either kind of name; equal slugs would make one unreachable.
            problems.add(key, f"'{slug}' is already a region slug; pick another organisation slug")
        section = check.section(body, key, _ORGANISATION_KEYS, ("name", "region"), problems)
        if section is None:
            continue
        read = Reader(section, key, problems)
        name = read.required("name", check.name)
        region = read.required("region", check.text)
        if region is not None and region not in declared:
            problems.add(
                f"{key}.region", f"unknown region {show(region)}{_region_hint(region, regions)}"
            )
            region = None
        url = read.optional("url", check.url, None)
        none: tuple[str, ...] = ()
        feeds = read.optional("feeds", check.list_of(check.url, non_empty=True), none)
        events = read.optional("events", check.list_of(check.url, non_empty=True), none)
        interval = read.optional("interval", check.duration, None)
        # One URL, one source: entries and events are routed by their source's owner.
        _owned(feeds, f"{key}.feeds", f"organisation '{slug}'", owners, problems)
        _owned(events, f"{key}.events", f"organisation '{slug}'", owners, problems)
        if not any(source in section for source in ("feeds", "events", "url")):
            problems.add(key, "needs feeds, events or url (to discover its feed)")
        if name is not None and region is not None:
            organisations[slug] = Organisation(
                slug=slug,
                name=name,
                region=region,
                url=url,
                feeds=feeds,
                interval=interval,
                events=events,
            )
    return organisations


def _region_hint(value: str, regions: Mapping[str, Region]) -> str:
    """Point from a region's display name, or a near miss, to the slug to write."""
    for region in regions.values():
        if region.name.casefold() == value.casefold():
            return f" (did you mean '{region.slug}'?)"
    return hint(value, regions)
