"""The SQLite store: schema versions, seeding, routing, atomicity, outbox."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite
import pytest

from bot.errors import StoreError
from bot.model import Entry
from bot.store import Database, FeedState, Store
from bot.store.migrations import SCHEMA_VERSION, migrate

NOW = datetime(2026, 1, 9, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400.0


def entry(key: str, *, days_ago: float = 0.0) -> Entry:
    published = datetime.fromtimestamp(NOW, UTC) - timedelta(days=days_ago)
    return Entry(key, f"Title {key}", f"https://example.org/{key}", published, "<p>hi</p>")


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    db = await Store.open(tmp_path / "crieur.sqlite3")
    await db.sync_feeds([("april", "https://april.example/rss"), ("parinux", "https://p.example/")])
    yield db  # type: ignore[misc]
    await db.close()


async def feed_of(store: Store, organisation: str) -> FeedState:
    (feed,) = await store.feeds([organisation])
    return feed


async def poll(store: Store, organisation: str, region: str, entries: list[Entry], **kw: object):  # type: ignore[no-untyped-def]
    feed = await feed_of(store, organisation)
    options: dict[str, object] = {
        "now": NOW,
        "next_poll": NOW + 1800,
        "max_age": 7 * DAY,
        "max_posts": 5,
        "etag": None,
        "last_modified": None,
        "body_hash": None,
    }
    options.update(kw)
    return await store.record_poll(feed, region, entries, **options)  # type: ignore[arg-type]


async def recorded(store: Store, organisation: str = "april") -> list[str]:
    return sorted(e.key for _, e in await store.latest_entries([organisation], 100))


async def seed(store: Store, organisation: str = "april", region: str = "france") -> None:
    await poll(store, organisation, region, [entry("old")])


# -- schema -------------------------------------------------------------------------------------


async def test_fresh_database_gets_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    async with await Store.open(path):
        pass
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"feeds", "entries", "follows", "mutes", "outbox", "kv", "rooms"} <= tables


async def test_database_of_the_first_schema_is_upgraded_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await migrate(conn, target=1)
        await conn.execute(
            "INSERT INTO feeds (organisation, config_url, url) VALUES ('april', 'u', 'u')"
        )
    async with await Store.open(path) as store:
        feeds = await store.feeds()
    assert [feed.organisation for feed in feeds] == ["april"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this Crieur"):
        await Store.open(path)


async def test_failed_migration_step_leaves_the_previous_version_intact(tmp_path: Path) -> None:
    path = tmp_path / "clash.sqlite3"
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await migrate(conn, target=1)
        await conn.execute("CREATE TABLE rooms (x)")  # makes step 2 fail half-way
    with pytest.raises(sqlite3.OperationalError):
        await Store.open(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "outbox_pending" not in indexes


# -- feeds and seeding --------------------------------------------------------------------------


async def test_first_poll_records_entries_and_posts_nothing(store: Store) -> None:
    await store.follow("!room:x", "region", "france", now=NOW)
    record = await poll(store, "april", "france", [entry("a"), entry("b")])
    assert record.seeded
    assert [e.key for e in record.new_entries] == ["a", "b"]
    assert record.deliveries == 0
    assert await store.outbox_size() == 0
    assert (await feed_of(store, "april")).initialised


async def test_seen_entries_are_not_posted_again(store: Store) -> None:
    await store.follow("!room:x", "region", "france", now=NOW)
    await seed(store)
    first = await poll(store, "april", "france", [entry("old"), entry("new")])
    again = await poll(store, "april", "france", [entry("old"), entry("new")])
    assert [e.key for e in first.new_entries] == ["new"]
    assert again.new_entries == ()
    assert await store.outbox_size() == 1


async def test_entry_older_than_max_age_is_recorded_not_posted(store: Store) -> None:
    await store.follow("!room:x", "region", "france", now=NOW)
    await seed(store)
    record = await poll(store, "april", "france", [entry("ancient", days_ago=30), entry("fresh")])
    assert [e.key for e in record.new_entries] == ["ancient", "fresh"]
    assert [e.key for e in record.posted] == ["fresh"]
    assert record.too_old == 1
    assert await store.outbox_size() == 1


async def test_beyond_max_posts_the_rest_becomes_one_digest_row(store: Store) -> None:
    await store.follow("!room:x", "region", "france", now=NOW)
    await seed(store)
    fresh = [entry(f"n{i}", days_ago=1 - i / 10) for i in range(7)]
    record = await poll(store, "april", "france", fresh, max_posts=5)
    assert [e.key for e in record.posted] == ["n0", "n1", "n2", "n3", "n4"]
    assert record.digested == 2
    deliveries = await store.pending_deliveries(NOW)
    assert [d.entry.key if d.entry else f"digest {d.digest_count}" for d in deliveries] == [
        "n0",
        "n1",
        "n2",
        "n3",
        "n4",
        "digest 2",
    ]


async def test_failures_count_up_and_success_resets(store: Store) -> None:
    feed = await feed_of(store, "april")
    assert await store.record_failure(feed.id, now=NOW, error="HTTP 500", next_poll=NOW + 60) == 1
    assert await store.record_failure(feed.id, now=NOW, error="HTTP 500", next_poll=NOW + 120) == 2
    await store.record_not_modified(feed.id, now=NOW + 200, next_poll=NOW + 2000)
    healed = await feed_of(store, "april")
    assert (healed.error_count, healed.last_error, healed.last_success) == (0, None, NOW + 200)


async def test_permanent_redirect_moves_the_feed_but_keeps_its_identity(store: Store) -> None:
    feed = await feed_of(store, "april")
    await store.record_not_modified(
        feed.id, now=NOW, next_poll=NOW + 1, new_url="https://new.example/rss"
    )
    moved = await feed_of(store, "april")
    assert (moved.config_url, moved.url) == ("https://april.example/rss", "https://new.example/rss")
    await store.sync_feeds([("april", "https://april.example/rss")])
    assert (await feed_of(store, "april")).url == "https://new.example/rss"


async def test_feeds_removed_from_the_config_are_no_longer_polled(store: Store) -> None:
    await store.sync_feeds([("april", "https://april.example/rss")])
    assert [feed.organisation for feed in await store.feeds()] == ["april"]
    assert [feed.organisation for feed in await store.feeds_due(NOW)] == ["april"]


# -- routing ------------------------------------------------------------------------------------


async def test_routing_reaches_region_and_organisation_followers_once_each(store: Store) -> None:
    await store.follow("!region:x", "region", "france", now=NOW)
    await store.follow("!org:x", "organisation", "april", now=NOW)
    await store.follow("!both:x", "region", "france", now=NOW)
    await store.follow("!both:x", "organisation", "april", now=NOW)
    await store.follow("!other:x", "region", "ile-de-france", now=NOW)
    await seed(store)
    record = await poll(store, "april", "france", [entry("new")])
    rooms = sorted(d.room_id for d in await store.pending_deliveries(NOW))
    assert rooms == ["!both:x", "!org:x", "!region:x"]
    assert record.deliveries == 3


async def test_muted_organisation_skips_a_room_following_its_region(store: Store) -> None:
    await store.follow("!room:x", "region", "france", now=NOW)
    await store.mute("!room:x", "april", now=NOW)
    await seed(store)
    await poll(store, "april", "france", [entry("new")])
    assert await store.outbox_size() == 0


async def test_rooms_the_bot_left_get_nothing_and_lose_their_queue(store: Store) -> None:
    await store.follow("!room:x", "region", "france", now=NOW)
    await seed(store)
    await poll(store, "april", "france", [entry("one")])
    assert await store.room_left("!room:x", now=NOW, reason="kicked") == 1
    await poll(store, "april", "france", [entry("two")])
    assert await store.outbox_size() == 0
    await store.room_joined("!room:x")
    await poll(store, "april", "france", [entry("three")])
    assert await store.outbox_size() == 1


async def test_config_follows_follow_the_config(store: Store) -> None:
    await store.sync_config_follows({"!a:x": ["france"], "!b:x": ["bretagne"]}, now=NOW)
    await store.follow("!b:x", "organisation", "april", now=NOW)
    await store.sync_config_follows({"!a:x": ["france"]}, now=NOW)
    assert (await store.subscriptions("!a:x")).regions == ("france",)
    kept = await store.subscriptions("!b:x")
    assert (kept.regions, kept.organisations) == ((), ("april",))


async def test_room_upgrade_carries_follows_and_mutes(store: Store) -> None:
    await store.follow("!old:x", "region", "france", now=NOW)
    await store.mute("!old:x", "april", now=NOW)
    await store.move_room("!old:x", "!new:x")
    moved = await store.subscriptions("!new:x")
    assert (moved.regions, moved.muted) == (("france",), ("april",))
    gone = await store.subscriptions("!old:x")
    assert (gone.regions, gone.muted) == ((), ())


# -- atomicity and outbox -----------------------------------------------------------------------


async def test_entries_and_outbox_rows_are_written_together_or_not_at_all(
    store: Store, tmp_path: Path
) -> None:
    await store.follow("!room:x", "region", "france", now=NOW)
    await seed(store)
    with sqlite3.connect(tmp_path / "crieur.sqlite3") as conn:
        conn.execute(
            "CREATE TRIGGER fail BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    with pytest.raises(sqlite3.IntegrityError, match="boom"):
        await poll(store, "april", "france", [entry("new")])
    assert await recorded(store) == ["old"]  # only the seeded one
    assert await store.outbox_size() == 0
    with sqlite3.connect(tmp_path / "crieur.sqlite3") as conn:
        conn.execute("DROP TRIGGER fail")
    retried = await poll(store, "april", "france", [entry("new")])
    assert [e.key for e in retried.new_entries] == ["new"]
    assert await store.outbox_size() == 1


async def test_pending_deliveries_come_oldest_first_and_leave_once_sent(store: Store) -> None:
    await store.follow("!room:x", "region", "france", now=NOW)
    await seed(store)
    await poll(store, "april", "france", [entry("a", days_ago=2), entry("b", days_ago=1)])
    first, second = await store.pending_deliveries(NOW)
    assert (first.entry and first.entry.key, second.entry and second.entry.key) == ("a", "b")
    await store.mark_sent(first.id, now=NOW, event_id="$e1")
    await store.defer_delivery(second.id, next_try=NOW + 60, error="timeout")
    assert await store.pending_deliveries(NOW) == []
    (later,) = await store.pending_deliveries(NOW + 60)
    assert (later.id, later.attempts) == (second.id, 1)
    assert await store.outbox_size("!room:x") == 1  # the sent one left the outbox


async def test_paused_room_keeps_its_rows_until_resumed(store: Store) -> None:
    await store.follow("!room:x", "region", "france", now=NOW)
    await seed(store)
    await poll(store, "april", "france", [entry("a")])
    await store.pause_room("!room:x", now=NOW, reason="M_FORBIDDEN")
    assert await store.pending_deliveries(NOW) == []
    assert await store.outbox_size("!room:x") == 1
    assert [room.paused_reason for room in await store.paused_rooms()] == ["M_FORBIDDEN"]
    assert await store.resume_room("!room:x")
    assert len(await store.pending_deliveries(NOW)) == 1


async def test_in_memory_copy_leaves_the_file_untouched(store: Store, tmp_path: Path) -> None:
    await seed(store)
    path = tmp_path / "crieur.sqlite3"
    async with await Store.open_copy(path) as copy:
        await poll(copy, "april", "france", [entry("new")])
        assert await recorded(copy) == ["new", "old"]
    assert await recorded(store) == ["old"]


async def test_values_are_stored_and_forgotten(store: Store) -> None:
    assert await store.get_value("sync_token") is None
    await store.set_value("sync_token", "s1")
    await store.set_value("sync_token", "s2")
    assert await store.get_value("sync_token") == "s2"
    await store.delete_value("sync_token")
    assert await store.get_value("sync_token") is None


async def test_room_upgrade_carries_pending_messages(store: Store) -> None:
    await store.follow("!old:x", "region", "france", now=NOW)
    await seed(store)
    await poll(store, "april", "france", [entry("new")])
    await store.move_room("!old:x", "!new:x")
    (moved,) = await store.pending_deliveries(NOW)
    assert moved.room_id == "!new:x"


async def test_unfollowing_a_configured_region_lasts_until_the_config_changes(
    store: Store,
) -> None:
    await store.sync_config_follows({"!a:x": ["france"]}, now=NOW)
    await store.unfollow("!a:x", "region", "france")
    await store.sync_config_follows({"!a:x": ["france"]}, now=NOW)
    assert (await store.subscriptions("!a:x")).regions == ()
    await store.sync_config_follows({"!a:x": ["france", "bretagne"]}, now=NOW)
    assert (await store.subscriptions("!a:x")).regions == ("bretagne",)


async def test_concurrent_unchanged_polls_are_all_committed(tmp_path: Path) -> None:
    urls = [(f"org{n}", f"https://feed{n}.example/") for n in range(40)]
    async with await Store.open(tmp_path / "many.sqlite3") as store:
        await store.sync_feeds(urls)
        feeds = await store.feeds()
        await asyncio.gather(
            *(
                store.record_not_modified(
                    feed.id, now=NOW, next_poll=NOW + feed.id, etag=f"e{feed.id}"
                )
                for feed in feeds
            )
        )
    async with await Store.open(tmp_path / "many.sqlite3") as reopened:
        after = await reopened.feeds()
    assert [(f.last_success, f.next_poll, f.etag) for f in after] == [
        (NOW, NOW + f.id, f"e{f.id}") for f in after
    ]


async def test_a_failed_batch_of_unchanged_polls_leaves_no_caller_waiting(
    store: Store, tmp_path: Path
) -> None:
    april, parinux = await store.feeds()
    with sqlite3.connect(tmp_path / "crieur.sqlite3") as conn:
        conn.execute(
            f"CREATE TRIGGER fail BEFORE UPDATE ON feeds WHEN NEW.id = {april.id}"
            " BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    async with asyncio.timeout(5):
        results = await asyncio.gather(
            store.record_not_modified(april.id, now=NOW, next_poll=NOW + 1),
            store.record_not_modified(parinux.id, now=NOW, next_poll=NOW + 1),
            return_exceptions=True,
        )
        assert isinstance(results[0], sqlite3.IntegrityError)
        await store.record_not_modified(parinux.id, now=NOW, next_poll=NOW + 2)
    assert [f.next_poll for f in await store.feeds(["parinux"])] == [NOW + 2]


async def test_a_read_only_database_is_a_store_error_that_says_so(tmp_path: Path) -> None:
    path = tmp_path / "crieur.sqlite3"
    await (await Store.open(path)).close()
    conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    read_only = Store(Database(conn, str(path)))
    try:
        with pytest.raises(StoreError, match="read-only") as caught:
            await read_only.set_value("k", "v")
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert await read_only.get_value("k") is None  # reads still work
    finally:
        await read_only.close()


async def test_a_newer_database_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "crieur.sqlite3"
    with sqlite3.connect(path) as db:  # a rollback-journal file, as a newer Crieur might leave
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer"):
        await Store.open(path)
    assert path.read_bytes() == before  # not even switched to WAL
