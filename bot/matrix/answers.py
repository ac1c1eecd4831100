"""Answers to commands: their content, and a queue that serves people fairly."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from ..errors import HomeserverUnavailable, RateLimited, SendError
from ..store import Store
from .events import Event, text
from .session import BACKOFF_START, KEY_SYNC_TOKEN, SYNC_RETRY_MAX

log = logging.getLogger(__name__)

# How long an answer is retried while the homeserver is unreachable before it is dropped:
# an outage ends sooner than this, and the sync loop cannot go on past it without answers.
REPLY_PATIENCE: Final = 900.0
# Answers waiting for one person (a burst of commands and the slow-down warning); more are
# dropped: the least answered go first, so this bounds memory, not anyone else's wait.
MAX_QUEUED_PER_SENDER: Final = 4
MAX_QUEUED_REPLIES: Final = 1000  # answers waiting in all
FAIR_WINDOW: Final = 60.0  # seconds of answers counted to pick who is answered next

Send: TypeAlias = Callable[[str, dict[str, Any], str], Awaitable[str]]


def reply_txn_id(event_id: str) -> str:
    """Derive the transaction id of the answer to a command from the command's event id."""
    return "crieur.reply." + hashlib.sha256(event_id.encode()).hexdigest()[:40]


def reply_content(body: str, html: str | None, command: Event) -> dict[str, Any]:
    """The notice answering `command`, in its thread if it was in one."""
    relation: dict[str, Any] = {"m.in_reply_to": {"event_id": command.event_id}}
    thread = command.content.get("m.relates_to")
    if isinstance(thread, dict) and thread.get("rel_type") == "m.thread":
        root = text(thread.get("event_id"))
        if root is not None:
            relation = {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": False,
                **relation,
            }
    content: dict[str, Any] = {
        "msgtype": "m.notice",
        "body": body,
        "m.relates_to": relation,
        "m.mentions": {},  # a bot's answer pings nobody
    }
    if html is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = html
    return content


@dataclass(frozen=True, slots=True)
class QueuedAnswer:
    """An answer waiting to be sent."""

    room_id: str
    sender: str
    event_id: str
    content: dict[str, Any]
    batch: int  # the sync the command came in


class Answers:
    """Answers waiting to be sent: a few per person, those answered least lately first.

    Sending an answer waits on the homeserver's rate limit; done in the sync loop, one
    person's flood of commands would hold everyone else's behind it for minutes. Queued here,
    a person has at most MAX_QUEUED_PER_SENDER answers waiting (the rest are dropped), and the
    next answer goes to whoever got the fewest answers in the last FAIR_WINDOW seconds (in
    turn when even): someone asking now and then waits for the answer being sent, not for
    the answers of whoever floods the bot.

    A sync's token is stored once every answer to its commands has been sent or given up,
    so that a crash before an answer went out runs that command again after a restart.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._waiting: dict[str, deque[QueuedAnswer]] = {}  # by sender, in turn order
        self._served: dict[str, deque[float]] = {}  # when each person was last answered
        self._size = 0
        self._batch = 0  # the sync whose commands are running now
        self._unsettled: Counter[int] = Counter()  # answers not sent nor given up, by sync
        self._tokens: deque[tuple[int, str]] = deque()  # processed syncs, oldest first
        self._ready = asyncio.Event()

    def put(self, room_id: str, sender: str, event_id: str, content: dict[str, Any]) -> bool:
        """Queue an answer of the running sync; False if the person has too many waiting."""
        queue = self._waiting.get(sender)
        if self._size >= MAX_QUEUED_REPLIES or (
            queue is not None and len(queue) >= MAX_QUEUED_PER_SENDER
        ):
            return False
        if queue is None:
            queue = self._waiting[sender] = deque()
        queue.append(QueuedAnswer(room_id, sender, event_id, content, self._batch))
        self._size += 1
        self._unsettled[self._batch] += 1
        self._ready.set()
        return True

    def processed(self, token: str) -> str | None:
        """Close the running sync; return the newest token safe to store now, if any."""
        self._tokens.append((self._batch, token))
        self._batch += 1
        return self._settled()

    async def next(self) -> QueuedAnswer:
        """Wait for an answer to send: the first waiting person's oldest."""
        while not self._waiting:
            self._ready.clear()
            await self._ready.wait()
        now = self._clock()
        self._forget_served(now)
        # min() keeps the first of equals: the turn order among the least answered.
        sender = min(self._waiting, key=lambda person: len(self._served.get(person, ())))
        self._served.setdefault(sender, deque()).append(now)
        queue = self._waiting.pop(sender)
        answer = queue.popleft()
        if queue:
            self._waiting[sender] = queue  # to the back of the line
        self._size -= 1
        return answer

    def done(self, answer: QueuedAnswer) -> str | None:
        """Mark an answer sent or given up; return the newest token safe to store now, if any."""
        self._unsettled[answer.batch] -= 1
        return self._settled()

    def _forget_served(self, now: float) -> None:
        """Drop answers older than the window; only people answered in it are kept."""
        for sender in list(self._served):
            served = self._served[sender]
            while served and served[0] <= now - FAIR_WINDOW:
                served.popleft()
            if not served:
                del self._served[sender]

    def _settled(self) -> str | None:
        token = None
        while self._tokens and self._unsettled[self._tokens[0][0]] <= 0:
            batch, token = self._tokens.popleft()
            del self._unsettled[batch]
        return token


async def send_answers(answers: Answers, send: Send, store: Store) -> None:
    """Send queued answers, one at a time, at the pace the homeserver accepts."""
    while True:
        answer = await answers.next()
        await _reply(send, answer)
        token = answers.done(answer)
        if token is not None:
            await store.set_value(KEY_SYNC_TOKEN, token)


async def _reply(send: Send, answer: QueuedAnswer) -> None:
    room_id, event_id = answer.room_id, answer.event_id
    txn_id = reply_txn_id(event_id)
    failures = 0
    give_up = time.monotonic() + REPLY_PATIENCE
    while True:
        try:
            await send(room_id, answer.content, txn_id)
        except RateLimited as error:
            # The homeserver's pace: waiting is all there is to do, and answers wait in turn.
            wait = error.retry_after
        except HomeserverUnavailable as error:
            failures += 1
            if time.monotonic() >= give_up:
                log.warning("gave up answering %s in %s: %s", event_id, room_id, error)
                return
            # Capped like the sync loop's retries: back within seconds of the homeserver.
            wait = min(BACKOFF_START * 2 ** (failures - 1), SYNC_RETRY_MAX)
            log.warning("cannot answer %s in %s yet: %s", event_id, room_id, error)
        except SendError as error:
            log.warning("cannot answer %s in %s: %s", event_id, room_id, error)
            return
        else:
            return
        await asyncio.sleep(wait)
