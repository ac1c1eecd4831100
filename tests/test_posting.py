"""What a poll posts and to whom: caps, age, the digest, routing, transaction ids."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from bot.model import Entry
from bot.posting import Audience, digest_key, plan_posting, target_rooms, transaction_id

NOW = datetime(2026, 1, 9, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400.0


def entry(key: str, *, days_ago: float | None = 0.0) -> Entry:
    published = (
        None if days_ago is None else datetime.fromtimestamp(NOW, UTC) - timedelta(days=days_ago)
    )
    return Entry(key, f"Title {key}", f"https://example.org/{key}", published, "<p>hi</p>")


def keys(entries: tuple[Entry, ...]) -> list[str]:
    return [e.key for e in entries]


def audience(
    region: Iterable[str] = (),
    organisation: Iterable[str] = (),
    muted: Iterable[str] = (),
    departed: Iterable[str] = (),
) -> Audience:
    return Audience(
        frozenset(region), frozenset(organisation), frozenset(muted), frozenset(departed)
    )


def test_new_entries_within_the_cap_are_all_posted_in_order() -> None:
    plan = plan_posting(
        [entry("a"), entry("b")], now=NOW, max_age=7 * DAY, max_posts=5, seeded=False
    )
    assert (keys(plan.post), plan.digest, plan.too_old) == (["a", "b"], (), ())


def test_a_first_fetch_posts_nothing() -> None:
    plan = plan_posting([entry("a")], now=NOW, max_age=7 * DAY, max_posts=5, seeded=True)
    assert (plan.post, plan.digest, plan.too_old) == ((), (), ())


def test_plan_posting_keeps_undated_entries_and_order() -> None:
    plan = plan_posting(
        [entry("old", days_ago=9), entry("u", days_ago=None), entry("x")],
        now=NOW,
        max_age=7 * DAY,
        max_posts=1,
        seeded=False,
    )
    assert keys(plan.post) == ["u"]
    assert keys(plan.digest) == ["x"]
    assert keys(plan.too_old) == ["old"]


def test_entries_beyond_the_cap_go_to_the_digest() -> None:
    fresh = [entry(f"n{i}") for i in range(7)]
    plan = plan_posting(fresh, now=NOW, max_age=7 * DAY, max_posts=5, seeded=False)
    assert keys(plan.post) == ["n0", "n1", "n2", "n3", "n4"]
    assert keys(plan.digest) == ["n5", "n6"]


def test_a_cap_of_zero_sums_everything_up() -> None:
    plan = plan_posting([entry("a")], now=NOW, max_age=7 * DAY, max_posts=0, seeded=False)
    assert (plan.post, keys(plan.digest)) == ((), ["a"])


def test_routing_reaches_region_and_organisation_followers_once_each() -> None:
    rooms = target_rooms(audience(region={"!r:x", "!both:x"}, organisation={"!o:x", "!both:x"}))
    assert rooms == ["!both:x", "!o:x", "!r:x"]


def test_routing_skips_rooms_that_muted_the_organisation_or_were_left() -> None:
    rooms = target_rooms(
        audience(region={"!a:x", "!b:x", "!c:x"}, muted={"!a:x"}, departed={"!b:x"})
    )
    assert rooms == ["!c:x"]


def test_transaction_ids_are_deterministic_and_per_room() -> None:
    assert transaction_id("!a:x", 1, "k") == transaction_id("!a:x", 1, "k")
    assert transaction_id("!a:x", 1, "k") != transaction_id("!b:x", 1, "k")
    assert transaction_id("!a:x", 1, "k") != transaction_id("!a:x", 2, "k")


def test_a_digest_is_known_by_the_entries_it_stands_for() -> None:
    assert digest_key([entry("a"), entry("b")]) == digest_key([entry("a"), entry("b")])
    assert digest_key([entry("a"), entry("b")]) != digest_key([entry("a"), entry("c")])
    assert digest_key([entry("a")]) != entry("a").key
