"""The health and metrics listener over real HTTP, with a real store and clocks the test sets."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Organisation, PollingConfig
from bot.dispatcher import Dispatcher
from bot.errors import ConfigError, RateLimited
from bot.fetcher import Fetcher
from bot.health import HealthProbe, HttpServer, parse_listen, serve
from bot.metrics import CountingSender, Metrics
from bot.model import Delivery
from bot.pipeline import Pipeline
from bot.scheduler import PollTiming
from bot.store import Store
from tests.clock import Clock
from tests.feed_server import FeedServer, rss

START = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
ROOM = "!news:example.org"


@dataclass
class Signs:
    """The last signs of life of the sync loop, the scheduler and the homeserver."""

    sync: float | None
    tick: float | None
    reachable: float | None


class ScriptedSender:
    """Accepts every message, after raising the scripted errors first."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.failures: list[Exception] = []

    async def send_notice(self, room_id: str, content: dict[str, Any], txn_id: str) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(txn_id)
        return f"$event{len(self.sent)}"


@dataclass
class Bench:
    store: Store
    clock: Clock
    signs: Signs
    metrics: Metrics
    server: HttpServer
    session: aiohttp.ClientSession
    feeds: FeedServer
    polling: PollingConfig = field(
        default_factory=lambda: PollingConfig(timeout=2, allow_private_networks=True)
    )

    async def get(self, path: str) -> tuple[int, str, bytes]:
        async with self.session.get(self.server.url + path) as response:
            return response.status, response.headers["Content-Type"], await response.read()

    async def health(self) -> tuple[int, dict[str, Any]]:
        async with self.session.get(self.server.url + "/health") as response:
            return response.status, await response.json()

    async def scrape(self) -> dict[str, float]:
        """Return every sample of /metrics as `name{label="value"}` → value."""
        status, _, body = await self.get("/metrics")
        assert status == 200
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return values

    async def poll(self) -> None:
        """Poll April's feed once, with the metrics listening."""
        organisations = {"april": Organisation("april", "April", "france", feeds=(self.url,))}
        async with Fetcher(self.polling) as fetcher:
            pipeline = Pipeline(
                self.store,
                fetcher,
                organisations,
                self.polling,
                timing=PollTiming(organisations, self.polling),
                clock=self.clock,
                listeners=(self.metrics.observe_poll,),
            )
            (feed,) = await self.store.feeds()
            await pipeline.poll(feed)

    def dispatcher(self, sender: ScriptedSender) -> Dispatcher:
        """Return a dispatcher whose sends and refusals the metrics count."""
        return Dispatcher(
            self.store,
            CountingSender(sender, self.metrics),
            render,
            clock=self.clock,
            listeners={"metrics": self.metrics.message_sent},
        )

    @property
    def url(self) -> str:
        return self.feeds.url("/april.xml")


def render(delivery: Delivery) -> dict[str, Any]:
    return {"msgtype": "m.notice", "body": delivery.entry.title if delivery.entry else "digest"}


def item(n: int) -> dict[str, object]:
    return {
        "title": f"Article {n}",
        "guid": f"https://april.example/{n}",
        "link": f"https://april.example/{n}",
        "pubDate": START - timedelta(hours=10 - n),
    }


@pytest.fixture
async def bench(tmp_path: Path, feed_server: FeedServer) -> AsyncIterator[Bench]:
    clock = Clock(START.timestamp())
    now = clock()
    signs = Signs(sync=now - 5, tick=now - 10, reachable=now - 5)
    store = await Store.open(tmp_path / "crieur.sqlite3")
    await store.sync_feeds([("april", feed_server.url("/april.xml"))])
    await store.follow(ROOM, "region", "france", now=now)
    metrics = Metrics(started=now - 60)
    probe = HealthProbe(
        last_sync=lambda: signs.sync,
        last_tick=lambda: signs.tick,
        last_reachable=lambda: signs.reachable,
        started=now - 60,
    )
    try:
        async with (
            HttpServer("127.0.0.1:0", probe, metrics, store, clock=clock) as server,
            aiohttp.ClientSession() as session,
        ):
            yield Bench(store, clock, signs, metrics, server, session, feed_server)
    finally:
        await store.close()


