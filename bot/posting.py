"""What a poll posts and to whom: caps, age, the digest, routing, transaction ids; all pure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .filters import Filter, Text, keeps_all
from .model import Entry


@dataclass(frozen=True, slots=True)
class PostingPlan:
    """Which new entries a poll posts, and what it only records."""

    post: tuple[Entry, ...]
    digest: tuple[Entry, ...]  # beyond the cap: summed up in one "… and N more" message
    too_old: tuple[Entry, ...]


def plan_posting(
    new_entries: Sequence[Entry], *, now: float, max_age: float, max_posts: int, seeded: bool
) -> PostingPlan:
    """Split new entries (oldest first) into posted, digested and too old to post."""
    if seeded:
        # A feed's first fetch holds its whole history: recorded as seen, never posted.
        return PostingPlan((), (), ())
    cutoff = now - max_age
    fresh: list[Entry] = []
    too_old: list[Entry] = []
    for entry in new_entries:
        if entry.published is not None and entry.published.timestamp() < cutoff:
            too_old.append(entry)
        else:
            fresh.append(entry)
    limit = max(max_posts, 0)
    return PostingPlan(tuple(fresh[:limit]), tuple(fresh[limit:]), tuple(too_old))


@dataclass(frozen=True, slots=True)
class Audience:
    """The rooms that may hear of one feed's entries, and those that may not."""

    region_followers: frozenset[str] = frozenset()
    organisation_followers: frozenset[str] = frozenset()
    muted: frozenset[str] = frozenset()  # rooms that muted the organisation
    departed: frozenset[str] = frozenset()  # rooms the bot left
    source_followers: frozenset[str] = frozenset()  # rooms that added this feed themselves


def target_rooms(audience: Audience) -> list[str]:
    """Return the rooms an entry goes to, each once, in a stable order.

    A room that added the feed itself gets it even if it muted the feed's organisation: the
    mute is about the catalogue's reasons, the room named this feed on purpose.
    """
    following = audience.region_followers | audience.organisation_followers
    chosen = (following - audience.muted) | audience.source_followers
    return sorted(chosen - audience.departed)


@dataclass(frozen=True, slots=True)
class Routing:
    """What each target room gets of a plan once its filters are applied."""

    shares: tuple[tuple[tuple[str, ...], PostingPlan], ...]  # rooms, and the plan they share
    held_back: Mapping[str, int]  # room → fresh entries its filters kept out of it


def route(
    plan: PostingPlan,
    rooms: Sequence[str],
    filters: Mapping[str, Sequence[Filter]],
    *,
    max_posts: int,
) -> Routing:
    """Apply each room's filters to a plan: what passes is posted, capped, then summed up.

    `filters` holds, per room, the filters that apply to this feed (the room's own, its
    region's, organisation's or feed's); a room without any gets the plan as it is. The cap
    and the "… and N more" count are taken over what passes, so a filtered room is never told
    of items it would not have been shown.
    """
    plain = tuple(room for room in rooms if not filters.get(room))
    shares: list[tuple[tuple[str, ...], PostingPlan]] = [(plain, plan)] if plain else []
    held_back: dict[str, int] = {}
    fresh = (*plan.post, *plan.digest)
    texts: dict[str, Text] = {}  # an entry's words are read once, however many rooms ask
    limit = max(max_posts, 0)
    for room in rooms:
        applying = filters.get(room)
        if not applying:
            continue
        kept: list[Entry] = []
        for entry in fresh:
            text = texts.get(entry.key)
            if text is None:
                text = texts[entry.key] = Text.of(entry)
            if keeps_all(applying, text):
                kept.append(entry)
        if len(kept) < len(fresh):
            held_back[room] = len(fresh) - len(kept)
        if kept:
            room_plan = PostingPlan(tuple(kept[:limit]), tuple(kept[limit:]), plan.too_old)
            shares.append(((room,), room_plan))
    return Routing(tuple(shares), held_back)


def transaction_id(room_id: str, feed_id: int, key: str) -> str:
    """Derive the Matrix transaction id of one message from its room and entry."""
    digest = hashlib.sha256(f"{room_id}\0{feed_id}\0{key}".encode()).hexdigest()
    return f"crieur.{digest[:40]}"


def digest_key(entries: Iterable[Entry]) -> str:
    """Return the key a digest of these entries is known by, as an entry is by its own."""
    joined = "\0".join(entry.key for entry in entries)
    return "digest:" + hashlib.sha256(joined.encode()).hexdigest()
