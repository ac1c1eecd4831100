"""What a poll posts and to whom: caps, age, the digest, routing, transaction ids."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from bot.filters import Filter, Term
from bot.model import Entry
from bot.posting import (
    Audience,
    PostingPlan,
    digest_key,
    plan_posting,
    route,
    target_rooms,
    transaction_id,
)

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


def titled(*titles: str) -> list[Entry]:
    return [
        Entry(f"k{n}", title, None, datetime.fromtimestamp(NOW, UTC), "")
        for n, title in enumerate(titles)
    ]


def only(*words: str) -> Filter:
    return Filter.of(Term((word,), True) for word in words)


def shares(
    plan: PostingPlan, rooms: list[str], filters: dict[str, list[Filter]], cap: int = 5
) -> tuple[dict[str, tuple[list[str], list[str]]], dict[str, int]]:
    routing = route(plan, rooms, filters, max_posts=cap)
    shared = {
        room: (keys(room_plan.post), keys(room_plan.digest))
        for sharing, room_plan in routing.shares
        for room in sharing
    }
    return shared, dict(routing.held_back)


def test_rooms_without_filters_share_the_plan_as_it_is() -> None:
    plan = plan_posting(titled("Linux", "BSD"), now=NOW, max_age=DAY, max_posts=5, seeded=False)
    routing = route(plan, ["!a", "!b"], {}, max_posts=5)
    assert routing.shares == ((("!a", "!b"), plan),)
    assert routing.held_back == {}


def test_an_entry_filtered_out_of_a_room_is_not_planned_there_and_is_counted() -> None:
    plan = plan_posting(
        titled("Atelier Linux", "Offre d'emploi", "Install party Linux"),
        now=NOW,
        max_age=DAY,
        max_posts=5,
        seeded=False,
    )
    shared, held = shares(plan, ["!f", "!plain"], {"!f": [only("linux")]})
    assert shared == {"!plain": (["k0", "k1", "k2"], []), "!f": (["k0", "k2"], [])}
    assert held == {"!f": 1}


def test_the_cap_and_the_digest_count_only_what_passes_the_filters() -> None:
    titles = [f"Linux {n}" if n % 2 else f"Windows {n}" for n in range(8)]
    plan = plan_posting(titled(*titles), now=NOW, max_age=DAY, max_posts=2, seeded=False)
    shared, held = shares(plan, ["!f", "!plain"], {"!f": [only("linux")]}, cap=2)
    assert shared["!plain"] == (["k0", "k1"], ["k2", "k3", "k4", "k5", "k6", "k7"])
    assert shared["!f"] == (["k1", "k3"], ["k5", "k7"])
    assert held == {"!f": 4}


def test_a_room_whose_filters_keep_nothing_gets_no_plan_at_all() -> None:
    plan = plan_posting(titled("Windows"), now=NOW, max_age=DAY, max_posts=5, seeded=False)
    routing = route(plan, ["!f"], {"!f": [only("linux")]}, max_posts=5)
    assert routing.shares == ()
    assert routing.held_back == {"!f": 1}


def test_too_old_entries_are_not_counted_as_held_back() -> None:
    old = Entry("old", "Windows", None, datetime.fromtimestamp(NOW - 9 * DAY, UTC), "")
    plan = plan_posting(
        [old, *titled("Linux")], now=NOW, max_age=7 * DAY, max_posts=5, seeded=False
    )
    shared, held = shares(plan, ["!f"], {"!f": [only("linux")]})
    assert shared == {"!f": (["k0"], [])}
    assert held == {}
