"""YAML configuration into frozen dataclasses; every error names its dotted key."""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import yaml

from bot.errors import ConfigError

Language = Literal["fr", "en"]
Trust = Literal["tofu", "all"]

LANGUAGES: tuple[Language, ...] = ("fr", "en")
TRUST_POLICIES: tuple[Trust, ...] = ("tofu", "all")
E2E_MODULE = "vodozemac"  # what the e2e extra (matrix-nio[e2e]) adds and nio looks for
PASSWORD_ENV = "CRIEUR_MATRIX_PASSWORD"
ACCESS_TOKEN_ENV = "CRIEUR_MATRIX_ACCESS_TOKEN"
CONFIG_ENV = "CRIEUR_CONFIG"
DEFAULT_CONFIG_NAME = "config.yaml"


@dataclass(frozen=True, slots=True)
class MatrixConfig:
    """How the bot logs in to its homeserver and whom it listens to."""

    homeserver: str
    user_id: str
    password: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    device_name: str = "crieur"
    encryption: bool = False  # read from a file, the default is e2e_available()
    trust: Trust = "tofu"  # which devices of room members get the room keys
    admins: tuple[str, ...] = ()
    manage_power_level: int = 50
    command_prefix: str = "!"
    accept_invites_from: tuple[str, ...] = ()


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


@dataclass(frozen=True, slots=True)
class Organisation:
    """An organisation: its region, homepage and feeds."""

    slug: str
    name: str
    region: str  # a slug of Config.regions
    url: str | None = None
    feeds: tuple[str, ...] = ()
    interval: float | None = None  # seconds; None = polling.interval


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


# --- the schema -------------------------------------------------------------------------------

_TOP_KEYS = ("matrix", "database", "language", "polling", "http", "regions", "organisations")
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
)
_HTTP_KEYS = ("listen", "unhealthy_after")
_REGION_KEYS = ("name", "rooms")
_ORGANISATION_KEYS = ("name", "region", "url", "feeds", "interval")


