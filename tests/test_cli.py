"""The `crieur` command line: check, fetch, OPML (exit codes and what a user reads)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from bot.cli import EXIT_FEED_ERRORS, EXIT_OK, EXIT_USER_ERROR, main
from bot.store import FoundSource, Store
from tests.feed_server import FeedServer, rss

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, feed_server: FeedServer, *, timeout: str = "2s") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""\
matrix:
  homeserver: http://127.0.0.1:1
  user_id: "@crieur:localhost"
  password: "s3cret-password"
database: ./crieur.sqlite3
language: en
polling:
  timeout: {timeout}
  allow_private_networks: true
regions:
  france: {{name: France}}
  ile-de-france: {{name: Île-de-France, rooms: ["!room:localhost"]}}
organisations:
  april:
    name: April
    region: france
    feeds: ["{feed_server.url("/april")}"]
  parinux:
    name: Parinux
    region: ile-de-france
    feeds: ["{feed_server.url("/parinux")}"]
""",
        encoding="utf-8",
    )
    return path


def item(n: int) -> dict[str, object]:
    return {
        "title": f"Soirée {n}",
        "guid": f"https://parinux.example/{n}",
        "link": f"https://parinux.example/{n}",
        "pubDate": f"Thu, 0{n} Jan 2026 10:00:00 +0000",
    }


async def crieur(*args: str) -> int:
    # main() runs its own event loop, so it gets a thread of its own here.
    return await asyncio.to_thread(main, list(args))


def test_example_configuration_passes_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(ROOT / "config.yaml.example")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "16 organisations" in out
    assert "Île-de-France" in out


def test_check_reports_each_problem_with_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "matrix: {homeserver: https://m.example, user_id: '@c:m.example', password: x}\n"
        "database: db.sqlite3\n"
        "regions: {france: {name: France}}\n"
        "organisations:\n"
        "  april: {name: April, region: idf, feeds: [https://april.example/rss]}\n"
        "polling: {interval: soon}\n",
        encoding="utf-8",
    )
    assert main(["check", "-c", str(bad)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.splitlines()
    assert "error: organisations.april.region: unknown region 'idf'" in err
    assert any(line.startswith("error: polling.interval:") for line in err)
    assert not any("Traceback" in line for line in err)


def test_missing_config_file_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "-c", str(tmp_path / "nope.yaml")]) == EXIT_USER_ERROR
    (line,) = capsys.readouterr().err.splitlines()
    assert "nope.yaml" in line


MINIMAL = (
    "matrix: {homeserver: https://m.example, user_id: '@c:m.example', password: x}\n"
    "regions: {france: {name: France}}\n"
)


