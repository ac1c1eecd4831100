"""Feed discovery: a page's feed links, the usual paths, at most 8 requests; `crieur discover`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bot.cli import EXIT_FEED_ERRORS, EXIT_OK, EXIT_USER_ERROR
from bot.config import PollingConfig
from bot.discovery import (
    MAX_REQUESTS,
    USUAL_PATHS,
    FeedLink,
    FoundFeed,
    check_url,
    discover,
    feed_links,
    is_comments_feed,
    usual_feed_urls,
)
from bot.errors import FetchError, InvalidURL
from bot.fetcher import Fetcher, RequestBudget
from bot.parser import MAX_FEED_TITLE, parse_feed
from tests.feed_server import FeedServer, rss

DATA = Path(__file__).parent / "data"
PAGES = DATA / "discovery"
FEEDS = DATA / "feeds"
PAGE = "https://club.example.org/mon-lug/"
FEED = rss([{"title": "Install party", "guid": "1", "link": "https://club.example.org/1"}])


def link(href: str, *, title: str = "", type_: str = "application/rss+xml") -> str:
    return f'<link rel="alternate" type="{type_}" title="{title}" href="{href}">'


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(PollingConfig(timeout=2.0, allow_private_networks=True)) as fetcher:
        yield fetcher


def serve_page(server: FeedServer, path: str, page: str | bytes) -> None:
    """Serve an HTML page, its `__SITE__` placeholders replaced by the server's root."""
    text = page if isinstance(page, str) else page.decode()
    body = text.replace("__SITE__", server.base_url).encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    server.set_route(path, handler)


def serve_file(server: FeedServer, path: str, name: str) -> None:
    folder = PAGES if name.endswith(".html") or name.startswith("hugo") else FEEDS
    data = (folder / name).read_bytes()
    if name.endswith(".html"):
        serve_page(server, path, data)
    else:
        server.set_feed(path, data, content_type="application/rss+xml")


# -- reading a page -------------------------------------------------------------------------------


def test_feed_links_are_the_rss_and_atom_alternates_in_page_order() -> None:
    page = (
        link("/atom.xml", title="Atom", type_="application/atom+xml")
        + '<link rel="stylesheet" href="/style.css">'
        + link("/oembed", type_="application/json+oembed")
        + '<link rel="alternate" hreflang="en" href="/en/">'
        + link("/rss.xml", title="RSS")
    )
    assert feed_links(page, PAGE) == [
        FeedLink("https://club.example.org/atom.xml", "Atom"),
        FeedLink("https://club.example.org/rss.xml", "RSS"),
    ]


@pytest.mark.parametrize(
    ("title", "href"),
    [
        ("Mon LUG » Flux des commentaires", "/feed/"),
        ("Mon LUG » Comments Feed", "/feed/"),
        ("Atom 1.0", "/feed/atom/comments"),
        ("", "/comments/feed/"),
        ("COMMENTAIRES", "/spip.php?page=backend"),
    ],
)
def test_comments_feeds_are_skipped_by_their_title_or_url(title: str, href: str) -> None:
    assert is_comments_feed(title, href)
    assert feed_links(link(href, title=title), PAGE) == []


def test_a_site_whose_host_name_speaks_of_comments_keeps_its_feeds() -> None:
    page = link("https://commentcamarche.example/rss.xml", title="Actualités")
    assert feed_links(page, PAGE) == [
        FeedLink("https://commentcamarche.example/rss.xml", "Actualités")
    ]


def test_relative_links_are_resolved_against_the_page() -> None:
    page = link("spip.php?page=backend") + link("../rss.xml") + link("//cdn.example.net/f.xml")
    assert [found.url for found in feed_links(page, PAGE)] == [
        "https://club.example.org/mon-lug/spip.php?page=backend",
        "https://club.example.org/rss.xml",
        "https://cdn.example.net/f.xml",
    ]


def test_the_first_base_href_is_honoured_wherever_it_stands() -> None:
    page = link("index.xml") + '<base href="/blog/"><base href="/other/">'
    assert [found.url for found in feed_links(page, PAGE)] == [
        "https://club.example.org/blog/index.xml"
    ]


