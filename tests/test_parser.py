"""Parser: golden feeds of the kinds the community publishes, and the rules entries follow."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ParseError
from bot.model import Entry
from bot.parser import MAX_ENTRIES, MAX_SUMMARY_BYTES, MAX_TITLE, UNTITLED_TITLE, parse

FEEDS = Path(__file__).parent / "data" / "feeds"
FEED_URL = "https://asso.example.org/feed.xml"
GOLDEN = sorted(path.name.removesuffix(".expected.json") for path in FEEDS.glob("*.expected.json"))


def rss(*items: str, root_attributes: str = "") -> bytes:
    """Build an RSS 2.0 document around the given items."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<rss version="2.0"{root_attributes}><channel><title>Asso</title>'
        "<link>https://asso.example.org/</link><description>Nouvelles</description>"
        f"{''.join(items)}</channel></rss>"
    ).encode()


def item(
    title: str | None = "Titre",
    *,
    guid: str | None = None,
    link: str | None = None,
    date: str | None = None,
    description: str | None = None,
    extra: str = "",
) -> str:
    """Build one RSS item; values are inserted as XML, unescaped."""
    parts = [
        f"<title>{title}</title>" if title is not None else "",
        f"<guid>{guid}</guid>" if guid is not None else "",
        f"<link>{link}</link>" if link is not None else "",
        f"<pubDate>{date}</pubDate>" if date is not None else "",
        f"<description>{description}</description>" if description is not None else "",
        extra,
    ]
    return f"<item>{''.join(parts)}</item>"


def atom(*entries: str) -> bytes:
    """Build an Atom document around the given entries."""
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>Asso</title><id>urn:uuid:60a76c80-d399-11d9-b93c-0003939e0af6</id>"
        f"<updated>2026-01-08T10:00:00Z</updated>{''.join(entries)}</feed>"
    ).encode()


def utc(text: str) -> datetime:
    """Read an ISO 8601 instant written in a test."""
    return datetime.fromisoformat(text).astimezone(UTC)


# --- golden feeds ------------------------------------------------------------------------

BROKEN = {
    "not_a_feed.html": "not an RSS or Atom feed",
    "empty.xml": "empty",
    "truncated.xml": "truncated",
    "zero_items.xml": "no entries",
}
BROKEN_NAMES = [name.rsplit(".", 1)[0] for name in BROKEN]


