"""The dispatcher against a scripted sender: order, retries, pauses (the real one is in e2e)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.dispatcher import Dispatcher, DispatcherSignals
from bot.errors import HomeserverUnavailable, RateLimited, RoomUnavailable, SendError
from bot.model import Delivery, Entry
from bot.store import Store

NOW = datetime(2026, 1, 9, 12, 0, tzinfo=UTC).timestamp()


class ScriptedSender:
    """Accepts messages, or raises the next scripted error for a room first."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []  # room, txn id, body
        self.failures: dict[str, list[Exception]] = {}

    async def send_notice(self, room_id: str, content: dict[str, Any], txn_id: str) -> str:
        queued = self.failures.get(room_id)
        if queued:
            raise queued.pop(0)
        self.sent.append((room_id, txn_id, content["body"]))
        return f"$event{len(self.sent)}"


def render(delivery: Delivery) -> dict[str, Any]:
    title = delivery.entry.title if delivery.entry else f"+{delivery.digest_count}"
    return {"msgtype": "m.notice", "body": title}


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    db = await Store.open(tmp_path / "crieur.sqlite3")
    await db.sync_feeds([("april", "https://april.example/rss")])
    yield db  # type: ignore[misc]
    await db.close()


async def queue(store: Store, rooms: list[str], titles: list[str]) -> None:
    for room in rooms:
        await store.follow(room, "organisation", "april", now=NOW)
    (feed,) = await store.feeds()
    options: dict[str, Any] = {
        "now": NOW,
        "next_poll": NOW,
        "max_age": 1e9,
        "max_posts": 100,
        "etag": None,
        "last_modified": None,
        "body_hash": None,
    }
    if not feed.initialised:
        await store.record_poll(feed, "france", [], **options)
        (feed,) = await store.feeds()
    entries = [Entry(t, t, None, None, "") for t in titles]
    await store.record_poll(feed, "france", entries, **options)


def dispatcher(store: Store, sender: ScriptedSender) -> Dispatcher:
    return Dispatcher(store, sender, render, clock=lambda: NOW, outage_wait=0.01)


async def test_rows_are_sent_oldest_first_and_marked_sent(store: Store) -> None:
    await queue(store, ["!a:x"], ["one", "two", "three"])
    sender = ScriptedSender()
    assert await dispatcher(store, sender).drain() == 3
    assert [body for _, _, body in sender.sent] == ["one", "two", "three"]
    assert await store.outbox_size() == 0
    assert await dispatcher(store, sender).drain() == 0


async def test_rate_limit_waits_and_resends_the_same_row(store: Store) -> None:
    await queue(store, ["!a:x"], ["one", "two"])
    sender = ScriptedSender()
    sender.failures["!a:x"] = [RateLimited(0.01)]
    assert await dispatcher(store, sender).drain() == 2
    assert [body for _, _, body in sender.sent] == ["one", "two"]


async def test_outage_backs_off_then_resumes_with_the_same_transaction_id(store: Store) -> None:
    await queue(store, ["!a:x"], ["one"])
    (pending,) = await store.pending_deliveries(NOW)
    sender = ScriptedSender()
    sender.failures["!a:x"] = [HomeserverUnavailable("connection refused")]
    disp = dispatcher(store, sender)
    assert await disp.drain() == 1
    assert sender.sent == [("!a:x", pending.txn_id, "one")]


async def test_forbidden_room_is_paused_and_others_still_served(store: Store) -> None:
    await queue(store, ["!a:x", "!b:x"], ["one"])
    sender = ScriptedSender()
    sender.failures["!a:x"] = [RoomUnavailable("M_FORBIDDEN: not in room")]
    assert await dispatcher(store, sender).drain() == 1
    assert [room for room, _, _ in sender.sent] == ["!b:x"]
    assert await store.outbox_size("!a:x") == 1
    (paused,) = await store.paused_rooms()
    assert paused.paused_reason == "M_FORBIDDEN: not in room"


async def test_rejected_message_is_deferred_not_dropped(store: Store) -> None:
    await queue(store, ["!a:x"], ["bad", "good"])
    sender = ScriptedSender()
    sender.failures["!a:x"] = [SendError("M_BAD_JSON", errcode="M_BAD_JSON")]
    assert await dispatcher(store, sender).drain() == 1
    assert [body for _, _, body in sender.sent] == ["good"]
    assert await store.outbox_size() == 1
    later = Dispatcher(store, sender, render, clock=lambda: NOW + 3600)
    assert await later.drain() == 1
    assert [body for _, _, body in sender.sent] == ["good", "bad"]


async def test_a_message_that_cannot_be_rendered_does_not_stop_the_others(store: Store) -> None:
    await queue(store, ["!a:x"], ["broken", "fine"])
    sender = ScriptedSender()

    def fragile(delivery: Delivery) -> dict[str, Any]:
        if delivery.entry is not None and delivery.entry.title == "broken":
            raise IndexError("renderer bug")
        return render(delivery)

    assert await Dispatcher(store, sender, fragile, clock=lambda: NOW).drain() == 1
    assert [body for _, _, body in sender.sent] == ["fine"]
    assert await store.outbox_size() == 1  # kept, tried again later


async def test_server_errors_of_one_room_pause_it_without_blocking_the_others(
    store: Store,
) -> None:
    await queue(store, ["!a:x", "!b:x"], ["one", "two"])
    sender = ScriptedSender()
    sender.failures["!a:x"] = [HomeserverUnavailable("HTTP 502") for _ in range(20)]
    sending = dispatcher(store, sender)
    assert await sending.drain() == 2
    # Its retry failed with nobody else to send to: that could be an outage, not the room.
    assert await store.paused_rooms() == []
    await queue(store, ["!a:x", "!b:x"], ["three"])
    assert await sending.drain() == 1  # failed again while another room got through after it
    assert [(room, body) for room, _, body in sender.sent] == [
        ("!b:x", "one"),
        ("!b:x", "two"),
        ("!b:x", "three"),
    ]
    (paused,) = await store.paused_rooms()
    assert (paused.room_id, paused.paused_reason) == ("!a:x", "server errors: HTTP 502")
    assert await store.outbox_size("!a:x") == 3


async def test_a_suspect_room_meeting_a_new_outage_is_not_paused(store: Store) -> None:
    # An outage ends during a pass (the room becomes a suspect), then a second one begins.
    await queue(store, ["!a:x", "!b:x"], ["one"])
    sender = ScriptedSender()
    sender.failures["!a:x"] = [HomeserverUnavailable("connection refused") for _ in range(3)]
    sending = dispatcher(store, sender)
    original = sender.send_notice

    async def second_outage(room_id: str, content: dict[str, Any], txn_id: str) -> str:
        event_id = await original(room_id, content, txn_id)
        if room_id == "!b:x":  # right after the other room got through, everything fails
            for room in ("!a:x", "!b:x"):
                sender.failures[room] = [HomeserverUnavailable("connection refused")] * 3
        return event_id

    sender.send_notice = second_outage  # type: ignore[method-assign]
    assert await sending.drain() == 1
    assert await store.paused_rooms() == []
    assert await sending.drain() == 1  # the outage is over: the room's message goes through
    assert [(room, body) for room, _, body in sender.sent] == [("!b:x", "one"), ("!a:x", "one")]


async def test_an_outage_of_every_room_pauses_nothing(store: Store) -> None:
    await queue(store, ["!a:x", "!b:x"], ["one"])
    sender = ScriptedSender()
    for room in ("!a:x", "!b:x"):
        sender.failures[room] = [HomeserverUnavailable("connection refused") for _ in range(3)]
    assert await dispatcher(store, sender).drain() == 0
    assert await store.paused_rooms() == []
    assert await dispatcher(store, sender).drain() == 2


async def test_an_outage_that_ends_during_a_pass_pauses_nothing(store: Store) -> None:
    # The first room meets the outage; by the time the second room's turn comes, it is over.
    await queue(store, ["!a:x", "!b:x"], ["one", "two"])
    sender = ScriptedSender()
    sender.failures["!a:x"] = [HomeserverUnavailable("connection refused") for _ in range(3)]
    assert await dispatcher(store, sender).drain() == 4
    assert await store.paused_rooms() == []
    assert [(room, body) for room, _, body in sender.sent] == [
        ("!b:x", "one"),
        ("!b:x", "two"),
        ("!a:x", "one"),
        ("!a:x", "two"),
    ]


async def test_an_outage_that_begins_during_a_pass_pauses_nothing(store: Store) -> None:
    # The first room gets through, then the outage begins and outlasts two passes.
    await queue(store, ["!a:x", "!b:x"], ["one"])
    sender = ScriptedSender()
    sender.failures["!b:x"] = [HomeserverUnavailable("connection refused") for _ in range(9)]
    sending = dispatcher(store, sender)
    assert await sending.drain() == 1
    assert await sending.drain() == 0
    assert await store.paused_rooms() == []
    assert await sending.drain() == 1


class SignallingSender(ScriptedSender):
    """A ScriptedSender that also says when it has raised."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = asyncio.Event()

    async def send_notice(self, room_id: str, content: dict[str, Any], txn_id: str) -> str:
        try:
            return await super().send_notice(room_id, content, txn_id)
        except HomeserverUnavailable:
            self.failed.set()
            raise


async def test_the_homeserver_back_ends_the_wait_of_an_outage(store: Store) -> None:
    await queue(store, ["!a:x"], ["one"])
    sender = SignallingSender()
    sender.failures["!a:x"] = [HomeserverUnavailable("connection refused")]
    # An hour's wait after the failure, unless told that the homeserver answers again.
    signals = DispatcherSignals()  # as the application gives them to the Matrix side too
    sending = Dispatcher(
        store, sender, render, clock=lambda: NOW, signals=signals, outage_wait=3600
    )
    drain = asyncio.create_task(sending.drain())
    await sender.failed.wait()  # the dispatcher runs on to its wait before this returns
    signals.homeserver_back()
    async with asyncio.timeout(30):  # a guard against an hour's hang, not a timing check
        assert await drain == 1
    assert [body for _, _, body in sender.sent] == ["one"]


async def test_a_wake_signal_sends_new_rows_without_waiting_for_the_idle_tick(
    store: Store,
) -> None:
    sender = ScriptedSender()
    signals = DispatcherSignals()
    posted = asyncio.Event()
    dispatcher = Dispatcher(
        store,
        sender,
        render,
        clock=lambda: NOW,
        listeners={"test": lambda delivery: posted.set()},
        signals=signals,
    )
    running = asyncio.create_task(dispatcher.run())
    try:
        await asyncio.sleep(0.1)  # the outbox is empty: it waits for the idle tick (30 s)
        await queue(store, ["!a:x"], ["one"])
        signals.wake()
        async with asyncio.timeout(10):  # well under the idle tick
            await posted.wait()
        assert [body for _, _, body in sender.sent] == ["one"]
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