def test_links_that_are_not_http_or_lead_nowhere_are_dropped_and_duplicates_kept_once() -> None:
    page = (
        link("javascript:alert(1)")
        + link("mailto:club@example.org")
        + link("")
        + link("/feed/#top")
        + link("/feed/")
        + link("http://[::1")
        + link("https://user:secret@club.example.org/private.xml")
    )
    assert feed_links(page, PAGE) == [FeedLink("https://club.example.org/feed/", "")]


def test_rel_and_type_are_read_without_regard_to_case_or_parameters() -> None:
    page = (
        '<LINK REL="Alternate Feed" TYPE="Application/RSS+XML; charset=utf-8" HREF="/a.xml">'
        "<link rel='alternate' type='application/atom+xml' href=/b.xml />"
    )
    assert [found.url for found in feed_links(page, PAGE)] == [
        "https://club.example.org/a.xml",
        "https://club.example.org/b.xml",
    ]


def test_link_titles_are_plain_text_on_one_line_and_capped() -> None:
    page = link("/a.xml", title="L&#039;atelier &amp;\x07 la\n\tfête") + link(
        "/b.xml", title="mot " * 200
    )
    first, second = feed_links(page, PAGE)
    assert first.title == "L'atelier & la fête"
    assert len(second.title) <= MAX_FEED_TITLE
    assert second.title.endswith("…")


def test_broken_markup_keeps_the_links_read_before_it() -> None:
    page = link("/a.xml") + "<![if x[ <div <<>>" + link("/b.xml")
    assert feed_links(page, PAGE)[0] == FeedLink("https://club.example.org/a.xml", "")


def test_usual_paths_are_tried_under_the_path_first_then_at_the_root() -> None:
    urls = usual_feed_urls("https://club.example.org/mon-lug/?page=2")
    assert urls[:2] == [
        "https://club.example.org/mon-lug/feed/",
        "https://club.example.org/mon-lug/rss.xml",
    ]
    assert urls[6] == "https://club.example.org/mon-lug/?feed=rss2"
    assert urls[7:] == [f"https://club.example.org/{path}" for path in USUAL_PATHS]


@pytest.mark.parametrize(
    ("url", "first"),
    [
        ("https://club.example.org", "https://club.example.org/feed/"),
        ("https://club.example.org/mon-lug", "https://club.example.org/mon-lug/feed/"),
        ("https://club.example.org/blog/index.php", "https://club.example.org/blog/feed/"),
    ],
)
def test_usual_paths_treat_a_last_segment_without_a_dot_as_a_directory(
    url: str, first: str
) -> None:
    assert usual_feed_urls(url)[0] == first


def test_a_site_root_has_only_the_usual_paths_at_the_root() -> None:
    assert len(usual_feed_urls("https://club.example.org/")) == len(USUAL_PATHS)


@pytest.mark.parametrize(
    ("typed", "url"),
    [
        ("  https://april.org/fr#top ", "https://april.org/fr"),
        ("april.org/blog", "https://april.org/blog"),
        ("HTTP://Parinux.org/?page=2", "http://Parinux.org/?page=2"),
    ],
)
def test_typed_urls_become_absolute_http_urls(typed: str, url: str) -> None:
    assert check_url(typed) == url


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "no URL given"),
        ("ftp://april.org/", "only http and https"),
        ("https://user:secret@april.org/", "user name or password"),
        ("https://april.org/a b", "spaces"),
        ("https:///path", "no host"),
        ("https://april.org:port/", "invalid URL"),
        ("https://" + "a" * 3000 + ".org", "longer than"),
    ],
)
def test_urls_that_cannot_be_fetched_are_refused(typed: str, says: str) -> None:
    with pytest.raises(InvalidURL, match=says):
        check_url(typed)


def test_a_refused_url_with_a_password_does_not_repeat_it() -> None:
    for typed in ("https://user:s3cret@april.org/", "ftp://user:s3cret@april.org:x/"):
        with pytest.raises(InvalidURL) as refused:
            check_url(typed)
        assert "s3cret" not in str(refused.value)


# -- discovering, against a real local server -----------------------------------------------------

SITES = [
    # fixture, where the page is, feed path served, feed file, the feed's URL path, its title
    ("wordpress.html", "/", "/feed/", "wordpress_fr.xml", "/feed/", "Les Maisons Pop de Chenôve"),
    (
        "spip.html",
        "/parinux/",
        "/parinux/spip.php",
        "spip.xml",
        "/parinux/spip.php?page=backend",
        "Parinux",
    ),
    ("dotclear.html", "/", "/feed/atom", "dotclear.xml", "/feed/atom", "Le blog de l'ALDIL"),
    (
        "hugo.html",
        "/hugo/",
        "/hugo/index.xml",
        "hugo_index.xml",
        "/hugo/index.xml",
        "Gull de Haute-Savoie",
    ),
]


@pytest.mark.parametrize(("page", "at", "served", "feed", "url", "title"), SITES)
async def test_a_site_page_gives_the_feed_it_links_to_in_two_requests(
    fetcher: Fetcher,
    feed_server: FeedServer,
    page: str,
    at: str,
    served: str,
    feed: str,
    url: str,
    title: str,
) -> None:
    serve_file(feed_server, at, page)
    serve_file(feed_server, served, feed)

    found = await discover(fetcher, feed_server.url(at))

    assert found.feeds == (FoundFeed(feed_server.url(url), title),)
    assert found.requests == 2 == len(feed_server.received)
    assert found.reason == ""


