"""Organisations in and out as OPML: one outline per feed, the region as its category."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # only to build documents; reading goes through defusedxml
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import defusedxml
import defusedxml.ElementTree
import yaml

from .catalogue import Catalogue, normalise, slugify
from .config import MAX_NAME_LENGTH, MAX_SLUG_LENGTH, Organisation, Region, is_http_url
from .errors import OpmlError

# Far above any real subscription list; refuses a runaway file before parsing it.
MAX_OPML_BYTES = 16 * 1024 * 1024


ROOM_SOURCES = "Room sources"  # the group outline of the feeds rooms added themselves


@dataclass(frozen=True, slots=True)
class OpmlOutline:
    """One feed outline of an OPML file."""

    text: str  # display name: the text attribute, else title, else the feed URL
    xml_url: str
    html_url: str | None = None
    category: str | None = None  # the category attribute, else the enclosing folder's text


class OrganisationEntry(TypedDict):
    """An organisation as it is written under `organisations.<slug>` in the config file."""

    name: str
    region: str | None  # None when no region could be found; `crieur check` then flags it
    url: NotRequired[str]
    feeds: list[str]


def read_opml(data: bytes) -> list[OpmlOutline]:
    """Return the feed outlines of an OPML document, folders flattened into categories.

    The "Room sources" group of an export is left out: those feeds are no organisations.
    """
    if len(data) > MAX_OPML_BYTES:
        raise OpmlError(f"OPML file too large ({len(data)} bytes, at most {MAX_OPML_BYTES})")
    try:
        # OPML never needs a DTD, and a DTD is where entity bombs and external entities live.
        root = defusedxml.ElementTree.fromstring(data, forbid_dtd=True)
    except defusedxml.DTDForbidden:
        raise OpmlError(
            "OPML refused: it declares a DTD (<!DOCTYPE ...>), which OPML never needs "
            "and which can hide entity expansion or external entity attacks"
        ) from None
    except (defusedxml.EntitiesForbidden, defusedxml.ExternalReferenceForbidden):
        raise OpmlError("OPML refused: it declares XML entities") from None
    except defusedxml.DefusedXmlException as exc:
        raise OpmlError(f"OPML refused: {exc}") from None
    except ET.ParseError as exc:
        line, column = exc.position
        raise OpmlError(f"not well-formed XML at line {line}, column {column + 1}") from None

    if _local_name(root.tag) != "opml":
        raise OpmlError(f"not an OPML document (the root element is <{_local_name(root.tag)}>)")
    body = next((child for child in root if _local_name(child.tag) == "body"), None)
    if body is None:
        raise OpmlError("not an OPML document (it has no <body>)")

    outlines: list[OpmlOutline] = []
    # An explicit stack: nesting depth comes from the file, Python's recursion limit does not.
    stack: list[tuple[ET.Element, str | None]] = [(child, None) for child in reversed(body)]
    while stack:
        element, folder = stack.pop()
        if _local_name(element.tag) != "outline":
            continue
        # Exporters disagree on the case of xmlUrl/htmlUrl; OPML itself says xmlUrl.
        attributes = {key.lower(): value for key, value in element.attrib.items()}
        text = _clean(attributes.get("text")) or _clean(attributes.get("title"))
        xml_url = (attributes.get("xmlurl") or "").strip()
        if xml_url:
            outlines.append(
                OpmlOutline(
                    text=text or xml_url,
                    xml_url=xml_url,
                    html_url=(attributes.get("htmlurl") or "").strip() or None,
                    category=_clean(attributes.get("category")) or folder,
                )
            )
        if not xml_url and folder is None and text == ROOM_SOURCES:
            continue  # rooms' own feeds: rooms add them again with !subscribe URL
        child_folder = folder if xml_url else (text or folder)
        stack.extend((child, child_folder) for child in reversed(element))
    return outlines


def write_opml(
    source: Catalogue | Iterable[Organisation],
    regions: Mapping[str, Region] | None = None,
    *,
    title: str = "Crieur",
    room_sources: Iterable[OpmlOutline] = (),
) -> bytes:
    """Return an OPML 2.0 document with one outline per feed, its category the region's name.

    `source` is a catalogue (its regions are used) or organisations with `regions` by slug.
    The feeds rooms added themselves follow, in one group outline of their own.
    """
    if isinstance(source, Catalogue):
        organisations: Sequence[Organisation] = source.organisations
        region_names = {region.slug: region.name for region in source.regions}
    else:
        organisations = sorted(source, key=lambda org: (normalise(org.name), org.slug))
        region_names = {slug: region.name for slug, region in (regions or {}).items()}

    root = ET.Element("opml", version="2.0")
    ET.SubElement(ET.SubElement(root, "head"), "title").text = title
    body = ET.SubElement(root, "body")
    for organisation in organisations:
        for feed in organisation.feeds:
            attributes = {
                "text": organisation.name,
                "title": organisation.name,
                "type": "rss",
                "xmlUrl": feed,
            }
            if organisation.url:
                attributes["htmlUrl"] = organisation.url
            attributes["category"] = region_names.get(organisation.region, organisation.region)
            ET.SubElement(body, "outline", attributes)
    sources = list(room_sources)
    if sources:
        group = ET.SubElement(body, "outline", {"text": ROOM_SOURCES, "title": ROOM_SOURCES})
        for outline in sources:
            attributes = {
                "text": outline.text,
                "title": outline.text,
                "type": "rss",
                "xmlUrl": outline.xml_url,
            }
            if outline.html_url:
                attributes["htmlUrl"] = outline.html_url
            ET.SubElement(group, "outline", attributes)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def organisations_from_opml(
    outlines: Iterable[OpmlOutline],
    existing_regions: Mapping[str, Region],
    *,
    existing_organisations: Mapping[str, Organisation] | None = None,
) -> tuple[dict[str, OrganisationEntry], list[str]]:
    """Turn outlines into config entries by new unique slug, plus warnings for what needs care.

    Outlines with the same (normalised) text become one organisation with several feeds. The
    region comes from the outline's category, matched like a chat command's region name; an
    unknown category is kept as a slug (for `crieur check` to flag) and reported. Feeds that
    already belong to an existing organisation are skipped and reported.
    """
    existing = dict(existing_organisations or {})
    regions = Catalogue(existing_regions, {})
    known_feeds = {feed: org.slug for org in existing.values() for feed in org.feeds}
    taken = set(existing) | set(existing_regions)
    entries: dict[str, OrganisationEntry] = {}
    slug_by_name: dict[str, str] = {}
    warnings: list[str] = []

    for outline in outlines:
        name = outline.text
        if len(name) > MAX_NAME_LENGTH:
            name = name[:MAX_NAME_LENGTH].rstrip()
            warnings.append(f"{name!r}: name cut to {MAX_NAME_LENGTH} characters")
        if not is_http_url(outline.xml_url):
            warnings.append(f"{name!r}: feed {outline.xml_url!r} is not an http(s) URL; skipped")
            continue
        if outline.xml_url in known_feeds:
            owner = known_feeds[outline.xml_url]
            warnings.append(
                f"{name!r}: feed {outline.xml_url} already belongs to organisation "
                f"'{owner}'; skipped"
            )
            continue
        known_feeds[outline.xml_url] = ""

        key = normalise(name) or normalise(outline.xml_url)
        slug = slug_by_name.get(key)
        if slug is not None:
            entry = entries[slug]
            entry["feeds"].append(outline.xml_url)
            region = _match_region(outline.category, regions)
            if region is not None and entry["region"] not in (None, region):
                warnings.append(
                    f"{name!r}: feed {outline.xml_url} is filed under another region "
                    f"({outline.category!r}); kept '{entry['region']}'"
                )
            continue

        slug = _unique_slug(name, taken)
        taken.add(slug)
        slug_by_name[key] = slug
        region = _region_slug(name, outline.category, regions, warnings)
        feeds = [outline.xml_url]
        if outline.html_url and is_http_url(outline.html_url):
            # Built in this order so the YAML reads like config.yaml.example.
            entry = OrganisationEntry(name=name, region=region, url=outline.html_url, feeds=feeds)
        else:
            if outline.html_url:
                warnings.append(f"{name!r}: homepage {outline.html_url!r} is not http(s); dropped")
            entry = OrganisationEntry(name=name, region=region, feeds=feeds)
        entries[slug] = entry
    return entries, warnings


def opml_to_yaml(outlines: Iterable[OpmlOutline], catalogue: Catalogue) -> tuple[str, list[str]]:
    """Return an `organisations:` YAML block for the outlines new to catalogue, and warnings."""
    entries, warnings = organisations_from_opml(
        outlines,
        {region.slug: region for region in catalogue.regions},
        existing_organisations={org.slug: org for org in catalogue.organisations},
    )
    if not entries:
        warnings.append("no new organisation to import")
    text = yaml.dump(
        {"organisations": entries},
        Dumper=_IndentedDumper,
        allow_unicode=True,
        sort_keys=False,
        default_flow_style=False,
        width=100,
    )
    return text, warnings


class _IndentedDumper(yaml.SafeDumper):
    """Indent lists under their key, as people write them (and as config.yaml.example does)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _match_region(category: str | None, regions: Catalogue) -> str | None:
    """Return the slug of the region a category names, trying each part of an OPML path."""
    if not category:
        return None
    candidates = [category]
    # OPML 2.0 categories are comma-separated slash paths ("/Régions/Bretagne,/Libre").
    for part in category.split(","):
        segments = [segment for segment in part.split("/") if segment.strip()]
        candidates.extend(reversed(segments))
    for candidate in candidates:
        region = regions.find_region(candidate.strip())
        if region is not None:
            return region.slug
    return None


def _region_slug(
    name: str, category: str | None, regions: Catalogue, warnings: list[str]
) -> str | None:
    slug = _match_region(category, regions)
    if slug is not None:
        return slug
    if not category:
        warnings.append(f"{name!r}: no category in the OPML file; set its region")
        return None
    guess = slugify(category.split(",")[0].strip("/ ").rsplit("/", 1)[-1]) or None
    warnings.append(
        f"{name!r}: unknown region {category!r}; add it under regions or change the region"
    )
    return guess


def _unique_slug(name: str, taken: set[str]) -> str:
    base = slugify(name, max_length=MAX_SLUG_LENGTH - 4) or "organisation"
    slug, number = base, 2
    while slug in taken:
        slug, number = f"{base}-{number}", number + 1
    return slug


def _local_name(tag: str) -> str:
    """Drop a `{namespace}` prefix: some exporters put OPML in a namespace."""
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _clean(text: str | None) -> str:
    """Collapse runs of whitespace, which exporters leave in names."""
    return " ".join(text.split()) if text else ""