# -- /health ----------------------------------------------------------------------------------


async def test_health_is_200_when_sync_scheduler_and_homeserver_are_fresh(bench: Bench) -> None:
    status, body = await bench.health()
    assert status == 200
    assert body == {
        "ok": True,
        "checks": {
            "sync": {"ok": True, "age": 5.0, "max_age": 90.0},
            "scheduler": {"ok": True, "age": 10.0, "max_age": 120.0},
            "homeserver": {"ok": True, "age": 5.0, "max_age": 120.0},
        },
    }


async def test_health_is_503_with_details_when_the_homeserver_is_down(bench: Bench) -> None:
    # Synapse stopped 200 s ago: the sync loop gets no answer, the scheduler goes on.
    bench.signs.sync = bench.signs.reachable = bench.clock() - 200
    status, body = await bench.health()
    assert status == 503
    assert body["ok"] is False
    assert body["checks"]["sync"] == {"ok": False, "age": 200.0, "max_age": 90.0}
    assert body["checks"]["homeserver"] == {"ok": False, "age": 200.0, "max_age": 120.0}
    assert body["checks"]["scheduler"]["ok"] is True


async def test_health_recovers_when_the_sync_answers_again(bench: Bench) -> None:
    bench.signs.sync = bench.signs.reachable = bench.clock() - 200
    assert (await bench.health())[0] == 503
    bench.signs.sync = bench.signs.reachable = bench.clock() - 1
    assert (await bench.health())[0] == 200


async def test_health_is_503_when_the_scheduler_stopped_ticking(bench: Bench) -> None:
    bench.signs.tick = bench.clock() - 121
    status, body = await bench.health()
    assert status == 503
    assert body["checks"]["scheduler"] == {"ok": False, "age": 121.0, "max_age": 120.0}
    assert body["checks"]["sync"]["ok"] is True


async def test_components_never_seen_are_forgiven_only_during_the_start_grace(
    bench: Bench,
) -> None:
    bench.signs.sync = bench.signs.tick = bench.signs.reachable = None
    status, body = await bench.health()
    assert status == 200
    assert body["checks"]["sync"] == {"ok": True, "age": None, "max_age": 90.0}
    bench.clock.now += 300  # started 60 s before the test: now past the 300 s grace
    status, body = await bench.health()
    assert status == 503
    assert body["checks"]["sync"] == {"ok": False, "age": None, "max_age": 90.0}


def test_a_clock_stepping_back_gives_age_zero_not_a_negative_one() -> None:
    probe = HealthProbe(lambda: 1010.0, lambda: 1000.0, lambda: 1000.0, started=900.0)
    ok, details = probe.check(1000.0)
    assert ok
    assert details["checks"]["sync"]["age"] == 0.0


# -- /metrics ---------------------------------------------------------------------------------


async def test_metrics_are_prometheus_text_with_every_series_from_the_start(bench: Bench) -> None:
    status, content_type, _ = await bench.get("/metrics")
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    values = await bench.scrape()
    for outcome in ("new", "seeded", "unchanged", "not_modified", "error"):
        assert values[f'crieur_polls_total{{outcome="{outcome}"}}'] == 0
    for reason in ("rate_limited", "homeserver_unavailable", "room_unavailable", "rejected"):
        assert values[f'crieur_messages_failed_total{{reason="{reason}"}}'] == 0
    assert values["crieur_entries_found_total"] == 0
    assert values["crieur_messages_sent_total"] == 0
    assert values["crieur_fetch_duration_seconds_count"] == 0
    assert values["crieur_outbox_size"] == 0
    assert values["crieur_feeds_in_backoff"] == 0
    assert values["crieur_sync_lag_seconds"] == 5
    assert values["crieur_up"] == 1