async def test_the_wordpress_comments_feed_is_never_fetched(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    serve_file(feed_server, "/", "wordpress.html")
    serve_file(feed_server, "/feed/", "wordpress_fr.xml")
    feed_server.set_feed("/comments/feed/", FEED)

    await discover(fetcher, feed_server.url("/"))

    assert feed_server.received == ["/", "/feed/"]


async def test_a_drupal_page_without_feed_link_gives_the_feed_at_a_usual_path(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    serve_file(feed_server, "/", "drupal.html")
    serve_file(feed_server, "/rss.xml", "drupal_april.xml")

    found = await discover(fetcher, feed_server.url("/"))

    assert found.feeds == (FoundFeed(feed_server.url("/rss.xml"), "April"),)
    assert feed_server.received == ["/", "/feed/", "/rss.xml"]


async def test_a_page_without_feed_gets_a_reason_after_eight_requests(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    serve_file(feed_server, "/", "nofeed.html")

    found = await discover(fetcher, feed_server.url("/"))

    assert found.feeds == ()
    assert found.requests == MAX_REQUESTS == len(feed_server.received)
    assert found.reason == (
        "the page links to no feed; none of the 7 usual addresses tried answered with a feed"
    )


async def test_a_site_under_a_path_is_searched_there_first_and_stops_at_eight_requests(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    serve_file(feed_server, "/club/", "nofeed.html")
    serve_file(feed_server, "/feed/", "wordpress_fr.xml")  # at the root: beyond the budget

    found = await discover(fetcher, feed_server.url("/club/"))

    assert found.feeds == ()
    assert feed_server.received == ["/club/"] + [f"/club/{path}" for path in USUAL_PATHS]
    assert found.reason.endswith("(gave up after 8 requests)")


async def test_a_wordpress_site_under_a_path_gets_its_own_feed_not_the_root_one(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    serve_file(feed_server, "/mon-lug", "nofeed.html")
    feed_server.set_feed("/mon-lug/feed/", rss([{"title": "Chez nous", "guid": "1"}], title="LUG"))
    feed_server.set_feed("/feed/", rss([{"title": "Ailleurs", "guid": "1"}], title="Root"))

    found = await discover(fetcher, feed_server.url("/mon-lug"))

    assert found.feeds == (FoundFeed(feed_server.url("/mon-lug/feed/"), "LUG"),)


async def test_the_last_usual_path_fits_in_the_budget_of_a_site_root(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    page = (PAGES / "nofeed.html").read_bytes()

    async def wordpress_home(request: web.Request) -> web.StreamResponse:
        if request.query.get("feed") == "rss2":
            return web.Response(body=FEED, content_type="application/rss+xml")
        return web.Response(body=page, content_type="text/html")

    feed_server.set_route("/", wordpress_home)

    found = await discover(fetcher, feed_server.url("/"))

    assert found.feeds == (FoundFeed(feed_server.url("/?feed=rss2"), "Test feed"),)
    assert found.requests == MAX_REQUESTS


async def test_a_feed_url_is_used_as_it_is_in_one_request(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    serve_file(feed_server, "/spip.php", "spip.xml")

    found = await discover(fetcher, feed_server.url("/spip.php?page=backend"))

    assert found.feeds == (FoundFeed(feed_server.url("/spip.php?page=backend"), "Parinux"),)
    assert found.requests == 1


async def test_a_feed_url_is_kept_through_a_temporary_redirect_and_replaced_after_a_permanent_one(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.redirect("/for-now", "/feed.xml", code=302)
    feed_server.redirect("/for-good", "/feed.xml", code=308)
    feed_server.set_feed("/feed.xml", FEED)

    for_now = await discover(fetcher, feed_server.url("/for-now"))
    for_good = await discover(fetcher, feed_server.url("/for-good"))

    assert [feed.url for feed in for_now.feeds] == [feed_server.url("/for-now")]
    assert [feed.url for feed in for_good.feeds] == [feed_server.url("/feed.xml")]
    assert for_now.requests == for_good.requests == 2


async def test_a_feed_served_as_html_is_still_a_feed(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/rss", FEED, content_type="text/html; charset=utf-8")

    found = await discover(fetcher, feed_server.url("/rss"))

    assert found.feeds == (FoundFeed(feed_server.url("/rss"), "Test feed"),)


async def test_every_feed_linked_is_given_main_first_and_broken_ones_left_out(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    serve_page(
        feed_server,
        "/",
        link("/atom", type_="application/atom+xml")
        + link("/broken.xml", title="Cassé")
        + link("/empty.xml")
        + link("/rss", title="Le club (RSS)"),
    )
    atom = (FEEDS / "static_atom.xml").read_bytes()
    feed_server.set_feed("/atom", atom, content_type="application/atom+xml")
    feed_server.set_feed("/broken.xml", b"<html><body>not a feed</body></html>")
    feed_server.set_feed("/empty.xml", (FEEDS / "zero_items.xml").read_bytes())
    feed_server.set_feed("/rss", rss([{"title": "Un", "guid": "1"}], title=""))

    found = await discover(fetcher, feed_server.url("/"))

    assert found.feeds == (
        FoundFeed(feed_server.url("/atom"), "GUTenberg"),
        FoundFeed(feed_server.url("/rss"), "Le club (RSS)"),  # untitled feed: its link's title
    )
    assert found.requests == 5


async def test_a_feed_that_moved_for_good_is_given_at_its_new_address(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    serve_page(feed_server, "/", link("/old-feed"))
    feed_server.redirect("/old-feed", "/feed.xml", code=301)
    feed_server.set_feed("/feed.xml", FEED)

    found = await discover(fetcher, feed_server.url("/"))

    assert found.feeds == (FoundFeed(feed_server.url("/feed.xml"), "Test feed"),)
    assert found.requests == 3


async def test_redirects_count_towards_the_eight_requests(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.redirect("/", "/a")
    feed_server.redirect("/a", "/site/")
    serve_file(feed_server, "/site/", "nofeed.html")

    found = await discover(fetcher, feed_server.url("/"))

    assert found.requests == MAX_REQUESTS == len(feed_server.received)
    # The usual paths are those of the page the redirects led to.
    assert feed_server.received[3:] == [f"/site/{path}" for path in USUAL_PATHS[:5]]


async def test_a_missing_page_still_has_its_usual_paths_tried(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/blog/feed/", FEED)

    found = await discover(fetcher, feed_server.url("/blog/"))

    assert found.feeds == (FoundFeed(feed_server.url("/blog/feed/"), "Test feed"),)


async def test_a_failing_site_is_not_asked_again(fetcher: Fetcher, feed_server: FeedServer) -> None:
    feed_server.status("/", 503)

    found = await discover(fetcher, feed_server.url("/"))

    assert found.feeds == ()
    assert found.requests == 1
    assert found.reason == "HTTP 503 Service Unavailable"


async def test_a_private_address_is_refused_before_any_request_when_not_allowed(
    feed_server: FeedServer,
) -> None:
    serve_file(feed_server, "/", "wordpress.html")

    async with Fetcher(PollingConfig(timeout=2.0)) as fetcher:
        found = await discover(fetcher, feed_server.url("/"))

    assert found.feeds == ()
    assert "127.0.0.1 (loopback) is not a public address" in found.reason
    assert feed_server.received == []


async def test_a_bad_url_raises_before_anything_is_fetched(fetcher: Fetcher) -> None:
    with pytest.raises(InvalidURL):
        await discover(fetcher, "gopher://example.org/")


# -- a feed's own title, as the parser gives it --------------------------------------------------


def test_a_feeds_title_is_plain_text_capped_and_empty_when_missing() -> None:
    long_title = rss([{"title": "Un", "guid": "1"}], title="Le\tclub\x07 " * 40)
    untitled = rss([{"title": "Un", "guid": "1"}], title="")

    title = parse_feed(long_title, feed_url=PAGE).title
    assert title.startswith("Le club Le club")
    assert len(title) <= MAX_FEED_TITLE
    assert parse_feed(untitled, feed_url=PAGE).title == ""


# -- the fetcher's request budget -----------------------------------------------------------------


async def test_a_request_budget_counts_redirects_and_refuses_once_spent(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.redirect("/old", "/feed.xml")
    feed_server.set_feed("/feed.xml", FEED)
    budget = RequestBudget(3)

    moved = await fetcher.fetch(feed_server.url("/old"), budget=budget)
    assert (budget.used, moved.final_url) == (2, feed_server.url("/feed.xml"))
    with pytest.raises(FetchError, match="gave up after 3 requests"):
        await fetcher.fetch(feed_server.url("/old"), budget=budget)
    assert budget.used == 3
    assert len(feed_server.received) == 3


# -- crieur discover ------------------------------------------------------------------------------


async def crieur(*args: str) -> tuple[int, str, str]:
    """Run `crieur` as a separate process; the test's event loop keeps serving meanwhile."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def config_allowing_private_networks(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        """\
matrix: {homeserver: "http://127.0.0.1:1", user_id: "@crieur:localhost", password: "x"}
database: ./crieur.sqlite3
polling: {timeout: 5s, allow_private_networks: true}
regions: {france: {name: France}}
organisations: {}
""",
        encoding="utf-8",
    )
    return path


async def test_crieur_discover_prints_the_feeds_main_first(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    serve_page(feed_server, "/", link("/atom.xml", title="Atom") + link("/rss.xml", title="RSS"))
    feed_server.set_feed("/atom.xml", (FEEDS / "dotclear.xml").read_bytes())
    feed_server.set_feed("/rss.xml", rss([{"title": "Un", "guid": "1"}], title="Le club"))
    config = config_allowing_private_networks(tmp_path)

    code, out, _ = await crieur("discover", feed_server.url("/"), "-c", str(config))

    assert code == EXIT_OK
    assert out.splitlines() == [
        f"{feed_server.url('/atom.xml')}  Le blog de l'ALDIL",
        f"{feed_server.url('/rss.xml')}  Le club",
    ]


async def test_crieur_discover_without_a_feed_says_why_and_exits_2(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    serve_file(feed_server, "/", "nofeed.html")
    config = config_allowing_private_networks(tmp_path)

    code, out, _ = await crieur("discover", feed_server.url("/"), "-c", str(config))

    assert code == EXIT_FEED_ERRORS
    assert out == (
        f"no feed found at {feed_server.url('/')}: the page links to no feed; "
        "none of the 7 usual addresses tried answered with a feed\n"
    )


async def test_crieur_discover_refuses_private_addresses_without_a_configuration(
    feed_server: FeedServer,
) -> None:
    serve_file(feed_server, "/", "wordpress.html")

    code, out, _ = await crieur("discover", feed_server.url("/"))

    assert code == EXIT_FEED_ERRORS
    assert "not a public address (set polling.allow_private_networks" in out
    assert feed_server.received == []


async def test_crieur_discover_of_a_bad_url_is_an_error() -> None:
    code, out, err = await crieur("discover", "ftp://example.org/")

    assert code == EXIT_USER_ERROR
    assert (out, err) == (
        "",
        "error: unsupported URL 'ftp://example.org/': only http and https are fetched\n",
    )
