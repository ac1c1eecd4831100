"""Organisations in and out as OPML, and hostile OPML refused."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from bot.catalogue import Catalogue
from bot.config import load_config, parse_config
from bot.errors import OpmlError
from bot.opml import OpmlOutline, opml_to_yaml, organisations_from_opml, read_opml, write_opml

EXAMPLE = Path(__file__).resolve().parent.parent / "config.yaml.example"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE opml [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<opml version="2.0"><body>
  <outline text="&lol9;" xmlUrl="https://example.org/feed/"/>
</body></opml>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<opml version="2.0"><body>
  <outline text="&secret;" xmlUrl="https://example.org/feed/"/>
</body></opml>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE opml SYSTEM "http://attacker.example/evil.dtd">
<opml version="2.0"><body><outline text="A" xmlUrl="https://example.org/feed/"/></body></opml>
"""

FEED_READER_EXPORT = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0">
  <head><title>Mes abonnements</title></head>
  <body>
    <outline text="Île-de-France" title="Île-de-France">
      <outline type="rss" text="Parinux" xmlUrl="https://parinux.org/feed"
               htmlUrl="https://parinux.org"/>
      <outline text="Associations">
        <outline type="rss" title="Ethiciel" xmlurl="https://ethiciel.example/atom.xml"/>
      </outline>
    </outline>
    <outline type="rss" text="April" xmlUrl="https://www.april.org/fr/rss.xml"
             category="/Régions/France"/>
    <outline text="Sans flux"/>
  </body>
</opml>
""".encode()


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.from_config(load_config(EXAMPLE, env={}))


def regions_only(catalogue: Catalogue) -> Catalogue:
    return Catalogue({region.slug: region for region in catalogue.regions}, {})


def test_export_writes_one_outline_per_feed_with_the_region_as_category(
    catalogue: Catalogue,
) -> None:
    root = ET.fromstring(write_opml(catalogue))
    outlines = root.findall("./body/outline")
    assert len(outlines) == sum(len(org.feeds) for org in catalogue.organisations)
    april = next(o for o in outlines if o.get("text") == "April")
    assert april.attrib == {
        "text": "April",
        "title": "April",
        "type": "rss",
        "xmlUrl": "https://www.april.org/fr/rss.xml",
        "htmlUrl": "https://www.april.org",
        "category": "France",
    }


def test_export_accepts_organisations_and_regions(catalogue: Catalogue) -> None:
    regions = {region.slug: region for region in catalogue.regions}
    assert write_opml(catalogue.organisations, regions) == write_opml(catalogue)


def test_export_then_import_gives_back_the_organisations(catalogue: Catalogue) -> None:
    outlines = read_opml(write_opml(catalogue))
    regions = {region.slug: region for region in catalogue.regions}
    entries, warnings = organisations_from_opml(outlines, regions)
    assert warnings == []
    imported = {(e["name"], e["region"], e.get("url"), tuple(e["feeds"])) for e in entries.values()}
    original = {(o.name, o.region, o.url, o.feeds) for o in catalogue.organisations}
    assert imported == original


def test_imported_yaml_loads_as_configuration(catalogue: Catalogue) -> None:
    text, warnings = opml_to_yaml(read_opml(write_opml(catalogue)), regions_only(catalogue))
    assert warnings == []
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["organisations"] = yaml.safe_load(text)["organisations"]
    config = parse_config(data, base_dir=EXAMPLE.parent, env={})
    assert sorted(org.name for org in config.organisations.values()) == sorted(
        org.name for org in catalogue.organisations
    )
    assert config.organisations["mjc-chenove"].name == "MJC Chenôve"


def test_import_skips_organisations_the_configuration_already_has(catalogue: Catalogue) -> None:
    outlines = [*read_opml(write_opml(catalogue)), OpmlOutline("Nouvelle", "https://n.org/f")]
    text, warnings = opml_to_yaml(outlines, catalogue)
    assert list(yaml.safe_load(text)["organisations"]) == ["nouvelle"]
    assert sum("already belongs to organisation" in w for w in warnings) == 16


def test_nested_folders_become_categories() -> None:
    outlines = read_opml(FEED_READER_EXPORT)
    assert outlines == [
        OpmlOutline("Parinux", "https://parinux.org/feed", "https://parinux.org", "Île-de-France"),
        OpmlOutline("Ethiciel", "https://ethiciel.example/atom.xml", None, "Associations"),
        OpmlOutline("April", "https://www.april.org/fr/rss.xml", None, "/Régions/France"),
    ]


def test_import_matches_categories_to_regions_ignoring_accents_and_paths(
    catalogue: Catalogue,
) -> None:
    entries, warnings = organisations_from_opml(
        read_opml(FEED_READER_EXPORT), {region.slug: region for region in catalogue.regions}
    )
    assert entries["parinux"]["region"] == "ile-de-france"
    assert entries["april"]["region"] == "france"
    assert entries["ethiciel"]["region"] == "associations"
    assert warnings == [
        "'Ethiciel': unknown region 'Associations'; add it under regions or change the region"
    ]


def test_outlines_with_the_same_name_become_one_organisation_with_several_feeds() -> None:
    outlines = [
        OpmlOutline("April", "https://april.org/a", category="France"),
        OpmlOutline("april", "https://april.org/b", category="France"),
    ]
    entries, _ = organisations_from_opml(outlines, {})
    assert list(entries) == ["april"]
    assert entries["april"]["feeds"] == ["https://april.org/a", "https://april.org/b"]


def test_import_makes_unique_slugs_distinct_from_region_slugs(catalogue: Catalogue) -> None:
    outlines = [
        OpmlOutline("Bretagne", "https://a.org/f", category="Bretagne"),
        OpmlOutline("Bretagne!", "https://b.org/f", category="Bretagne"),
        OpmlOutline("Brétagne", "https://c.org/f", category="Bretagne"),
    ]
    regions = {region.slug: region for region in catalogue.regions}
    entries, _ = organisations_from_opml(outlines, regions)
    # "Bretagne!" normalises like "Bretagne": same organisation; "Brétagne" too.
    assert list(entries) == ["bretagne-2"]
    assert len(entries["bretagne-2"]["feeds"]) == 3


def test_import_reports_unusable_outlines() -> None:
    outlines = [
        OpmlOutline("Local", "file:///etc/passwd"),
        OpmlOutline("Sans région", "https://s.org/f", html_url="javascript:alert(1)"),
    ]
    entries, warnings = organisations_from_opml(outlines, {})
    assert list(entries) == ["sans-region"]
    assert entries["sans-region"]["region"] is None
    assert "url" not in entries["sans-region"]
    assert warnings == [
        "'Local': feed 'file:///etc/passwd' is not an http(s) URL; skipped",
        "'Sans région': no category in the OPML file; set its region",
        "'Sans région': homepage 'javascript:alert(1)' is not http(s); dropped",
    ]


def test_a_billion_laughs_opml_is_refused_cleanly() -> None:
    started = time.perf_counter()
    with pytest.raises(OpmlError, match="DTD"):
        read_opml(BILLION_LAUGHS)
    assert time.perf_counter() - started < 1


def test_an_external_entity_opml_is_refused_cleanly() -> None:
    with pytest.raises(OpmlError, match="OPML refused"):
        read_opml(EXTERNAL_ENTITY)


def test_an_external_dtd_is_refused() -> None:
    with pytest.raises(OpmlError, match="OPML refused"):
        read_opml(EXTERNAL_DTD)


def test_malformed_xml_is_reported_with_its_line() -> None:
    with pytest.raises(OpmlError, match="not well-formed XML at line 4, column 3"):
        read_opml(b"<opml>\n<body>\n<outline text='a'>\n</body></opml>")


def test_a_document_that_is_not_opml_is_refused() -> None:
    with pytest.raises(OpmlError, match=r"not an OPML document \(the root element is <rss>\)"):
        read_opml(b"<rss version='2.0'><channel/></rss>")


def test_an_opml_without_feeds_has_no_outlines() -> None:
    assert read_opml(b"<opml version='2.0'><head/><body/></opml>") == []


def test_an_empty_import_says_so(catalogue: Catalogue) -> None:
    text, warnings = opml_to_yaml([], catalogue)
    assert yaml.safe_load(text) == {"organisations": {}}
    assert warnings == ["no new organisation to import"]


def test_deeply_nested_folders_do_not_exhaust_the_stack() -> None:
    depth = 5000
    document = (
        "<opml version='2.0'><body>"
        + "<outline text='f'>" * depth
        + "<outline text='Deep' xmlUrl='https://d.org/f'/>"
        + "</outline>" * depth
        + "</body></opml>"
    ).encode()
    assert read_opml(document) == [OpmlOutline("Deep", "https://d.org/f", None, "f")]
