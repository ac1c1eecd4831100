"""Which time zone a date is shown in, and whether the zone must be named beside it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from .config import DEFAULT_TIMEZONE, Region


@dataclass(frozen=True, slots=True)
class Zone:
    """A zone dates are shown in; `place` names it when it is not the configured default."""

    key: str = DEFAULT_TIMEZONE  # IANA name
    place: str | None = None  # e.g. "La Réunion"; None: the top-level zone, left unnamed

    @property
    def info(self) -> ZoneInfo:
        """Return the zone itself (zoneinfo caches it)."""
        return ZoneInfo(self.key)

    def local(self, moment: datetime) -> datetime:
        """Return `moment` in this zone; a naive one is taken as UTC, as the store keeps it."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(self.info)


def region_zone(region: Region | None, default: str = DEFAULT_TIMEZONE) -> Zone:
    """Return the zone of `region`, named after it when it differs from `default`."""
    if region is None or region.timezone is None or region.timezone == default:
        return Zone(default)
    return Zone(region.timezone, region.name)


def room_zone(followed: Iterable[Region], default: str = DEFAULT_TIMEZONE) -> Zone:
    """Return a room's own zone: its first followed region's, else `default`."""
    for region in followed:
        return region_zone(region, default)
    return Zone(default)


def utc_offset(moment: datetime) -> str:
    """Return an aware moment's offset as people write it: `UTC+4`, `UTC-3`, `UTC+5:30`."""
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")