def _view(entries: list[Entry], expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Show entries in the shape of the expected file, so that a failure diff reads well."""
    view = []
    for entry, wanted in zip(entries, expected, strict=True):
        published = None
        if entry.published is not None:
            published = entry.published.isoformat()
            if entry.published.utcoffset() == timedelta(0):
                published = entry.published.strftime("%Y-%m-%dT%H:%M:%SZ")
        shown: dict[str, Any] = {
            "key": entry.key,
            "title": entry.title,
            "link": entry.link,
            "published": published,
        }
        if "summary_html" in wanted:
            shown["summary_html"] = entry.summary_html
        if "summary_startswith" in wanted:
            shown["summary_startswith"] = entry.summary_html[: len(wanted["summary_startswith"])]
        if "summary_endswith" in wanted:
            shown["summary_endswith"] = entry.summary_html[-len(wanted["summary_endswith"]) :]
        view.append(shown)
    return view


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_feed_gives_the_expected_entries(name: str) -> None:
    expected = json.loads((FEEDS / f"{name}.expected.json").read_text(encoding="utf-8"))
    body = (FEEDS / f"{name}.xml").read_bytes()

    entries = parse(body, feed_url=expected["feed_url"])

    assert [entry.key for entry in entries] == [wanted["key"] for wanted in expected["entries"]]
    assert _view(entries, expected["entries"]) == expected["entries"]


def test_every_golden_feed_has_its_expected_file() -> None:
    feeds = {path.stem for path in FEEDS.glob("*.xml")} - set(BROKEN_NAMES)
    assert feeds == set(GOLDEN)


@pytest.mark.parametrize(("name", "message"), sorted(BROKEN.items()))
def test_broken_body_is_a_parse_error(name: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse((FEEDS / name).read_bytes(), feed_url=FEED_URL)


# --- order -------------------------------------------------------------------------------


def test_entries_come_oldest_first() -> None:
    body = rss(
        item("Trois", guid="3", date="Thu, 08 Jan 2026 10:00:00 +0000"),
        item("Un", guid="1", date="Mon, 05 Jan 2026 10:00:00 +0000"),
        item("Deux", guid="2", date="Tue, 06 Jan 2026 10:00:00 +0000"),
    )

    assert [entry.title for entry in parse(body, feed_url=FEED_URL)] == ["Un", "Deux", "Trois"]


def test_entries_without_dates_come_in_reverse_document_order() -> None:
    body = rss(item("Récent", guid="c"), item("Moyen", guid="b"), item("Ancien", guid="a"))

    assert [e.title for e in parse(body, feed_url=FEED_URL)] == ["Ancien", "Moyen", "Récent"]


def test_undated_entry_stays_after_the_entry_it_followed() -> None:
    # Newest first: "Sans date" sits between the 8th and the 5th, so it is newer than the 5th.
    body = rss(
        item("Le 8", guid="8", date="Thu, 08 Jan 2026 10:00:00 +0000"),
        item("Sans date", guid="x"),
        item("Le 5", guid="5", date="Mon, 05 Jan 2026 10:00:00 +0000"),
        item("Sans date non plus", guid="y"),
    )

    titles = [entry.title for entry in parse(body, feed_url=FEED_URL)]

    assert titles == ["Sans date non plus", "Le 5", "Sans date", "Le 8"]


def test_feed_listed_oldest_first_keeps_its_undated_entries_in_document_order() -> None:
    body = rss(
        item("Le 5", guid="5", date="Mon, 05 Jan 2026 10:00:00 +0000"),
        item("Le 6", guid="6", date="Tue, 06 Jan 2026 10:00:00 +0000"),
        item("Sans date", guid="x"),
        item("Le 8", guid="8", date="Thu, 08 Jan 2026 10:00:00 +0000"),
    )

    titles = [entry.title for entry in parse(body, feed_url=FEED_URL)]

    assert titles == ["Le 5", "Le 6", "Sans date", "Le 8"]


def test_entries_with_the_same_date_keep_reverse_document_order() -> None:
    same = "Mon, 05 Jan 2026 10:00:00 +0000"
    body = rss(item("B", guid="b", date=same), item("A", guid="a", date=same))

    assert [entry.title for entry in parse(body, feed_url=FEED_URL)] == ["A", "B"]


# --- dates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "date",
    [
        "Thu, 08 Jan 2026 10:32:44 +0100",
        "Thu, 08 Jan 2026 04:32:44 -0500",
        "Thu, 08 Jan 2026 04:32:44 EST",
        "Thu, 08 Jan 2026 09:32:44 GMT",
        "2026-01-08T15:02:44+05:30",
        "2026-01-08T09:32:44Z",
        "2026-01-08T09:32:44.250Z",
        "20260108T093244Z",
    ],
)
def test_dates_are_utc_whatever_the_feed_offset(date: str) -> None:
    (entry,) = parse(rss(item(guid="1", date=date)), feed_url=FEED_URL)

    assert entry.published == utc("2026-01-08T09:32:44+00:00")
    assert entry.published is not None and entry.published.tzinfo is UTC


def test_updated_date_is_used_when_there_is_no_published_date() -> None:
    body = atom(
        "<entry><title>t</title><id>urn:x:1</id>"
        "<updated>2026-01-08T10:00:00+01:00</updated></entry>"
    )

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.published == utc("2026-01-08T09:00:00+00:00")


def test_published_date_wins_over_updated_date() -> None:
    body = atom(
        "<entry><title>t</title><id>urn:x:1</id><published>2025-12-01T10:00:00Z</published>"
        "<updated>2026-01-08T10:00:00Z</updated></entry>"
    )

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.published == utc("2025-12-01T10:00:00+00:00")


@pytest.mark.parametrize("date", ["", "demain", "Thu, 45 Jan 2026 10:00:00 +0000", "bientôt"])
def test_unreadable_date_gives_no_date(date: str) -> None:
    (entry,) = parse(rss(item(guid="1", date=date)), feed_url=FEED_URL)

    assert entry.published is None


@pytest.fixture
def machine_time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Let a test change the process's time zone; restore it afterwards."""

    def use(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


# POSIX rules need no time zone database: Paris, New York, Kiribati (+14).
@pytest.mark.parametrize(
    "zone", ["CET-1CEST,M3.5.0,M10.5.0/3", "EST5EDT,M3.2.0,M11.1.0", "<+14>-14"]
)
def test_parsing_does_not_depend_on_the_machine_time_zone(
    zone: str, machine_time_zone: Callable[[str], None]
) -> None:
    body = rss(
        item("Heure d'été", guid="1", date="2026-03-29T02:30:00Z"),
        item("Compact", guid="2", date="20260329T023000Z"),
        item("RFC 822", guid="3", date="Sun, 29 Mar 2026 02:30:00 +0000"),
        item("Naïve", guid="4", date="2026-03-29T02:30:00"),
    )
    machine_time_zone("UTC0")
    in_utc = parse(body, feed_url=FEED_URL)

    machine_time_zone(zone)
    assert time.timezone != 0 or time.altzone != 0
    elsewhere = parse(body, feed_url=FEED_URL)

    assert elsewhere == in_utc
    assert {entry.published for entry in elsewhere} == {utc("2026-03-29T02:30:00+00:00")}


# --- keys --------------------------------------------------------------------------------


def test_ids_differing_by_fragment_are_two_entries() -> None:
    body = rss(
        item("AG", guid="https://asso.example.org/ag", date="Fri, 02 Jan 2026 10:00:00 +0000"),
        item("CR", guid="https://asso.example.org/ag#cr", date="Sat, 03 Jan 2026 10:00:00 +0000"),
    )

    keys = [entry.key for entry in parse(body, feed_url=FEED_URL)]

    assert keys == ["https://asso.example.org/ag", "https://asso.example.org/ag#cr"]


@pytest.mark.parametrize(
    "guid",
    [
        "33214 at https://www.april.org",
        "HTTPS://Asso.Example.org/Article/",
        "https://asso.example.org/article/?utm_source=rss",
        "https://asso.example.org/article/#",
        "tag:asso.example.org,2026:1",
    ],
)
def test_keys_are_never_normalised(guid: str) -> None:
    (entry,) = parse(rss(item(guid=guid)), feed_url=FEED_URL)

    assert entry.key == guid


def test_guid_not_marked_as_permalink_is_kept_verbatim_under_xml_base() -> None:
    body = rss(
        item(extra='<guid isPermaLink="false">33214 at https://www.april.org</guid>'),
        root_attributes=' xml:base="https://www.april.org/fr"',
    )

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.key == "33214 at https://www.april.org"


def test_key_does_not_depend_on_the_feed_url() -> None:
    body = rss(item(guid="4812"), item("Sans guid", link="/articles/1"))

    first = [entry.key for entry in parse(body, feed_url="https://a.example.org/feed")]
    moved = [entry.key for entry in parse(body, feed_url="https://b.example.org/rss")]

    assert first == moved == ["/articles/1", "4812"]


def test_key_falls_back_to_the_link_then_to_a_digest_of_the_content() -> None:
    body = rss(
        item("Avec lien", link="https://asso.example.org/a"),
        item("Sans rien", description="Un texte"),
    )

    keys = {entry.title: entry.key for entry in parse(body, feed_url=FEED_URL)}

    assert keys["Avec lien"] == "https://asso.example.org/a"
    assert keys["Sans rien"].startswith("sha256:")
    assert len(keys["Sans rien"]) == len("sha256:") + 64


def test_digest_key_changes_with_the_content() -> None:
    (before,) = parse(rss(item("Sans rien", description="Un texte")), feed_url=FEED_URL)
    (after,) = parse(rss(item("Sans rien", description="Un autre texte")), feed_url=FEED_URL)

    assert before.key != after.key


def test_duplicate_ids_within_a_fetch_are_disambiguated() -> None:
    body = rss(
        item("Mardi 13", guid="https://club.example.org/", date="Mon, 12 Jan 2026 18:00:00 +0100"),
        item("Mardi 6", guid="https://club.example.org/", date="Mon, 05 Jan 2026 18:00:00 +0100"),
    )

    entries = parse(body, feed_url=FEED_URL)

    assert [entry.title for entry in entries] == ["Mardi 6", "Mardi 13"]
    assert entries[0].key == "https://club.example.org/"
    base, separator, suffix = entries[1].key.partition("\x00")
    assert (base, separator) == ("https://club.example.org/", "\x00")
    assert len(suffix) == 16


def test_disambiguated_keys_are_stable_as_the_feed_window_slides() -> None:
    def permanence(day: int) -> str:
        weekday = {5: "Mon", 6: "Tue", 7: "Wed", 8: "Thu"}[day]
        date = f"{weekday}, 0{day} Jan 2026 18:00:00 +0000"
        return item(f"Le {day}", guid="https://club.example.org/", date=date)

    monday = parse(rss(permanence(6), permanence(5)), feed_url=FEED_URL)
    tuesday = parse(rss(permanence(7), permanence(6), permanence(5)), feed_url=FEED_URL)
    wednesday = parse(rss(permanence(8), permanence(7), permanence(6)), feed_url=FEED_URL)

    # What a store would do: post the entries whose key it has not seen yet.
    seen = {entry.key for entry in monday}
    assert [entry.title for entry in tuesday if entry.key not in seen] == ["Le 7"]
    seen |= {entry.key for entry in tuesday}
    assert [entry.title for entry in wednesday if entry.key not in seen] == ["Le 8"]


def test_identical_copies_of_an_entry_are_kept_once() -> None:
    copy = item("Même", guid="1", date="Mon, 05 Jan 2026 18:00:00 +0000", description="x")

    entries = parse(rss(copy, copy), feed_url=FEED_URL)

    assert [entry.key for entry in entries] == ["1"]


def test_very_long_id_is_replaced_by_its_digest() -> None:
    (entry,) = parse(rss(item(guid="x" * 5000)), feed_url=FEED_URL)

    assert entry.key.startswith("sha256:")
    assert len(entry.key) < 100


# --- titles ------------------------------------------------------------------------------


def test_title_entities_decoded_and_tags_stripped() -> None:
    body = rss(
        item("&lt;b&gt;Tom&lt;/b&gt; &amp;amp; Jerry", guid="1"),
        item("L&amp;#8217;install party&amp;nbsp;: &lt;em&gt;Debian&lt;/em&gt;", guid="2"),
    )

    titles = sorted(entry.title for entry in parse(body, feed_url=FEED_URL))

    assert titles == ["L’install party\u00a0: Debian", "Tom & Jerry"]


def test_plain_text_title_keeps_its_angle_brackets() -> None:
    body = atom(
        '<entry><title type="text">Le paquet &lt;tabularray&gt; &amp;amp; co</title>'
        "<id>urn:x:1</id></entry>"
    )

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.title == "Le paquet <tabularray> &amp; co"


def test_title_white_space_is_collapsed_but_no_break_spaces_are_kept() -> None:
    (entry,) = parse(rss(item("\n   Libre  à\tvous&#160;!\r\n  ", guid="1")), feed_url=FEED_URL)

    assert entry.title == "Libre à vous\u00a0!"


def test_title_block_tags_become_spaces() -> None:
    body = atom(
        '<entry><title type="html">&lt;p&gt;Première&lt;/p&gt;&lt;p&gt;ligne&lt;br/&gt;'
        "suite&lt;/p&gt;&lt;script&gt;alert(1)&lt;/script&gt;</title><id>urn:x:1</id></entry>"
    )

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.title == "Première ligne suite"


def test_long_title_is_cut_on_a_word_boundary() -> None:
    (entry,) = parse(rss(item("mot " * 1000, guid="1")), feed_url=FEED_URL)

    assert len(entry.title) <= MAX_TITLE
    assert entry.title.endswith("mot…")


def test_untitled_entry_gets_title_from_summary() -> None:
    text = (
        "Les Accords du Lion d’Or, un tiers-lieu à dimension culturelle en cours de "
        "dégafamisation : nouveau témoignage"
    )
    body = rss(item(None, guid="1", description=f"&lt;p&gt;{text}&lt;/p&gt;"))

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.title == (
        "Les Accords du Lion d’Or, un tiers-lieu à dimension culturelle en cours de…"
    )
    assert len(entry.title) <= UNTITLED_TITLE


def test_short_untitled_entry_gets_its_whole_text_as_title() -> None:
    body = rss(item(None, guid="1", description="&lt;p&gt;Bonne année&amp;nbsp;! &lt;/p&gt;"))

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.title == "Bonne année\u00a0!"


def test_untitled_entry_without_summary_gets_its_link_as_title() -> None:
    body = rss(item(None, link="https://m.example.org/@asso/1"))

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.title == "https://m.example.org/@asso/1"


def test_entry_with_nothing_to_show_is_dropped() -> None:
    body = rss(item(None, guid="vide"), item("Plein", guid="plein"))

    assert [entry.key for entry in parse(body, feed_url=FEED_URL)] == ["plein"]


def test_feed_of_empty_entries_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="no usable entries"):
        parse(rss(item(None, guid="1"), item("", guid="2")), feed_url=FEED_URL)


# --- links -------------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["javascript:alert(1)", " JavaScript:alert(1)", "java\tscript:x"])
def test_javascript_link_is_dropped(link: str) -> None:
    (entry,) = parse(rss(item(guid="1", link=link)), feed_url=FEED_URL)

    assert entry.link is None


@pytest.mark.parametrize(
    "link", ["data:text/html,x", "mailto:a@example.org", "ftp://asso.example.org/a", "https://"]
)
def test_only_web_links_are_kept(link: str) -> None:
    (entry,) = parse(rss(item(guid="1", link=link)), feed_url=FEED_URL)

    assert entry.link is None


def test_relative_link_is_resolved_against_the_feed_url() -> None:
    (entry,) = parse(rss(item(guid="1", link="/articles/1")), feed_url=FEED_URL)

    assert entry.link == "https://asso.example.org/articles/1"


def test_invisible_and_bidi_characters_of_a_link_are_percent_encoded() -> None:
    link = "https://example.org/\u202emoc.elgoog\u200b/été"
    (entry,) = parse(rss(item(guid="1", link=link)), feed_url=FEED_URL)

    assert entry.link == "https://example.org/%E2%80%AEmoc.elgoog%E2%80%8B/été"


def test_xml_base_wins_over_the_feed_url() -> None:
    body = atom(
        '<entry xml:base="https://other.example.org/blog/"><title>t</title><id>urn:x:1</id>'
        '<link href="post/1"/></entry>'
    )

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.link == "https://other.example.org/blog/post/1"


@pytest.mark.xfail(
    strict=True,
    reason="feedparser 6 keeps an element's xml:base for the elements after it when the root "
    "has none; the parser does not give feedparser the feed URL, which would prevent it, "
    "because feedparser would then resolve guids against it and keys would change with it",
)
def test_xml_base_of_one_entry_does_not_leak_into_the_next() -> None:
    body = atom(
        '<entry xml:base="https://other.example.org/blog/"><title>a</title><id>urn:x:1</id>'
        '<link href="post/1"/></entry>',
        '<entry><title>b</title><id>urn:x:2</id><link href="post/2"/></entry>',
    )

    links = {entry.key: entry.link for entry in parse(body, feed_url=FEED_URL)}

    assert links["urn:x:2"] == "https://asso.example.org/post/2"


def test_alternate_html_link_is_preferred() -> None:
    body = atom(
        "<entry><title>t</title><id>urn:x:1</id>"
        '<link rel="enclosure" type="audio/ogg" href="https://asso.example.org/e.ogg"/>'
        '<link rel="alternate" type="application/pdf" href="https://asso.example.org/a.pdf"/>'
        '<link rel="alternate" type="text/html" href="https://asso.example.org/a.html"/>'
        "</entry>"
    )

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.link == "https://asso.example.org/a.html"


def test_guid_that_is_not_an_address_is_not_taken_as_link() -> None:
    (entry,) = parse(rss(item(guid="4812")), feed_url=FEED_URL)

    assert entry.link is None


def test_permalink_guid_is_taken_as_link() -> None:
    (entry,) = parse(rss(item(guid="https://asso.example.org/a")), feed_url=FEED_URL)

    assert entry.link == "https://asso.example.org/a"


# --- summaries ---------------------------------------------------------------------------


def test_summary_falls_back_to_content() -> None:
    body = rss(
        item(
            guid="1",
            extra=(
                '<content:encoded xmlns:content="http://purl.org/rss/1.0/modules/content/">'
                "&lt;p&gt;Texte complet&lt;/p&gt;</content:encoded>"
            ),
        )
    )

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.summary_html == "<p>Texte complet</p>"


def test_plain_text_summary_is_escaped() -> None:
    body = atom(
        '<entry><title>t</title><id>urn:x:1</id><summary type="text">5 &lt; 6 &amp; co</summary>'
        "</entry>"
    )

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.summary_html == "5 &lt; 6 &amp; co"


def test_relative_urls_in_summary_are_resolved_against_the_feed_url() -> None:
    description = '&lt;a href="/agenda"&gt;agenda&lt;/a&gt; &lt;img src="img/a.png" alt=""&gt;'

    (entry,) = parse(rss(item(guid="1", description=description)), feed_url=FEED_URL)

    assert 'href="https://asso.example.org/agenda"' in entry.summary_html
    assert 'src="https://asso.example.org/img/a.png"' in entry.summary_html


def test_huge_summary_is_capped_outside_any_tag() -> None:
    paragraph = (
        '&lt;p&gt;Un paragraphe &lt;a href="https://asso.example.org/"&gt;lié&lt;/a&gt;&lt;/p&gt;'
    )
    (entry,) = parse(rss(item(guid="1", description=paragraph * 5000)), feed_url=FEED_URL)

    assert len(entry.summary_html.encode()) <= MAX_SUMMARY_BYTES
    assert entry.summary_html.rfind("<") < entry.summary_html.rfind(">")


# --- character sets ----------------------------------------------------------------------

CYRILLIC_TITLE = "Новости сообщества"


def cyrillic_rss(declaration: str = "") -> bytes:
    """A windows-1251 feed whose only statement of its charset is the HTTP one."""
    return (
        f'{declaration}<rss version="2.0"><channel><title>t</title>'
        f"<item><title>{CYRILLIC_TITLE}</title><guid>1</guid></item></channel></rss>"
    ).encode("windows-1251")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/xml; charset=windows-1251",
        'application/rss+xml; charset="windows-1251"',
        "text/html; charset=windows-1251",
        "application/octet-stream; charset=WINDOWS-1251",
    ],
)
@pytest.mark.parametrize("declaration", ["", '<?xml version="1.0"?>\n'])
def test_the_http_charset_decodes_a_feed_that_declares_none(
    content_type: str, declaration: str
) -> None:
    body = cyrillic_rss(declaration)

    (entry,) = parse(body, feed_url=FEED_URL, content_type=content_type)

    assert entry.title == CYRILLIC_TITLE