def run_check(config: Path) -> subprocess.CompletedProcess[str]:
    """Run `crieur check` as a user would, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "bot", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("tail", "key"),
    [
        ("database: db.sqlite3\npolling: " + "[" * 5000 + "]" * 5000, "polling"),
        ("database: db.sqlite3\nregions: " + "{a: " * 3000 + "1" + "}" * 3000, "regions"),
        ("database: db.sqlite3\npolling: {concurrency: " + "9" * 5000 + "}", "polling.concurrency"),
        ("database: db.sqlite3\npolling: {interval: " + "9" * 400 + "}", "polling.interval"),
        ('database: "db\\0.sqlite3"', "database"),
        ("database: db.sqlite3\n? " + "9" * 5000 + "\n: x", ""),
        (
            "database: db.sqlite3\norganisations:\n"
            '  a: {name: "A\\0", region: france, feeds: ["https://a.example/rss"]}',
            "organisations.a.name",
        ),
        ("database: db\x00.sqlite3", ""),
    ],
    ids=[
        "nested-lists",
        "nested-maps",
        "huge-int",
        "huge-interval",
        "nul",
        "huge-key",
        "nul-name",
        "nul-byte",
    ],
)
def test_check_names_the_key_of_any_bad_input_without_a_traceback(
    tmp_path: Path, tail: str, key: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(MINIMAL + tail + "\n", encoding="utf-8")

    done = run_check(config)

    assert done.returncode == EXIT_USER_ERROR
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), done.stderr
    assert any(line.startswith(f"error: {key}") for line in lines), done.stderr


def test_check_reports_each_unreadable_value_once(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        MINIMAL + 'database: "db\\0.sqlite3"\npolling: {concurrency: ' + "9" * 50 + "}\n",
        encoding="utf-8",
    )

    lines = run_check(config).stderr.splitlines()

    assert [line.split(":")[1] for line in lines] == [" database", " polling.concurrency"]


def test_check_into_a_closed_pipe_ends_quietly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "check", "-c", str(ROOT / "config.yaml.example")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.close()  # like `| head -n 0`: every write meets a closed pipe
    _, err = process.communicate(timeout=60)
    assert err == ""
    assert process.returncode != EXIT_OK


async def test_fetch_dry_run_prints_new_items_and_leaves_no_database(
    tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, feed_server)
    feed_server.set_feed("/parinux", rss([item(2), item(1)]))
    assert await crieur("fetch", "-c", str(config), "--dry-run", "parinux") == EXIT_OK
    out = capsys.readouterr().out
    assert "Parinux (Île-de-France)" in out
    assert "Soirée 1" in out and "Soirée 2" in out
    assert "would be recorded" in out
    assert not (tmp_path / "crieur.sqlite3").exists()


async def test_fetch_records_then_reports_only_what_is_new(
    tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, feed_server)
    feed_server.set_feed("/parinux", rss([item(1)]))
    assert await crieur("fetch", "-c", str(config), "parinux") == EXIT_OK
    capsys.readouterr()
    feed_server.set_feed("/parinux", rss([item(2), item(1)]))
    before = (tmp_path / "crieur.sqlite3").read_bytes()
    assert await crieur("fetch", "-c", str(config), "--dry-run", "parinux") == EXIT_OK
    assert (tmp_path / "crieur.sqlite3").read_bytes() == before
    out = capsys.readouterr().out
    assert "Soirée 2" in out and "Soirée 1" not in out
    assert await crieur("fetch", "-c", str(config), "parinux") == EXIT_OK
    assert "1 new" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "crieur.sqlite3") as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
    assert count == 2


async def crieur_process(*args: str) -> asyncio.subprocess.Process:
    """Start `crieur` in a process of its own, as an operator's shell would."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finished(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """Wait for a process; return its exit code and what it wrote on stderr."""
    async with asyncio.timeout(60):  # a guard against a hang, not a timing check
        _, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_a_second_configuration_cannot_take_over_a_database_in_use(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    # The first process's poll is held while the others start: its timeout must outlast them.
    config = write_config(tmp_path, feed_server, timeout="120s")
    # Another file on the same database, with April only: syncing it would drop Parinux.
    other = tmp_path / "other.yaml"
    text = config.read_text(encoding="utf-8")
    other.write_text(text[: text.index("  parinux:")], encoding="utf-8")
    release, asked = asyncio.Event(), asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        asked.set()
        await release.wait()  # the first process stays in its poll until the test is done
        return web.Response(body=rss([item(1)]), content_type="application/rss+xml")

    feed_server.set_route("/april", held)
    feed_server.set_feed("/parinux", rss([item(1)]))
    # A room's own feed is the bot's, not the configuration's: it changes nothing below.
    async with await Store.open(tmp_path / "crieur.sqlite3") as store:
        own = FoundSource(feed_server.url("/lug"), "Mon LUG", None, ())
        await store.add_room_source("!room:localhost", own.url, own, now=0.0, next_poll=0.0)
    first = await crieur_process("fetch", "-c", str(config))
    try:
        async with asyncio.timeout(60):
            await asked.wait()  # the first process has the database and polls
        for command in ("fetch", "run"):
            code, err = await finished(await crieur_process(command, "-c", str(other)))
            assert code == EXIT_USER_ERROR
            (line,) = err.splitlines()
            assert line.startswith("error: database: ")
            assert f"belongs to crieur fetch (pid {first.pid})" in line
        # The same feeds as the process that holds the database: polling them changes nothing.
        code, err = await finished(await crieur_process("fetch", "-c", str(config), "parinux"))
        assert (code, err) == (EXIT_OK, "")
    finally:
        release.set()
    assert (await finished(first))[0] == EXIT_OK
    with sqlite3.connect(tmp_path / "crieur.sqlite3") as conn:
        active = conn.execute(
            "SELECT organisation FROM feeds WHERE active = 1 AND room_source = 0 ORDER BY 1"
        )
        assert [row[0] for row in active] == ["april", "parinux"]
    # Once the first process is gone, the database is free for another configuration.
    code, _ = await finished(await crieur_process("fetch", "-c", str(other)))
    assert code == EXIT_OK


async def test_fetch_of_a_broken_feed_says_why_and_exits_2(
    tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, feed_server)
    feed_server.status("/april", 500)
    feed_server.set_feed("/parinux", rss([item(1)]))
    assert await crieur("fetch", "-c", str(config)) == EXIT_FEED_ERRORS
    out = capsys.readouterr().out
    assert "error: HTTP 500" in out
    assert "Parinux" in out


def test_fetch_of_an_unknown_organisation_suggests_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch", "-c", str(ROOT / "config.yaml.example"), "--dry-run", "aprl"]) == 1
    err = capsys.readouterr().err
    assert "unknown organisation 'aprl'" in err
    assert "April" in err


def test_opml_export_lists_every_feed(capsys: pytest.CaptureFixture[str]) -> None:
    example = str(ROOT / "config.yaml.example")
    assert main(["export-opml", "-c", example]) == EXIT_OK
    exported = capsys.readouterr().out
    assert 'xmlUrl="https://www.april.org/fr/rss.xml"' in exported


def test_import_opml_prints_an_organisations_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opml = tmp_path / "feeds.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head><title>t</title></head><body>'
        '<outline text="Le Bar Libre" xmlUrl="https://bar.example/feed/" category="Bretagne"/>'
        "</body></opml>",
        encoding="utf-8",
    )
    assert main(["import-opml", "-c", str(ROOT / "config.yaml.example"), str(opml)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "organisations:" in out
    assert "https://bar.example/feed/" in out
    assert "bretagne" in out


def test_crieur_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert done.stdout.startswith("crieur ")
