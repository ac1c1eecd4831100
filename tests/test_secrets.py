"""Secrets never leave the process: masked URLs, private files, the token redacted early."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import run_bot
from bot.cli import EXIT_FEED_ERRORS
from bot.config import Config, MatrixConfig
from bot.files import private_dir
from bot.logs import RedactSecrets
from bot.matrix import KEY_ACCESS_TOKEN
from bot.matrix.private_store import private_store_class
from bot.redact import mask_url, mask_urls
from bot.store import Store
from tests.feed_server import FeedServer
from tests.test_cli import crieur

PASSWORD = "pa55-w0rd"
TOKEN = "t0ken-value-123"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask, so that only Crieur's own care makes files private."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# -- masking ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://news.example/feed.xml", "https://news.example/feed.xml"),
        ("https://bob:hunter2@news.example/rss", "https://bob:***@news.example/rss"),
        ("https://bob@news.example/rss", "https://bob@news.example/rss"),
        ("https://n.example/rss?token=abc&page=2", "https://n.example/rss?token=***&page=2"),
        (
            "https://n.example/f?API_KEY=1&Secret=2&password=3&auth=4&sig=5&session_id=6&q=x",
            "https://n.example/f?API_KEY=***&Secret=***&password=***&auth=***&sig=***"
            "&session_id=***&q=x",
        ),
        ("https://n.example/f?access%5Ftoken=s#top", "https://n.example/f?access%5Ftoken=***#top"),
        ("https://n.example/f?token=&flag", "https://n.example/f?token=&flag"),
        ("https://n.example/a@b?x=1", "https://n.example/a@b?x=1"),  # an @ in the path
        ("https://u:p@[::1/x?key=v", "https://u:***@[::1/x?key=***"),  # malformed, still masked
    ],
)
def test_mask_url_hides_the_password_and_secret_like_query_values(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_mask_urls_masks_each_url_of_a_text() -> None:
    text = "feed https://a:b@x.example/f?key=k: failed; see 'http://y.example/?sig=s'."
    assert mask_urls(text) == (
        "feed https://a:***@x.example/f?key=***: failed; see 'http://y.example/?sig=***'."
    )
    assert mask_urls("no address here") == "no address here"


def test_the_log_redactor_masks_urls_in_messages_and_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger("tests.secrets")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"https://u:{PASSWORD}@x.example/?token={TOKEN}")
        except ValueError:
            logger.exception("poll of %s", f"https://x.example/?session={TOKEN}")
    finally:
        logger.removeHandler(handler)
    assert PASSWORD not in out.getvalue() and TOKEN not in out.getvalue()
    assert "?session=***" in out.getvalue() and "u:***@" in out.getvalue()


# -- a failing feed whose URL carries secrets --------------------------------------------------


async def test_a_failing_feed_never_shows_its_secrets(
    tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    base = feed_server.url("/april").removeprefix("http://")
    url = f"http://crieur:{PASSWORD}@{base}?token={TOKEN}&page=2"
    feed_server.status("/april", 500)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""\
matrix: {{homeserver: "http://127.0.0.1:1", user_id: "@crieur:localhost", password: x}}
database: ./crieur.sqlite3
language: en
polling: {{timeout: 2s, allow_private_networks: true}}
regions: {{france: {{name: France}}}}
organisations:
  april: {{name: April, region: france, feeds: ["{url}"]}}
""",
        encoding="utf-8",
    )
    # Every level: debug lines of every library go through the same redactor.
    code = await crieur("--log-level", "debug", "fetch", "-c", str(config))
    assert code == EXIT_FEED_ERRORS
    captured = capsys.readouterr()
    for shown in (captured.out, captured.err):
        assert PASSWORD not in shown and TOKEN not in shown
    assert f"http://crieur:***@{base}?token=***&page=2: error: HTTP 500" in captured.out
    assert f"feed http://crieur:***@{base}?token=***&page=2 (april) failed" in captured.err
    async with await Store.open(tmp_path / "crieur.sqlite3") as store:
        (feed,) = await store.feeds(["april"])
    assert feed.last_error is not None and TOKEN not in feed.last_error


# -- files -------------------------------------------------------------------------------------


async def test_the_database_and_its_wal_files_are_private_from_creation(
    tmp_path: Path, open_umask: None
) -> None:
    path = tmp_path / "data" / "crieur.sqlite3"
    store = await Store.open(path)
    try:
        # Right after opening: the WAL files exist (the schema was written through them).
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert mode_of(file) == 0o600, file
    finally:
        await store.close()


async def test_an_existing_database_loses_group_and_other_access(
    tmp_path: Path, open_umask: None
) -> None:
    path = tmp_path / "crieur.sqlite3"
    await (await Store.open(path)).close()
    path.chmod(0o644)
    await (await Store.open(path)).close()
    assert mode_of(path) == 0o600


def test_the_crypto_store_is_private_from_creation(tmp_path: Path, open_umask: None) -> None:
    store_dir = tmp_path / "matrix" / "matrix-store"
    private_dir(store_dir)
    assert mode_of(store_dir) == 0o700
    store = private_store_class()("@crieur:localhost", "DEVICE", str(store_dir), "", "")
    try:
        files = list(store_dir.iterdir())
        assert files and all(mode_of(file) == 0o600 for file in files)
    finally:
        store.database.close()


def test_an_existing_crypto_store_loses_group_and_other_access(
    tmp_path: Path, open_umask: None
) -> None:
    store_dir = tmp_path / "matrix-store"
    store_dir.mkdir(mode=0o755)
    old = store_dir / "old.db"
    old.write_bytes(b"")
    old.chmod(0o644)
    private_dir(store_dir)
    assert (mode_of(store_dir), mode_of(old)) == (0o700, 0o600)


# -- the stored access token -------------------------------------------------------------------


async def test_the_stored_token_is_redacted_before_the_first_request(tmp_path: Path) -> None:
    database = tmp_path / "crieur.sqlite3"
    async with await Store.open(database) as store:
        await store.set_value("matrix.user_id", "@crieur:localhost")
        await store.set_value(KEY_ACCESS_TOKEN, TOKEN)
    config = Config(
        matrix=MatrixConfig(
            homeserver="http://127.0.0.1:1",  # nothing listens: the first request keeps failing
            user_id="@crieur:localhost",
            password="x",
            encryption=False,
        ),
        database=database,
    )
    redactor = RedactSecrets()
    seen: list[bool] = []  # at each failed request: was the token already registered?

    class Witness(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(redactor.redact(TOKEN) != TOKEN)

    witness = Witness(logging.WARNING)
    session_log = logging.getLogger("bot.matrix.session")
    session_log.addHandler(witness)
    task = asyncio.create_task(run_bot(config, redactor=redactor))
    try:
        async with asyncio.timeout(10):
            while not seen:
                assert not task.done()
                await asyncio.sleep(0.01)
    finally:
        session_log.removeHandler(witness)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert seen[0], "the stored token was sent before the log redactor knew it"
