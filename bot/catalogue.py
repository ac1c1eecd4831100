"""Organisations and regions: lookup by forgiving names, and suggestions for near misses."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import TypeVar

from .config import DEFAULT_TIMEZONE, Config, Organisation, Region
from .zones import Zone, region_zone, room_zone

# Suggestions cut the text to MAX_QUERY characters first: no real name is longer, and difflib
# is quadratic, so a pasted novel must cost no more than a short name.
MAX_QUERY = 64
# Configured names have at most 200 characters; a longer text cannot be one of them.
MAX_LOOKUP = 1000
SUGGEST_CUTOFF = 0.6
_NON_SLUG = re.compile(r"[^a-z0-9]+")


def normalise(text: str) -> str:
    """Fold case and accents, keep only letters and digits: `Île-de-France` → `iledefrance`."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if ch.isalnum() and not unicodedata.combining(ch))


def slugify(text: str, *, max_length: int = 64) -> str:
    """Turn a display name into a slug (`MJC Chenôve` → `mjc-chenove`); empty if nothing is left."""
    decomposed = unicodedata.normalize("NFKD", text[: max_length * 4].casefold())
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii")
    slug = _NON_SLUG.sub("-", ascii_text.replace("&", " et ")).strip("-")
    if len(slug) > max_length:
        slug = slug[:max_length].rstrip("-")
    return slug


def _sort_key(name: str, slug: str) -> tuple[str, str]:
    return normalise(name), slug


class Catalogue:
    """The organisations and regions of a configuration, matched ignoring case and accents.

    Names are looked up by slug first, then by display name, both normalised. When one text
    names both a region and an organisation, the region wins: regions are what rooms are about,
    and the configuration keeps organisation slugs distinct from region slugs, so an
    organisation stays reachable by its slug.
    """

    def __init__(
        self,
        regions: Mapping[str, Region],
        organisations: Mapping[str, Organisation],
        *,
        timezone: str = DEFAULT_TIMEZONE,
    ) -> None:
        self.timezone = timezone  # IANA name of the top-level zone
        for organisation in organisations.values():
            if organisation.region not in regions:
                raise ValueError(
                    f"organisation {organisation.slug!r} is in unknown region "
                    f"{organisation.region!r}"
                )
        self._regions = dict(regions)
        self._organisations = dict(organisations)
        self._sorted_regions = tuple(
            sorted(regions.values(), key=lambda r: _sort_key(r.name, r.slug))
        )
        self._sorted_organisations = tuple(
            sorted(organisations.values(), key=lambda o: _sort_key(o.name, o.slug))
        )
        self._region_index = _index(self._sorted_regions)
        self._organisation_index = _index(self._sorted_organisations)
        self._search_keys = [
            (normalise(o.name), normalise(o.slug), o) for o in self._sorted_organisations
        ]
        self._by_region: dict[str, list[Organisation]] = {slug: [] for slug in regions}
        for organisation in self._sorted_organisations:
            self._by_region[organisation.region].append(organisation)
        # Display names by normalised form, for suggestions; regions last so they win ties.
        self._names: dict[str, str] = {}
        items: tuple[Region | Organisation, ...] = (
            *self._sorted_organisations,
            *self._sorted_regions,
        )
        for item in items:
            for key in (normalise(item.slug), normalise(item.name)):
                if key:
                    self._names[key] = item.name
        self._name_keys = sorted(self._names)

    @classmethod
    def from_config(cls, config: Config) -> Catalogue:
        """Build the catalogue of a loaded configuration."""
        return cls(config.regions, config.organisations, timezone=config.timezone)

    @property
    def regions(self) -> tuple[Region, ...]:
        """Every region, sorted by name."""
        return self._sorted_regions

    @property
    def organisations(self) -> tuple[Organisation, ...]:
        """Every organisation, sorted by name."""
        return self._sorted_organisations

    def get_region(self, slug: str) -> Region | None:
        """Return the region with exactly this slug."""
        return self._regions.get(slug)

    def get_organisation(self, slug: str) -> Organisation | None:
        """Return the organisation with exactly this slug."""
        return self._organisations.get(slug)

    def find_region(self, text: str) -> Region | None:
        """Return the region whose slug or name matches text, ignoring case and accents."""
        return self._regions.get(text) or self._region_index.get(_lookup_key(text))

    def find_organisation(self, text: str) -> Organisation | None:
        """Return the organisation whose slug or name matches text, ignoring case and accents."""
        return self._organisations.get(text) or self._organisation_index.get(_lookup_key(text))

    def resolve(self, text: str) -> Organisation | Region | None:
        """Return the region or organisation text names; a region wins when both match."""
        if text in self._regions:
            return self._regions[text]
        if text in self._organisations:
            return self._organisations[text]
        return self.find_region(text) or self.find_organisation(text)

    def suggest(self, text: str, limit: int = 3) -> list[str]:
        """Return up to limit display names near text: prefixes, substrings, then look-alikes."""
        query = normalise(text[: MAX_QUERY * 4])[:MAX_QUERY]
        if not query or limit <= 0:
            return []
        found: list[str] = []

        def add(names: Iterable[str]) -> None:
            for name in names:
                if name not in found:
                    found.append(name)

        keys = self._name_keys
        add(self._names[key] for key in keys if key.startswith(query))
        if len(query) >= 3:  # shorter fragments are inside too many names to help
            add(self._names[key] for key in keys if query in key)
        if len(found) < limit:
            close = difflib.get_close_matches(query, keys, n=limit, cutoff=SUGGEST_CUTOFF)
            add(self._names[key] for key in close)
        return found[:limit]

    def organisations_in(self, region_slug: str) -> list[Organisation]:
        """Return the organisations of a region, sorted by name."""
        return list(self._by_region.get(region_slug, ()))

    def search_organisations(self, text: str) -> list[Organisation]:
        """Return the organisations of the region text names, else those whose name contains it."""
        region = self.find_region(text)
        if region is not None:
            return self.organisations_in(region.slug)
        if len(text) > MAX_LOOKUP:
            return []
        query = normalise(text)
        if not query:
            return list(self._sorted_organisations)
        return [org for name, slug, org in self._search_keys if query in name or query in slug]

    def region_of(self, organisation: Organisation) -> Region:
        """Return the region of an organisation of this catalogue."""
        return self._regions[organisation.region]

    def zone_of(self, item: Organisation | Region | None) -> Zone:
        """Return the zone dates of an organisation or region are shown in (None: the default)."""
        if isinstance(item, Organisation):
            item = self._regions.get(item.region)
        return region_zone(item, self.timezone)

    def room_zone(self, region_slugs: Iterable[str]) -> Zone:
        """Return the zone of a room following these regions, in the order it follows them."""
        known = (self._regions[slug] for slug in region_slugs if slug in self._regions)
        return room_zone(known, self.timezone)


def _lookup_key(text: str) -> str:
    """Normalise text for an exact lookup; empty (matching nothing) when it is too long."""
    return normalise(text) if len(text) <= MAX_LOOKUP else ""


_Item = TypeVar("_Item", Region, Organisation)


def _index(items: Iterable[_Item]) -> dict[str, _Item]:
    """Map normalised slugs and names to items; slugs win, so no name shadows a slug."""
    items = tuple(items)
    index: dict[str, _Item] = {}
    for item in items:
        index.setdefault(normalise(item.name), item)
    for item in items:
        index[normalise(item.slug)] = item
    index.pop("", None)
    return index
