"""Prometheus metrics of one bot, kept in a registry of its own."""

from __future__ import annotations

import time
from typing import Any, Final, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .dispatcher import Sender
from .errors import HomeserverUnavailable, RateLimited, RoomUnavailable, SendError
from .model import Delivery
from .pipeline import PollOutcome, Status
from .store import Store

# The text format generate_latest() writes; prometheus_client's CONTENT_TYPE_LATEST may name a
# newer version than the body actually is.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# A fixed set, so a caller passing an error message cannot create one time series per message.
FAILURE_REASONS: Final = (
    "rate_limited",
    "homeserver_unavailable",
    "room_unavailable",
    "rejected",
    "other",
)

# Polls are bounded by polling.timeout (20 s by default), well past prometheus_client's 10 s.
POLL_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


def failure_reason(error: SendError) -> str:
    """Return the `reason` label for a message the homeserver did not take."""
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, HomeserverUnavailable):
        return "homeserver_unavailable"
    if isinstance(error, RoomUnavailable):
        return "room_unavailable"
    return "rejected"


class Metrics:
    """The bot's counters and gauges; listeners feed the counters, `refresh` the gauges."""

    def __init__(self, *, started: float | None = None) -> None:
        # Own registry: two bots (or two tests) in one process must not share series.
        self.registry = CollectorRegistry()
        self._started = time.time() if started is None else started
        self._polls = Counter(
            "crieur_polls",
            "Feed polls, by outcome (new, seeded, unchanged, not_modified, error).",
            ["outcome"],
            registry=self.registry,
        )
        self._poll_duration = Histogram(
            "crieur_fetch_duration_seconds",
            "Time taken by one poll of one feed: fetch, parse and store.",
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self._entries = Counter(
            "crieur_entries_found",
            "New entries found in feeds; a feed's first fetch (seeding) is not counted.",
            registry=self.registry,
        )
        self._sent = Counter(
            "crieur_messages_sent",
            "Messages the homeserver accepted.",
            registry=self.registry,
        )
        self._failed = Counter(
            "crieur_messages_failed",
            "Send attempts the homeserver did not take, by reason; each is retried.",
            ["reason"],
            registry=self.registry,
        )
        self._outbox = Gauge(
            "crieur_outbox_size",
            "Messages waiting to be sent.",
            registry=self.registry,
        )
        self._backoff = Gauge(
            "crieur_feeds_in_backoff",
            "Feeds whose last poll failed, now polled less often.",
            registry=self.registry,
        )
        self._sync_lag = Gauge(
            "crieur_sync_lag_seconds",
            "Seconds since the last successful Matrix sync (since start if none yet).",
            registry=self.registry,
        )
        self._undecryptable = Counter(
            "crieur_undecryptable_events",
            "Encrypted room events the bot could not decrypt (no room key); they are skipped.",
            registry=self.registry,
        )
        self._withheld = Counter(
            "crieur_withheld_room_keys",
            "Room keys a member's device refused the bot (m.room_key.withheld), with a reason.",
            registry=self.registry,
        )
        self._untrusted = Counter(
            "crieur_untrusted_commands",
            "Commands not run: sent from a device the trust policy (matrix.trust) does not trust.",
            registry=self.registry,
        )
        self._up = Gauge(
            "crieur_up",
            "1 when the bot passes its health check, else 0.",
            registry=self.registry,
        )
        # Every label value exists from the start, so rate() and alerts see a 0, not a gap.
        for status in get_args(Status):
            self._polls.labels(outcome=status)
        for reason in FAILURE_REASONS:
            self._failed.labels(reason=reason)

    def observe_poll(self, outcome: PollOutcome) -> None:
        """Count one poll; a Pipeline listener."""
        self._polls.labels(outcome=outcome.status).inc()
        self._poll_duration.observe(outcome.duration)
        # Seeding records a feed's whole backlog as seen: counting it would show a burst of
        # "news" on every deployment and every added feed.
        if outcome.status == "new" and outcome.record is not None:
            self._entries.inc(len(outcome.record.new_entries))

    def message_sent(self, delivery: Delivery) -> None:
        """Count one message the homeserver accepted; a Dispatcher listener."""
        self._sent.inc()

    def message_failed(self, reason: str) -> None:
        """Count one send attempt that failed; unknown reasons count as `other`."""
        self._failed.labels(reason=reason if reason in FAILURE_REASONS else "other").inc()

    def undecryptable_event(self) -> None:
        """Count one room event that could not be decrypted; a MatrixBot listener."""
        self._undecryptable.inc()

    def withheld_room_key(self) -> None:
        """Count one room key refused to the bot; a MatrixBot listener."""
        self._withheld.inc()

    def untrusted_command(self) -> None:
        """Count one command left unrun for its untrusted device; a MatrixBot listener."""
        self._untrusted.inc()

    async def refresh(
        self, store: Store, now: float, last_sync: float | None, *, up: bool = True
    ) -> None:
        """Update the gauges from the store and the sync loop, just before a scrape."""
        self._outbox.set(await store.outbox_size())
        feeds = await store.feeds()
        self._backoff.set(sum(1 for feed in feeds if feed.error_count > 0))
        since = self._started if last_sync is None else last_sync
        self._sync_lag.set(max(now - since, 0.0))
        self._up.set(1 if up else 0)

    def render(self) -> bytes:
        """Return every metric in the Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)


class CountingSender:
    """A Sender that counts the attempts the homeserver refused, then lets the error through."""

    def __init__(self, sender: Sender, metrics: Metrics) -> None:
        self._sender = sender
        self._metrics = metrics

    async def send_notice(self, room_id: str, content: dict[str, Any], txn_id: str) -> str:
        """Send through the wrapped sender."""
        try:
            return await self._sender.send_notice(room_id, content, txn_id)
        except SendError as error:
            self._metrics.message_failed(failure_reason(error))
            raise