async def test_counters_move_for_a_new_entry_and_a_sent_message(bench: Bench) -> None:
    bench.feeds.set_feed("/april.xml", rss([item(1)]), etag="v1")
    await bench.poll()  # first fetch: seeds, posts nothing
    bench.feeds.set_feed("/april.xml", rss([item(2), item(1)]), etag="v2")
    await bench.poll()
    values = await bench.scrape()
    assert values['crieur_polls_total{outcome="seeded"}'] == 1
    assert values['crieur_polls_total{outcome="new"}'] == 1
    assert values["crieur_entries_found_total"] == 1  # the seeded entry is not news
    assert values["crieur_fetch_duration_seconds_count"] == 2
    assert values["crieur_outbox_size"] == 1
    assert values["crieur_messages_sent_total"] == 0

    sender = ScriptedSender()
    assert await bench.dispatcher(sender).drain() == 1
    values = await bench.scrape()
    assert values["crieur_messages_sent_total"] == 1
    assert values["crieur_outbox_size"] == 0


async def test_unchanged_polls_are_counted_without_entries(bench: Bench) -> None:
    bench.feeds.set_feed("/april.xml", rss([item(1)]), etag="v1")
    await bench.poll()
    await bench.poll()  # If-None-Match: 304
    values = await bench.scrape()
    assert values['crieur_polls_total{outcome="not_modified"}'] == 1
    assert values["crieur_entries_found_total"] == 0


async def test_refused_send_attempts_are_counted_by_reason(bench: Bench) -> None:
    bench.feeds.set_feed("/april.xml", rss([item(1)]))
    await bench.poll()
    bench.feeds.set_feed("/april.xml", rss([item(2), item(1)]))
    await bench.poll()
    sender = ScriptedSender()
    sender.failures = [RateLimited(0.0)]
    assert await bench.dispatcher(sender).drain() == 1
    values = await bench.scrape()
    assert values['crieur_messages_failed_total{reason="rate_limited"}'] == 1
    assert values["crieur_messages_sent_total"] == 1


async def test_failing_feeds_show_in_the_backoff_gauge(bench: Bench) -> None:
    bench.feeds.status("/april.xml", 500)
    await bench.poll()
    values = await bench.scrape()
    assert values['crieur_polls_total{outcome="error"}'] == 1
    assert values["crieur_feeds_in_backoff"] == 1


async def test_outbox_gauge_reflects_the_store(bench: Bench) -> None:
    bench.feeds.set_feed("/april.xml", rss([item(1)]))
    await bench.poll()
    await bench.store.follow("!other:example.org", "organisation", "april", now=bench.clock())
    bench.feeds.set_feed("/april.xml", rss([item(3), item(2), item(1)]))
    await bench.poll()
    assert (await bench.scrape())["crieur_outbox_size"] == await bench.store.outbox_size() == 4


async def test_sync_lag_and_up_follow_the_health_of_the_sync(bench: Bench) -> None:
    bench.signs.sync = bench.signs.reachable = bench.clock() - 200
    values = await bench.scrape()
    assert values["crieur_sync_lag_seconds"] == 200
    assert values["crieur_up"] == 0


# -- the listener -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/health/", "/metrics.txt", "/admin", "/favicon.ico"])
async def test_other_paths_are_not_found(bench: Bench, path: str) -> None:
    assert (await bench.get(path))[0] == 404


async def test_listener_binds_only_the_configured_host_on_a_free_port(bench: Bench) -> None:
    assert bench.server.host == "127.0.0.1"
    assert bench.server.port > 0
    assert bench.server.url == f"http://127.0.0.1:{bench.server.port}"


async def test_requests_are_not_logged(bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await bench.health()
    await bench.scrape()
    assert [record for record in caplog.records if record.name.startswith("aiohttp")] == []


async def test_a_port_in_use_is_a_config_error_naming_http_listen(bench: Bench) -> None:
    probe = HealthProbe(lambda: None, lambda: None, lambda: None, started=bench.clock())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            async with HttpServer(f"127.0.0.1:{port}", probe, bench.metrics, bench.store):
                pass
    ((key, message),) = caught.value.problems
    assert key == "http.listen"
    assert message.startswith(f"cannot listen on 127.0.0.1:{port}")


async def test_no_listener_when_http_listen_is_absent(bench: Bench) -> None:
    probe = HealthProbe(lambda: None, lambda: None, lambda: None, started=bench.clock())
    async with serve(None, probe, bench.metrics, bench.store) as server:
        assert server is None


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9100", ("::1", 9100)),
        ("localhost:8080", ("localhost", 8080)),
    ],
)
def test_listen_addresses_split_into_host_and_port(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected
