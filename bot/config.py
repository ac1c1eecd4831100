"""YAML configuration into frozen dataclasses; every error names its dotted key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Language = Literal["fr", "en"]


@dataclass(frozen=True, slots=True)
class MatrixConfig:
    homeserver: str
    user_id: str
    password: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    device_name: str = "crieur"
    encryption: bool = False
    admins: tuple[str, ...] = ()
    manage_power_level: int = 50
    command_prefix: str = "!"
    accept_invites_from: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PollingConfig:
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
    listen: str | None = None  # "host:port"; None = no health/metrics listener


@dataclass(frozen=True, slots=True)
class Region:
    slug: str
    name: str
    rooms: tuple[str, ...] = ()  # aliases or room ids


@dataclass(frozen=True, slots=True)
class Organisation:
    slug: str
    name: str
    region: str  # a slug of Config.regions
    url: str | None = None
    feeds: tuple[str, ...] = ()
    interval: float | None = None  # seconds; None = polling.interval


@dataclass(frozen=True, slots=True)
class Config:
    matrix: MatrixConfig
    database: Path
    language: Language = "fr"
    polling: PollingConfig = PollingConfig()
    regions: Mapping[str, Region] = field(default_factory=dict)
    organisations: Mapping[str, Organisation] = field(default_factory=dict)
    http: HttpConfig = HttpConfig()