@pytest.mark.parametrize("content_type", [None, "application/rss+xml", "text/xml"])
def test_without_an_http_charset_the_document_decides(content_type: str | None) -> None:
    body = (
        '<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel>'
        "<title>t</title><item><title>Fête à Brest</title><guid>1</guid></item></channel></rss>"
    )

    (entry,) = parse(body.encode("iso-8859-1"), feed_url=FEED_URL, content_type=content_type)

    assert entry.title == "Fête à Brest"


def test_an_unknown_http_charset_falls_back_to_the_document() -> None:
    body = rss(item("Fête à Brest", guid="1"))

    (entry,) = parse(body, feed_url=FEED_URL, content_type="text/xml; charset=x-no-such-thing")

    assert entry.title == "Fête à Brest"


# --- safety and failures -----------------------------------------------------------------


def test_html_page_is_a_parse_error() -> None:
    page = (
        b"<!DOCTYPE html><html><head><title>Accueil</title></head>"
        b"<body><p>Bonjour</p></body></html>"
    )

    with pytest.raises(ParseError, match="not an RSS or Atom feed"):
        parse(page, feed_url=FEED_URL)


def test_feed_with_no_entries_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="no entries"):
        parse(rss(), feed_url=FEED_URL)


@pytest.mark.parametrize("body", [b"", b"   \n\t", b"\n\n"])
def test_empty_body_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError, match="empty"):
        parse(body, feed_url=FEED_URL)


