"""The fetcher against a real local HTTP server: conditional GET, limits, redirects, refusals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web

from bot.config import PollingConfig
from bot.errors import FetchError
from bot.fetcher import MAX_RETRY_AFTER, Fetcher, is_public_address, parse_retry_after
from tests.feed_server import FeedServer, rss

FEED = rss([{"title": "Assemblée générale", "guid": "1", "link": "https://example.org/ag"}])


def polling(**overrides: object) -> PollingConfig:
    """Limits small enough to keep every test under a second."""
    values: dict[str, object] = {
        "timeout": 2.0,
        "max_body": 256 * 1024,
        "allow_private_networks": True,
    }
    values.update(overrides)
    return PollingConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(polling()) as fetcher:
        yield fetcher


# --- conditional GET ---------------------------------------------------------------------------


async def test_etag_is_sent_back_and_unchanged_feed_gives_304_without_body(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/feed.xml", FEED, etag="v1")
    url = feed_server.url("/feed.xml")

    first = await fetcher.fetch(url)
    second = await fetcher.fetch(url, etag=first.etag)

    assert (first.status, first.body, first.etag) == (200, FEED, '"v1"')
    assert (second.status, second.body, second.etag) == (304, None, '"v1"')
    assert feed_server.requests("/feed.xml")[1]["If-None-Match"] == '"v1"'


async def test_last_modified_is_sent_back_and_unchanged_feed_gives_304(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    modified = "Tue, 03 Jun 2025 10:00:00 GMT"
    feed_server.set_feed("/feed.xml", FEED, last_modified=modified)
    url = feed_server.url("/feed.xml")

    first = await fetcher.fetch(url)
    second = await fetcher.fetch(url, last_modified=first.last_modified)

    assert (first.status, first.last_modified) == (200, modified)
    assert (second.status, second.body, second.last_modified) == (304, None, modified)
    assert feed_server.requests("/feed.xml")[1]["If-Modified-Since"] == modified


async def test_changed_feed_is_fetched_again_despite_old_etag(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/feed.xml", FEED, etag="v1")
    url = feed_server.url("/feed.xml")
    first = await fetcher.fetch(url)
    newer = rss([{"title": "Nouvelle", "guid": "2"}])
    feed_server.set_feed("/feed.xml", newer, etag="v2")

    second = await fetcher.fetch(url, etag=first.etag)

    assert (second.status, second.body, second.etag) == (200, newer, '"v2"')


async def test_validators_dropped_by_the_server_are_not_kept(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/feed.xml", FEED)

    result = await fetcher.fetch(
        feed_server.url("/feed.xml"), etag='"v1"', last_modified="Tue, 03 Jun 2025 10:00:00 GMT"
    )

    assert (result.status, result.body, result.etag, result.last_modified) == (
        200,
        FEED,
        None,
        None,
    )


async def test_feed_without_validators_is_returned_in_full_every_time(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/feed.xml", FEED)
    url = feed_server.url("/feed.xml")

    first = await fetcher.fetch(url)
    second = await fetcher.fetch(url)

    assert first.body == second.body == FEED
    assert second.etag is None and second.last_modified is None
    assert "If-None-Match" not in feed_server.requests("/feed.xml")[1]


async def test_content_type_is_reported(fetcher: Fetcher, feed_server: FeedServer) -> None:
    feed_server.set_feed("/feed.atom", FEED, content_type="application/atom+xml")

    result = await fetcher.fetch(feed_server.url("/feed.atom"))

    assert result.content_type == "application/atom+xml"


async def test_gzipped_body_is_decompressed(fetcher: Fetcher, feed_server: FeedServer) -> None:
    feed_server.set_feed("/feed.xml", FEED, gzip=True)

    result = await fetcher.fetch(feed_server.url("/feed.xml"))

    assert result.body == FEED
    assert "gzip" in feed_server.requests("/feed.xml")[0]["Accept-Encoding"]


# --- headers -----------------------------------------------------------------------------------


async def test_user_agent_names_crieur_and_its_homepage(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/feed.xml", FEED)

    await fetcher.fetch(feed_server.url("/feed.xml"))

    user_agent = feed_server.requests("/feed.xml")[0]["User-Agent"]
    assert "Crieur" in user_agent and "http" in user_agent


async def test_accept_header_asks_for_feeds(fetcher: Fetcher, feed_server: FeedServer) -> None:
    feed_server.set_feed("/feed.xml", FEED)

    await fetcher.fetch(feed_server.url("/feed.xml"))

    accept = feed_server.requests("/feed.xml")[0]["Accept"]
    assert "application/rss+xml" in accept and "application/atom+xml" in accept


# --- limits ------------------------------------------------------------------------------------


async def test_slow_server_times_out(feed_server: FeedServer) -> None:
    feed_server.set_feed("/slow.xml", FEED)
    feed_server.slow("/slow.xml", 5)

    async with Fetcher(polling(timeout=0.3)) as fetcher:
        started = time.monotonic()
        with pytest.raises(FetchError, match=r"timed out after 0\.3 s") as caught:
            await fetcher.fetch(feed_server.url("/slow.xml"))

    assert time.monotonic() - started < 2
    assert caught.value.url == feed_server.url("/slow.xml")


async def test_endless_body_is_cut_at_the_size_cap_quickly(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.endless("/endless.xml")

    started = time.monotonic()
    with pytest.raises(FetchError, match=r"body larger than 256 KiB") as caught:
        await fetcher.fetch(feed_server.url("/endless.xml"))

    assert time.monotonic() - started < 1.5
    assert caught.value.status == 200


async def test_size_cap_applies_to_the_decompressed_body(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.endless("/bomb.xml", gzip=True)

    with pytest.raises(FetchError, match=r"body larger than 256 KiB"):
        await fetcher.fetch(feed_server.url("/bomb.xml"))


async def test_declared_oversized_body_is_refused(feed_server: FeedServer) -> None:
    feed_server.set_feed("/big.xml", b"x" * 5000)

    async with Fetcher(polling(max_body=4096)) as fetcher:
        with pytest.raises(FetchError, match=r"body larger than 4 KiB"):
            await fetcher.fetch(feed_server.url("/big.xml"))


async def test_body_exactly_at_the_cap_is_accepted(feed_server: FeedServer) -> None:
    feed_server.set_feed("/full.xml", b"x" * 4096)

    async with Fetcher(polling(max_body=4096)) as fetcher:
        result = await fetcher.fetch(feed_server.url("/full.xml"))

    assert result.body == b"x" * 4096


async def test_per_host_limit_holds_for_whole_requests(feed_server: FeedServer) -> None:
    for n in range(6):
        feed_server.set_feed(f"/feed{n}.xml", FEED)
        feed_server.slow(f"/feed{n}.xml", 0.1)

    async with Fetcher(polling(per_host=2, concurrency=16)) as fetcher:
        results = await asyncio.gather(
            *(fetcher.fetch(feed_server.url(f"/feed{n}.xml")) for n in range(6))
        )

    assert all(result.body == FEED for result in results)
    assert feed_server.max_in_flight == 2


async def test_global_concurrency_limit_holds(feed_server: FeedServer) -> None:
    for n in range(4):
        feed_server.set_feed(f"/feed{n}.xml", FEED)
        feed_server.slow(f"/feed{n}.xml", 0.1)

    async with Fetcher(polling(per_host=10, concurrency=1)) as fetcher:
        await asyncio.gather(*(fetcher.fetch(feed_server.url(f"/feed{n}.xml")) for n in range(4)))

    assert feed_server.max_in_flight == 1


async def test_time_waiting_for_a_slot_does_not_count_against_the_timeout(
    feed_server: FeedServer,
) -> None:
    for n in range(3):
        feed_server.set_feed(f"/feed{n}.xml", FEED)
        feed_server.slow(f"/feed{n}.xml", 0.2)

    async with Fetcher(polling(timeout=0.45, per_host=1)) as fetcher:
        results = await asyncio.gather(
            *(fetcher.fetch(feed_server.url(f"/feed{n}.xml")) for n in range(3))
        )

    assert [result.status for result in results] == [200, 200, 200]


# --- HTTP errors -------------------------------------------------------------------------------


async def test_429_with_retry_after_seconds_gives_retry_after(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.status("/busy.xml", 429, {"Retry-After": "120"})

    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(feed_server.url("/busy.xml"))

    assert caught.value.status == 429
    assert caught.value.retry_after == 120
    assert "HTTP 429 Too Many Requests" in str(caught.value)


async def test_503_with_retry_after_date_gives_seconds_until_that_date(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    later = datetime.now(UTC) + timedelta(minutes=10)
    feed_server.status("/down.xml", 503, {"Retry-After": format_datetime(later, usegmt=True)})

    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(feed_server.url("/down.xml"))

    assert caught.value.status == 503
    assert caught.value.retry_after is not None
    assert 590 <= caught.value.retry_after <= 600


async def test_503_without_retry_after_has_no_retry_after(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.status("/down.xml", 503)

    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(feed_server.url("/down.xml"))

    assert (caught.value.status, caught.value.retry_after) == (503, None)


async def test_server_error_is_a_fetch_error_with_its_status(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.status("/broken.xml", 500)

    with pytest.raises(FetchError, match="HTTP 500 Internal Server Error") as caught:
        await fetcher.fetch(feed_server.url("/broken.xml"))

    assert caught.value.status == 500
    assert caught.value.retry_after is None


async def test_missing_feed_is_a_fetch_error_404(fetcher: Fetcher, feed_server: FeedServer) -> None:
    with pytest.raises(FetchError, match="HTTP 404") as caught:
        await fetcher.fetch(feed_server.url("/nowhere.xml"))

    assert caught.value.status == 404


async def test_closed_port_is_a_fetch_error(fetcher: Fetcher, feed_server: FeedServer) -> None:
    url = feed_server.url("/feed.xml")
    await feed_server.stop()

    with pytest.raises(FetchError, match=r"cannot connect to 127\.0\.0\.1"):
        await fetcher.fetch(url)


async def test_server_hanging_up_is_a_fetch_error(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    async def hang_up(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    feed_server.set_route("/gone.xml", hang_up)

    with pytest.raises(FetchError, match="closed the connection"):
        await fetcher.fetch(feed_server.url("/gone.xml"))


# --- redirects ---------------------------------------------------------------------------------


async def test_redirect_loop_is_a_fetch_error(fetcher: Fetcher, feed_server: FeedServer) -> None:
    feed_server.redirect("/a.xml", "/b.xml", 302)
    feed_server.redirect("/b.xml", "/a.xml", 302)

    with pytest.raises(FetchError, match="redirect loop"):
        await fetcher.fetch(feed_server.url("/a.xml"))

    assert feed_server.hits("/a.xml") == 1


async def test_more_than_ten_redirects_is_a_fetch_error(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    for n in range(12):
        feed_server.redirect(f"/r{n}", f"/r{n + 1}", 307)
    feed_server.set_feed("/r12", FEED)

    with pytest.raises(FetchError, match="too many redirects"):
        await fetcher.fetch(feed_server.url("/r0"))

    assert feed_server.hits("/r11") == 0


async def test_ten_redirects_are_followed(fetcher: Fetcher, feed_server: FeedServer) -> None:
    for n in range(10):
        feed_server.redirect(f"/r{n}", f"/r{n + 1}", 302)
    feed_server.set_feed("/r10", FEED)

    result = await fetcher.fetch(feed_server.url("/r0"))

    assert result.body == FEED


async def test_chain_of_permanent_redirects_reports_the_new_url(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.redirect("/old.xml", "/older-still.xml", 301)
    feed_server.redirect("/older-still.xml", feed_server.url("/new.xml"), 308)
    feed_server.set_feed("/new.xml", FEED)
    old = feed_server.url("/old.xml")

    result = await fetcher.fetch(old)

    assert result.body == FEED
    assert result.url == old
    assert result.permanent_url == feed_server.url("/new.xml")


async def test_temporary_redirect_does_not_move_the_feed(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.redirect("/feed.xml", "/today.xml", 302)
    feed_server.set_feed("/today.xml", FEED)

    result = await fetcher.fetch(feed_server.url("/feed.xml"))

    assert result.body == FEED
    assert result.permanent_url is None


async def test_temporary_hop_in_a_permanent_chain_does_not_move_the_feed(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.redirect("/a.xml", "/b.xml", 301)
    feed_server.redirect("/b.xml", "/c.xml", 307)
    feed_server.set_feed("/c.xml", FEED)

    result = await fetcher.fetch(feed_server.url("/a.xml"))

    assert result.body == FEED
    assert result.permanent_url is None


async def test_validators_follow_redirects_and_304_is_honoured(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.redirect("/feed.xml", "/moved.xml", 301)
    feed_server.set_feed("/moved.xml", FEED, etag="v1")

    result = await fetcher.fetch(feed_server.url("/feed.xml"), etag='"v1"')

    assert (result.status, result.body) == (304, None)
    assert result.permanent_url == feed_server.url("/moved.xml")


async def test_redirect_to_a_non_http_scheme_is_refused(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.redirect("/feed.xml", "file:///etc/passwd", 302)

    with pytest.raises(FetchError, match="scheme 'file'"):
        await fetcher.fetch(feed_server.url("/feed.xml"))


async def test_redirect_without_location_is_a_fetch_error(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.status("/feed.xml", 302)

    with pytest.raises(FetchError, match="without a Location") as caught:
        await fetcher.fetch(feed_server.url("/feed.xml"))

    assert caught.value.status == 302


# --- refused URLs and addresses ----------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://example.org/feed.xml", "file:///etc/passwd", "feed.xml"])
async def test_non_http_url_is_refused(fetcher: Fetcher, url: str) -> None:
    with pytest.raises(FetchError, match="only http and https"):
        await fetcher.fetch(url)


async def test_loopback_address_is_refused_without_allow_private_networks(
    feed_server: FeedServer,
) -> None:
    feed_server.set_feed("/feed.xml", FEED)

    async with Fetcher(polling(allow_private_networks=False)) as fetcher:
        with pytest.raises(FetchError) as caught:
            await fetcher.fetch(feed_server.url("/feed.xml"))

    message = str(caught.value)
    assert "127.0.0.1 (loopback) is not a public address" in message
    assert "polling.allow_private_networks" in message
    assert feed_server.hits("/feed.xml") == 0


async def test_name_resolving_to_loopback_is_refused_without_allow_private_networks(
    feed_server: FeedServer,
) -> None:
    feed_server.set_feed("/feed.xml", FEED)
    url = f"http://localhost:{feed_server.port}/feed.xml"

    async with Fetcher(polling(allow_private_networks=False)) as fetcher:
        with pytest.raises(FetchError, match=r"localhost resolves to .*not a public address"):
            await fetcher.fetch(url)

    assert feed_server.hits("/feed.xml") == 0


async def test_loopback_address_is_fetched_with_allow_private_networks(
    fetcher: Fetcher, feed_server: FeedServer
) -> None:
    feed_server.set_feed("/feed.xml", FEED)

    result = await fetcher.fetch(feed_server.url("/feed.xml"))

    assert result.body == FEED


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.10",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
        "2002:c0a8:0101::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "::ffff:1.1.1.1"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(address)


# --- Retry-After parsing -----------------------------------------------------------------------

NOW = datetime(2025, 6, 3, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Tue, 03 Jun 2025 10:05:00 GMT", 300.0),
        ("Tue, 03 Jun 2025 09:00:00 GMT", 0.0),
        ("99999999", MAX_RETRY_AFTER),
        ("Fri, 03 Jun 2033 10:00:00 GMT", MAX_RETRY_AFTER),
        ("soon", None),
        ("-5", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_capped_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds
