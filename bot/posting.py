"""What a poll posts and to whom: caps, age, the digest, routing, transaction ids; all pure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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


def transaction_id(room_id: str, feed_id: int, key: str) -> str:
    """Derive the Matrix transaction id of one message from its room and entry."""
    digest = hashlib.sha256(f"{room_id}\0{feed_id}\0{key}".encode()).hexdigest()
    return f"crieur.{digest[:40]}"


def digest_key(entries: Iterable[Entry]) -> str:
    """Return the key a digest of these entries is known by, as an entry is by its own."""
    joined = "\0".join(entry.key for entry in entries)
    return "digest:" + hashlib.sha256(joined.encode()).hexdigest()