@pytest.mark.parametrize(
    "end",
    [
        "</item>",  # cut between two items: every entry looks complete
        "<description>",  # inside an item
        "<![CDATA[<p>Le projet",  # inside a CDATA section
        "</channel>",  # only the root's end tag missing
        "</rs",  # inside the last tag
    ],
)
def test_truncated_feed_is_a_parse_error(end: str) -> None:
    body = (FEEDS / "wordpress_fr.xml").read_bytes()
    cut = body.index(end.encode(), len(body) // 3) + len(end)

    with pytest.raises(ParseError, match="truncated"):
        parse(body[:cut], feed_url=FEED_URL)


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0" encoding="utf\xff8"?><rss version="2.0"><channel><title>t</title>'
        b"<item><title>a</title><guid>1</guid></item></channel></rss>",
        b'<rss version="2.0"><channel><title>x &nbsp;</title><item><title>a</title><guid>1</guid>'
        b"</width></item></channel></rss>",
        b'<rss version="2.0"><channel><title>x &nbsp;</title><item><title>a</title><guid>1</guid>'
        b"</height></item></channel></rss>",
    ],
    ids=["undecodable-encoding-name", "stray-width-end-tag", "stray-height-end-tag"],
)
def test_body_that_crashes_feedparser_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError, match="unreadable feed"):
        parse(body, feed_url=FEED_URL)


