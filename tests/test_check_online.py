"""`crieur check --online`: every configured source tried once, the database left alone."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from bot.cli import EXIT_FEED_ERRORS, EXIT_OK
from tests.feed_server import FeedServer, rss
from tests.test_cli import crieur_process

CALENDAR = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Crieur tests//EN\r
BEGIN:VEVENT\r
UID:install-party@example.org\r
DTSTAMP:20260101T000000Z\r
DTSTART:20300105T140000Z\r
SUMMARY:Install party\r
END:VEVENT\r
END:VCALENDAR\r
"""


def site_page(feed: str) -> bytes:
    """A home page that links to its feed, as most sites' themes do."""
    return (
        "<!doctype html><html><head><title>LUG</title>"
        f'<link rel="alternate" type="application/rss+xml" title="News" href="{feed}">'
        "</head><body>Welcome</body></html>"
    ).encode()


def config_head(tmp_path: Path) -> str:
    """The start of a configuration: no homeserver needed, local sites allowed."""
    return f"""\
matrix:
  homeserver: http://127.0.0.1:1
  user_id: "@crieur:localhost"
  password: "s3cret-password"
database: {tmp_path / "crieur.sqlite3"}
language: en
polling:
  timeout: 5s
  allow_private_networks: true
"""


def write_config(tmp_path: Path, feed_server: FeedServer, *, with_missing: bool) -> Path:
    missing = (
        f"""
  gone:
    name: Gone
    region: france
    feeds: ["{feed_server.url("/gone.xml")}"]"""
        if with_missing
        else ""
    )
    path = tmp_path / "config.yaml"
    path.write_text(
        config_head(tmp_path)
        + f"""\
regions:
  france: {{name: France, events: ["{feed_server.url("/agenda.ics")}"]}}
organisations:
  april:
    name: April
    region: france
    feeds: ["{feed_server.url("/april.xml")}"]
  parinux:
    name: Parinux
    region: france
    feeds: ["{feed_server.url("/old.xml")}"]
  lug:
    name: LUG
    region: france
    url: "{feed_server.url("/lug/")}"{missing}
""",
        encoding="utf-8",
    )
    return path


def serve_sites(feed_server: FeedServer) -> None:
    """A good feed, a moved one, a site to discover from and a calendar; the rest is 404."""
    feed_server.set_feed("/april.xml", rss([{"title": "Hello", "guid": "1"}]))
    feed_server.redirect("/old.xml", "/new.xml", code=301)
    feed_server.set_feed("/new.xml", rss([{"title": "Moved", "guid": "2"}]))
    feed_server.set_feed("/lug/", site_page("/lug/news.xml"), content_type="text/html")
    feed_server.set_feed("/lug/news.xml", rss([{"title": "News", "guid": "3"}], title="LUG news"))
    feed_server.set_feed("/agenda.ics", CALENDAR, content_type="text/calendar")


async def run_crieur(*args: str) -> tuple[int, str, str]:
    """Run `crieur` in a process; return its exit code, stdout and stderr."""
    process = await crieur_process(*args)
    async with asyncio.timeout(60):  # a guard against a hang, not a timing check
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_each_source_is_reported_and_a_missing_feed_exits_2(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    serve_sites(feed_server)
    config = write_config(tmp_path, feed_server, with_missing=True)
    code, out, err = await run_crieur("check", "--online", "-c", str(config))
    assert code == EXIT_FEED_ERRORS, err
    lines = out.splitlines()
    url = feed_server.url
    assert f"April feed {url('/april.xml')}: ok" in lines
    assert f"Parinux feed {url('/old.xml')}: moved → {url('/new.xml')}" in lines
    assert f"LUG site {url('/lug/')}: discovered → {url('/lug/news.xml')}" in lines
    assert f"France calendar {url('/agenda.ics')}: ok" in lines
    assert f"Gone feed {url('/gone.xml')}: failing: HTTP 404" in " ".join(lines)
    assert lines[-1] == "5 sources checked, 1 failing"
    # Nothing opened, nothing created: the check is the configuration's, not the bot's.
    assert not [name for name in os.listdir(tmp_path) if name.startswith("crieur.sqlite3")]


async def test_all_sources_answering_exit_0_and_leave_the_database_as_it_was(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    serve_sites(feed_server)
    config = write_config(tmp_path, feed_server, with_missing=False)
    database = tmp_path / "crieur.sqlite3"
    database.write_bytes(b"not touched")
    before = database.stat().st_mtime_ns
    code, out, err = await run_crieur("check", "--online", "-c", str(config))
    assert code == EXIT_OK, out + err
    assert out.splitlines()[-1] == "4 sources checked, 0 failing"
    assert database.read_bytes() == b"not touched"
    assert database.stat().st_mtime_ns == before
    assert sorted(os.listdir(tmp_path)) == ["config.yaml", "crieur.sqlite3"]


async def test_a_site_without_a_feed_is_failing_with_the_reason(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    serve_sites(feed_server)
    feed_server.set_feed("/lug/", b"<!doctype html><html><body>No feed</body></html>",
                         content_type="text/html")  # fmt: skip
    config = write_config(tmp_path, feed_server, with_missing=False)
    code, out, _ = await run_crieur("check", "--online", "-c", str(config))
    assert code == EXIT_FEED_ERRORS
    (line,) = [line for line in out.splitlines() if line.startswith("LUG ")]
    assert line.startswith(f"LUG site {feed_server.url('/lug/')}: failing: no feed found")