def schema_keys() -> tuple[str, ...]:
    """Return every configuration key as a dotted path (`regions.<slug>.name` for slugs)."""
    sections = {
        "matrix": _MATRIX_KEYS,
        "polling": _POLLING_KEYS,
        "http": _HTTP_KEYS,
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


# Bounds that catch typos (an extra zero) before they hurt a homeserver or a feed's host.
MAX_DURATION = 365 * 86400.0
MAX_BODY = 1024**3
MAX_CONCURRENCY = 1024
MAX_POSTS_PER_POLL = 100
MAX_NAME_LENGTH = 200
MAX_SLUG_LENGTH = 64

_SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# A server name is a DNS name, an IPv4 address or a bracketed IPv6 literal, with an optional port.
_SERVER = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?"
_USER_ID_RE = re.compile(rf"@[^\s:]+:{_SERVER}")
_ROOM_ALIAS_RE = re.compile(rf"#[^\s:]+:{_SERVER}")
# Room ids of room version 12 have no server part ("!opaque"); older ones are "!opaque:server".
_ROOM_ID_RE = re.compile(rf"![^\s:]+(?::{_SERVER})?")
_SERVER_RE = re.compile(_SERVER)
_LISTEN_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")

_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_DURATION_RE = re.compile(rf"(?:{_NUMBER}[smhd])+")
_DURATION_PART_RE = re.compile(rf"({_NUMBER})([smhd])")
_PLAIN_NUMBER_RE = re.compile(_NUMBER)
# SI units are powers of 1000 and IEC units powers of 1024, as their standards say; a bare
# "5M" is refused because readers disagree on what it means.
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_SIZE_RE = re.compile(rf"({_NUMBER})\s*([a-z]*)")
# Keeps regexes and messages cheap whatever a hostile or mistaken value holds.
_MAX_SCALAR_TEXT = 64


# --- scalar parsers, usable on their own ------------------------------------------------------


def parse_duration(value: object) -> float:
    """Return the seconds in `30s`, `5m`, `1h`, `7d`, `1h30m` or a plain number of seconds."""
    error = ValueError(f"invalid duration {_show(value)} (use 30s, 5m, 1h, 7d)")
    if isinstance(value, bool):
        raise error
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if len(text) > _MAX_SCALAR_TEXT:
            raise error
        if _PLAIN_NUMBER_RE.fullmatch(text):
            seconds = float(text)
        elif _DURATION_RE.fullmatch(text):
            seconds = sum(
                float(number) * _DURATION_UNITS[unit]
                for number, unit in _DURATION_PART_RE.findall(text)
            )
        else:
            raise error
    else:
        raise error
    if not math.isfinite(seconds) or seconds < 0:
        raise error
    return seconds


def parse_size(value: object) -> int:
    """Return the bytes in `512KiB`, `5MiB`, `1GiB`, `100KB`, `2MB` or a plain number of bytes."""
    error = ValueError(f"invalid size {_show(value)} (use 512KiB, 5MiB, 1GiB)")
    if isinstance(value, bool):
        raise error
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and len(value) <= _MAX_SCALAR_TEXT:
        match = _SIZE_RE.fullmatch(value.strip().lower())
        if match is None or match.group(2) not in _SIZE_UNITS:
            raise error
        size = round(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    else:
        raise error
    if size < 0:
        raise error
    return size


def is_slug(text: str) -> bool:
    """Tell whether text is a slug: lowercase letters, digits and single inner hyphens."""
    return len(text) <= MAX_SLUG_LENGTH and _SLUG_RE.fullmatch(text) is not None


def is_user_id(text: str) -> bool:
    """Tell whether text looks like a Matrix user id (`@local:server`)."""
    return _USER_ID_RE.fullmatch(text) is not None


def is_room_reference(text: str) -> bool:
    """Tell whether text looks like a room alias (`#alias:server`) or a room id (`!id[:server]`)."""
    return _ROOM_ALIAS_RE.fullmatch(text) is not None or _ROOM_ID_RE.fullmatch(text) is not None


def is_http_url(text: str) -> bool:
    """Tell whether text is an absolute http(s) URL with a host."""
    if not text or text != text.strip() or any(ch.isspace() for ch in text):
        return False
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def e2e_available() -> bool:
    """Tell whether the e2e extra is installed, without importing it."""
    return importlib.util.find_spec(E2E_MODULE) is not None


# --- reading the file -------------------------------------------------------------------------


def resolve_config_path(arg: str | None, env: Mapping[str, str]) -> Path:
    """Pick the config file: `-c` if given, else ./config.yaml if it exists, else $CRIEUR_CONFIG."""
    if arg:
        return Path(arg)
    default = Path(DEFAULT_CONFIG_NAME)
    if default.exists():
        return default
    from_env = env.get(CONFIG_ENV, "")
    if from_env:
        return Path(from_env)
    return default


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the YAML file at path; raise one ConfigError listing every problem.

    `env` supplies the secrets (`CRIEUR_MATRIX_PASSWORD`, `CRIEUR_MATRIX_ACCESS_TOKEN`); it
    defaults to the process environment.
    """
    if env is None:
        env = os.environ
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("", f"{path}: config file not found")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [("", f"{path}: not UTF-8 text (invalid byte at offset {exc.start})")]
        ) from None
    except OSError as exc:
        raise ConfigError([("", f"{path}: cannot read config file ({exc.strerror})")]) from None
    data, duplicates = _load_yaml(text, str(path))
    problems = _Problems(duplicates)
    config = _parse(data, base_dir=path.absolute().parent, env=env, problems=problems)
    return problems.checked(config)


def parse_config(data: object, *, base_dir: Path, env: Mapping[str, str]) -> Config:
    """Turn loaded YAML data into a Config; raise one ConfigError listing every problem."""
    problems = _Problems()
    return problems.checked(_parse(data, base_dir=base_dir, env=env, problems=problems))


def _load_yaml(text: str, source: str) -> tuple[object, list[tuple[str, str]]]:
    """Parse YAML safely; return the data and the duplicated keys it silently merged."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        duplicates = _duplicate_keys(node)
        data: object = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        if exc.context and exc.problem and exc.problem.startswith("but "):
            what = f"{exc.context}, {exc.problem}"  # "expected a single document, but found …"
        if "'?'" in what:
            # PyYAML stops at "?" inside [...]: the usual culprit is an unquoted feed URL.
            what += " (quote URLs that contain '?')"
        raise ConfigError([("", f"{source}: invalid YAML{where}: {what}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"{source}: invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return data, duplicates


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _duplicate_keys(root: yaml.Node) -> list[tuple[str, str]]:
    """Find mapping keys given twice, which YAML would otherwise resolve silently (last wins)."""
    found: list[tuple[int, str, str]] = []
    visited: set[int] = set()  # aliases share nodes; walk each once so anchors cannot explode
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_lines: dict[str, int] = {}
            for key_node, value_node in node.value:
                child = path
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                    name = str(key_node.value)
                    child = _join(path, name)
                    line = key_node.start_mark.line + 1
                    if name in first_lines:
                        first = first_lines[name]
                        message = f"duplicate key (first at line {first}, again at line {line})"
                        found.append((line, child, message))
                    else:
                        first_lines[name] = line
                stack.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{index}]") for index, item in enumerate(node.value))
    found.sort()
    return [(key, message) for _, key, message in found]


# --- validation -------------------------------------------------------------------------------


class _Problems:
    """Collects (dotted key, message) pairs so every mistake is reported in one go."""

    def __init__(self, initial: Iterable[tuple[str, str]] = ()) -> None:
        self.items: list[tuple[str, str]] = list(initial)

    def add(self, key: str, message: str) -> None:
        self.items.append((key, message))

    def checked(self, config: Config | None) -> Config:
        """Return config, or raise every collected problem."""
        if self.items:
            raise ConfigError(self.items)
        if config is None:  # unreachable: the parser returns None only alongside a problem
            raise ConfigError([("", "invalid configuration")])
        return config


def _parse(
    data: object, *, base_dir: Path, env: Mapping[str, str], problems: _Problems
) -> Config | None:
    count = len(problems.items)
    top = _section(data, "", _TOP_KEYS, ("matrix", "database"), problems, allow_none=True)
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
            problems.add("language", f"unknown language {_show(value)} (use fr or en)")
    polling = _parse_polling(top.get("polling"), problems)
    http = _parse_http(top.get("http"), problems)
    regions = _parse_regions(top.get("regions"), problems)
    # A region with its own mistakes still counts as declared: one mistake, one problem.
    declared = {slug for slug, _, _ in _slug_entries(top.get("regions"), "regions", _Problems())}
    organisations = _parse_organisations(top.get("organisations"), regions, declared, problems)

    if len(problems.items) > count or matrix is None or database is None:
        return None
    return Config(
        matrix=matrix,
        database=database,
        language=language,
        polling=polling,
        regions=regions,
        organisations=organisations,
        http=http,
    )


def _parse_matrix(
    value: object, present: bool, env: Mapping[str, str], problems: _Problems
) -> MatrixConfig | None:
    if not present:
        return None  # _section already reported it missing
    section = _section(value, "matrix", _MATRIX_KEYS, ("homeserver", "user_id"), problems)
    if section is None:
        return None
    read = _Reader(section, "matrix", problems)
    homeserver = read.required("homeserver", _url)
    user_id = read.required("user_id", _user_id)
    password = read.optional("password", _secret, None)
    access_token = read.optional("access_token", _secret, None)
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
        device_name=read.optional("device_name", _name, defaults.device_name),
        encryption=_encryption(read, problems),
        trust=read.optional("trust", _trust, defaults.trust),
        admins=read.optional("admins", _list_of(_user_id), defaults.admins),
        manage_power_level=read.optional("manage_power_level", _int(), defaults.manage_power_level),
        command_prefix=read.optional("command_prefix", _prefix, defaults.command_prefix),
        accept_invites_from=read.optional(
            "accept_invites_from", _list_of(_inviter), defaults.accept_invites_from
        ),
    )
    return config if homeserver and user_id else None


def _encryption(read: _Reader, problems: _Problems) -> bool:
    """On by default when the e2e extra is installed; asked for without it is a mistake."""
    available = e2e_available()
    wanted = read.optional("encryption", _bool, available)
    if wanted and not available:
        problems.add(
            "matrix.encryption",
            "is true but the e2e extra is not installed: install crieur-bot[e2e] "
            "or set matrix.encryption: false",
        )
        return False
    return wanted


def _parse_database(
    value: object, present: bool, base_dir: Path, problems: _Problems
) -> Path | None:
    if not present:
        return None  # _section already reported it missing
    if not isinstance(value, str) or not value.strip():
        problems.add("database", "must be a file path (for example ./data/crieur.sqlite3)")
        return None
    if value == ":memory:":  # SQLite's in-memory database, for tests
        return Path(value)
    path = Path(value)
    return path if path.is_absolute() else base_dir / path


def _parse_polling(value: object, problems: _Problems) -> PollingConfig:
    defaults = PollingConfig()
    section = _section(value, "polling", _POLLING_KEYS, (), problems, allow_none=True)
    if section is None:
        return defaults
    read = _Reader(section, "polling", problems)
    return PollingConfig(
        interval=read.optional("interval", _duration, defaults.interval),
        timeout=read.optional("timeout", _duration, defaults.timeout),
        concurrency=read.optional("concurrency", _int(1, MAX_CONCURRENCY), defaults.concurrency),
        per_host=read.optional("per_host", _int(1, MAX_CONCURRENCY), defaults.per_host),
        max_body=read.optional("max_body", _size, defaults.max_body),
        max_posts_per_poll=read.optional(
            "max_posts_per_poll", _int(1, MAX_POSTS_PER_POLL), defaults.max_posts_per_poll
        ),
        max_age=read.optional("max_age", _duration, defaults.max_age),
        allow_private_networks=read.optional(
            "allow_private_networks", _bool, defaults.allow_private_networks
        ),
    )


def _parse_http(value: object, problems: _Problems) -> HttpConfig:
    defaults = HttpConfig()
    section = _section(value, "http", _HTTP_KEYS, (), problems, allow_none=True)
    if section is None:
        return defaults
    read = _Reader(section, "http", problems)
    return HttpConfig(
        listen=read.optional("listen", _listen, None),
        unhealthy_after=read.optional("unhealthy_after", _duration, defaults.unhealthy_after),
    )


def _parse_regions(value: object, problems: _Problems) -> dict[str, Region]:
    regions: dict[str, Region] = {}
    for slug, key, body in _slug_entries(value, "regions", problems):
        section = _section(body, key, _REGION_KEYS, ("name",), problems)
        if section is None:
            continue
        read = _Reader(section, key, problems)
        name = read.required("name", _name)
        no_rooms: tuple[str, ...] = ()
        rooms = read.optional("rooms", _list_of(_room), no_rooms)
        if name is not None:
            # A room listed twice in one region is harmless: keep the first.
            regions[slug] = Region(slug=slug, name=name, rooms=tuple(dict.fromkeys(rooms)))
    return regions


def _parse_organisations(
    value: object, regions: Mapping[str, Region], declared: set[str], problems: _Problems
) -> dict[str, Organisation]:
    organisations: dict[str, Organisation] = {}
    feed_owners: dict[str, str] = {}
    for slug, key, body in _slug_entries(value, "organisations", problems):
        if slug in declared:
            # Commands take either kind of name; equal slugs would make one unreachable.
            problems.add(key, f"'{slug}' is already a region slug; pick another organisation slug")
        section = _section(body, key, _ORGANISATION_KEYS, ("name", "region", "feeds"), problems)
        if section is None:
            continue
        read = _Reader(section, key, problems)
        name = read.required("name", _name)
        region = read.required("region", _text)
        if region is not None and region not in declared:
            problems.add(
                f"{key}.region", f"unknown region {_show(region)}{_region_hint(region, regions)}"
            )
            region = None
        url = read.optional("url", _url, None)
        feeds = read.required("feeds", _list_of(_url, non_empty=True))
        interval = read.optional("interval", _duration, None)
        listed: set[str] = set()
        for index, feed in enumerate(feeds or ()):
            # One feed, one organisation: entries are routed by the feed's owner.
            owner = feed_owners.setdefault(feed, slug)
            if owner != slug:
                problems.add(f"{key}.feeds[{index}]", f"already a feed of organisation '{owner}'")
            elif feed in listed:
                problems.add(f"{key}.feeds[{index}]", "listed twice")
            listed.add(feed)
        if name is not None and region is not None and feeds is not None:
            organisations[slug] = Organisation(
                slug=slug, name=name, region=region, url=url, feeds=feeds, interval=interval
            )
    return organisations


def _slug_entries(
    value: object, key: str, problems: _Problems
) -> Iterable[tuple[str, str, object]]:
    """Yield (slug, dotted key, body) for each well-named entry of a regions-like mapping."""
    if value is None:
        return
    if not isinstance(value, dict):
        problems.add(key, f"must be a mapping of slug to settings, not {_kind(value)}")
        return
    for slug, body in value.items():
        if not isinstance(slug, str):
            problems.add(f"{key}.{_show(slug)}", "slug must be text (quote it)")
        elif not is_slug(slug):
            problems.add(
                _join(key, _clip(slug)),
                "invalid slug: use lowercase letters, digits and hyphens (like ile-de-france)",
            )
        else:
            yield slug, f"{key}.{slug}", body


# --- typed field readers ----------------------------------------------------------------------

T = TypeVar("T")
_Check = Callable[[object], T]


class _Reader:
    """Reads the fields of one section, recording a problem for each invalid one."""

    def __init__(self, section: Mapping[str, object], prefix: str, problems: _Problems) -> None:
        self.section = section
        self.prefix = prefix
        self.problems = problems
        self.failed: set[str] = set()

    def required(self, key: str, check: _Check[T]) -> T | None:
        if key not in self.section:
            return None  # _section already reported it missing
        return self._run(key, check)

    def optional(self, key: str, check: _Check[T], default: T) -> T:
        if key not in self.section or self.section[key] is None:
            return default
        result = self._run(key, check)
        return default if result is None else result

    def _run(self, key: str, check: _Check[T]) -> T | None:
        try:
            return check(self.section[key])
        except _Invalid as exc:
            self.failed.add(key)
            self.problems.add(_join(_join(self.prefix, key), exc.suffix), exc.message)
            return None


class _Invalid(Exception):
    """A value failed its check; suffix locates it inside the value (like `[2]`)."""

    def __init__(self, message: str, suffix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.suffix = suffix


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"must be non-empty text, not {_kind(value)}")
    return value.strip()


def _name(value: object) -> str:
    text = _text(value)
    if len(text) > MAX_NAME_LENGTH:
        raise _Invalid(f"too long ({len(text)} characters, at most {MAX_NAME_LENGTH})")
    return text


def _secret(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Invalid(f"must be text (quote it), not {_kind(value)}")
    return value


def _prefix(value: object) -> str:
    if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
        raise _Invalid("must be non-empty text without spaces (like !)")
    if len(value) > 8:
        raise _Invalid("too long (at most 8 characters)")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, not {_show(value)}")
    return value


def _trust(value: object) -> Trust:
    for known in TRUST_POLICIES:
        if value == known:
            return known
    raise _Invalid(f"unknown trust policy {_show(value)} (use tofu or all)")


def _int(low: int | None = None, high: int | None = None) -> _Check[int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be a whole number, not {_show(value)}")
        if low is not None and value < low:
            raise _Invalid(f"must be at least {low}, not {value}")
        if high is not None and value > high:
            raise _Invalid(f"must be at most {high}, not {value}")
        return value

    return check


def _duration(value: object) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    if seconds <= 0:
        raise _Invalid(f"must be longer than zero, not {_show(value)}")
    if seconds > MAX_DURATION:
        raise _Invalid(f"too long: {_show(value)} (at most 365d)")
    return seconds


def _size(value: object) -> int:
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    if size <= 0:
        raise _Invalid(f"must be larger than zero, not {_show(value)}")
    if size > MAX_BODY:
        raise _Invalid(f"too large: {_show(value)} (at most 1GiB)")
    return size


def _url(value: object) -> str:
    if not isinstance(value, str) or not is_http_url(value.strip()):
        raise _Invalid(f"must be an http(s) URL, not {_show(value)}")
    return value.strip()


def _user_id(value: object) -> str:
    if not isinstance(value, str) or not is_user_id(value.strip()):
        raise _Invalid(f"must be a Matrix user id like @name:example.org, not {_show(value)}")
    return value.strip()


def _room(value: object) -> str:
    if not isinstance(value, str) or not is_room_reference(value.strip()):
        raise _Invalid(
            f"must be a room alias like #room:example.org or a room id like !id:example.org, "
            f"not {_show(value)}"
        )
    return value.strip()


def _inviter(value: object) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if is_user_id(text) or _SERVER_RE.fullmatch(text):
        return text
    raise _Invalid(
        f"must be a server name like example.org or a user id like @name:example.org, "
        f"not {_show(value)}"
    )


def _listen(value: object) -> str:
    text = value.strip() if isinstance(value, str) else ""
    match = _LISTEN_RE.fullmatch(text)
    if match is None or int(match.group(2)) > 65535:
        raise _Invalid(f"must be host:port like 127.0.0.1:9100, not {_show(value)}")
    return text


def _list_of(check: _Check[T], *, non_empty: bool = False) -> _Check[tuple[T, ...]]:
    def check_list(value: object) -> tuple[T, ...]:
        if not isinstance(value, list):
            hint = f" (write [{_clip(value)}])" if isinstance(value, str) else ""
            raise _Invalid(f"must be a list{hint}, not {_kind(value)}")
        if non_empty and not value:
            raise _Invalid("must list at least one entry")
        items: list[T] = []
        for index, item in enumerate(value):
            try:
                items.append(check(item))
            except _Invalid as exc:
                # Report the first bad item only: one mistake is usually repeated down a list.
                raise _Invalid(exc.message, f"[{index}]") from None
        return tuple(items)

    return check_list


# --- sections and messages --------------------------------------------------------------------


def _section(
    value: object,
    key: str,
    allowed: tuple[str, ...],
    required: tuple[str, ...],
    problems: _Problems,
    *,
    allow_none: bool = False,
) -> dict[str, object] | None:
    """Check that value is a mapping with known keys; report unknown and missing ones."""
    if value is None and allow_none:
        value = {}
    if value is None:
        problems.add(key, f"empty: expected {', '.join(required or allowed)}")
        return None
    if not isinstance(value, dict):
        subject = "must be" if key else "the configuration must be"
        problems.add(key, f"{subject} a mapping of keys to values, not {_kind(value)}")
        return None
    section: dict[str, object] = {}
    for name, item in value.items():
        if not isinstance(name, str):
            problems.add(_join(key, _show(name)), "key must be text (quote it)")
        elif name not in allowed:
            problems.add(_join(key, _clip(name)), f"unknown key{_hint(name, allowed)}")
        else:
            section[name] = item
    for name in required:
        if name not in section:
            problems.add(_join(key, name), "missing")
    return section


def _hint(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' when a choice is close to word, else ''."""
    close = difflib.get_close_matches(word[:_MAX_SCALAR_TEXT], list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _region_hint(value: str, regions: Mapping[str, Region]) -> str:
    """Point from a region's display name, or a near miss, to the slug to write."""
    for region in regions.values():
        if region.name.casefold() == value.casefold():
            return f" (did you mean '{region.slug}'?)"
    return _hint(value, regions)


def _join(prefix: str, key: str) -> str:
    if not key:
        return prefix
    if not prefix:
        return key
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_SCALAR_TEXT else text[: _MAX_SCALAR_TEXT - 1] + "…"


def _show(value: object) -> str:
    """Quote a value for a message, short enough for one line."""
    if isinstance(value, str):
        return repr(_clip(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return _kind(value)


def _kind(value: object) -> str:
    """Name the YAML type of a value, with its article, for messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "text"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"