def test_feed_with_an_undefined_entity_is_still_read() -> None:
    body = rss(item("Caf&eacute; libre&nbsp;!", guid="1"))

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.title == "Café libre\u00a0!"


def test_broken_markup_in_a_title_does_not_stop_the_parser() -> None:
    body = atom(
        '<entry><title type="html">&lt;![sic[ Titre &amp;amp; co</title><id>urn:x:1</id></entry>'
    )

    (entry,) = parse(body, feed_url=FEED_URL)

    assert "Titre" in entry.title


@pytest.mark.parametrize("name", GOLDEN)
def test_every_cut_short_copy_of_a_feed_is_a_parse_error(name: str) -> None:
    body = (FEEDS / f"{name}.xml").read_bytes().rstrip()

    for end in range(0, len(body), 53):
        with pytest.raises(ParseError):
            parse(body[:end], feed_url=FEED_URL)


def test_body_is_never_opened_as_a_path() -> None:
    path = str(FEEDS / "wordpress_fr.xml").encode()

    with pytest.raises(ParseError):
        parse(path, feed_url=FEED_URL)


def test_external_entities_are_not_loaded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("mot de passe", encoding="utf-8")
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "{secret.as_uri()}">\n]>\n'
        '<rss version="2.0"><channel><title>t</title>'
        "<item><title>Fuite &xxe;</title><guid>1</guid><description>&xxe;</description></item>"
        "</channel></rss>"
    ).encode()

    (entry,) = parse(body, feed_url=FEED_URL)

    assert "mot de passe" not in entry.title + entry.summary_html


def test_nested_entity_declarations_are_refused() -> None:
    laughs = "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(2, 10))
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY lol1 "lol">{laughs}]>'
        '<rss version="2.0"><channel><title>t</title>'
        "<item><title>&lol9;</title><guid>1</guid></item></channel></rss>"
    ).encode()

    with pytest.raises(ParseError, match="nested XML entity"):
        parse(body, feed_url=FEED_URL)


@pytest.mark.parametrize(("length", "references"), [(90, 20_000), (200_000, 20), (1, 1_100_000)])
def test_entities_that_would_expand_too_far_are_refused(length: int, references: int) -> None:
    # A "quadratic blowup": no nesting, but a long entity referred to very often.
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "{"b" * length}">]>'
        '<rss version="2.0"><channel><title>t</title>'
        f"<item><title>x</title><guid>1</guid><description>{'&a;' * references}</description>"
        "</item></channel></rss>"
    ).encode()

    with pytest.raises(ParseError, match="entities would expand to"):
        parse(body, feed_url=FEED_URL)


def test_entities_expanding_modestly_are_accepted() -> None:
    body = (
        '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY asso "Parinux">]>'
        '<rss version="2.0"><channel><title>t</title>'
        f"<item><title>&asso;</title><guid>1</guid><description>{'&asso; ' * 10_000}"
        "</description></item></channel></rss>"
    ).encode()

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.title == "Parinux"


def test_plain_entity_declarations_are_accepted() -> None:
    body = (
        b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY nbsp "&#160;">\n'
        b'<!ENTITY asso "Parinux">\n]>\n<rss version="2.0"><channel><title>t</title>'
        b"<item><title>&asso;&nbsp;!</title><guid>1</guid></item></channel></rss>"
    )

    (entry,) = parse(body, feed_url=FEED_URL)

    assert entry.title == "Parinux\u00a0!"


def test_only_the_newest_entries_of_a_huge_feed_are_kept() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    items = "".join(
        f"<item><title>n{n}</title><guid>g{n}</guid>"
        f"<pubDate>{(start + timedelta(minutes=n)).strftime('%a, %d %b %Y %H:%M:%S +0000')}"
        "</pubDate></item>"
        for n in reversed(range(MAX_ENTRIES + 500))
    )
    body = f'<rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()

    entries = parse(body, feed_url=FEED_URL)

    assert [entry.key for entry in entries] == [f"g{n}" for n in range(500, MAX_ENTRIES + 500)]


def test_parsing_twice_gives_the_same_entries() -> None:
    body = (FEEDS / "mastodon.xml").read_bytes()

    assert parse(body, feed_url=FEED_URL) == parse(body, feed_url=FEED_URL)
