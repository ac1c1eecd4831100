"""The guard every command runs behind: parsing, rate limit, permission, logging, errors.

`Commands` wraps every handler of a registry in the same steps: finding the command (a word
that names none is ignored, unless it is a near miss of one: "did you mean …?"), per-user
rate limiting, length limits, permission, logging, and turning errors into replies in the
configured language. Handlers raise `CommandError` for mistakes a person can fix; anything else
is logged with its traceback and answered with a short apology.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection
from typing import Final, Literal

from ..catalogue import Catalogue, normalise
from ..config import Language
from ..errors import CommandError
from ..i18n import join_list, quote, t
from ..store import Store
from .builtin import build_registry
from .context import MAX_ARGUMENT, Context, Reply, RoomSourcesPolicy, RoomView
from .lines import fit, shown
from .registry import MAX_COMMAND_WORD, Arguments, Registry, tokenise, usage

log = logging.getLogger(__name__)

MAX_BODY: Final = 2000  # characters in a command message
RATE: Final = 1.0  # commands per second a user may sustain
BURST: Final = 3  # commands a user may send at once
MAX_TRACKED_USERS: Final = 10_000


class RateLimiter:
    """Per-user token buckets: a burst of `burst` commands, then `rate` per second.

    A user who runs dry is told once, then ignored until their bucket is full again, so a
    flood costs the room at most one extra message per burst.
    """

    def __init__(
        self, *, rate: float = RATE, burst: int = BURST, max_users: int = MAX_TRACKED_USERS
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max_users = max_users
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, user: str, now: float) -> Literal["run", "warn", "ignore"]:
        """Take one token for `user`: run the command, warn once, or ignore it."""
        bucket = self._buckets.get(user)
        if bucket is None:
            self._forget_idle(now)
            bucket = self._buckets[user] = _Bucket(self._burst, now)
        self._refill(bucket, now)
        if bucket.silenced:
            if bucket.tokens < self._burst:
                return "ignore"
            bucket.silenced = False
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return "run"
        bucket.silenced = True
        return "warn"

    def wait(self, user: str, now: float) -> int:
        """Return the whole seconds until `user` may send commands again."""
        bucket = self._buckets.get(user)
        if bucket is None:
            return 0
        self._refill(bucket, now)
        return max(1, math.ceil((self._burst - bucket.tokens) / self._rate))

    def _refill(self, bucket: _Bucket, now: float) -> None:
        # A clock stepping backwards must not drain anyone's bucket.
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
        bucket.updated = max(bucket.updated, now)

    def _forget_idle(self, now: float) -> None:
        """Keep the table bounded: drop full buckets, then the longest idle ones."""
        if len(self._buckets) < self._max_users:
            return
        full_after = self._burst / self._rate
        for user, bucket in list(self._buckets.items()):
            if now - bucket.updated >= full_after:
                del self._buckets[user]
        if len(self._buckets) >= self._max_users:
            by_age = sorted(self._buckets, key=lambda user: self._buckets[user].updated)
            for user in by_age[: len(by_age) - self._max_users // 2]:
                del self._buckets[user]


class _Bucket:
    __slots__ = ("silenced", "tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated
        self.silenced = False


class Commands:
    """Answers chat commands: `await commands(room, room_id, sender, event_id, body)`.

    Returns the reply to send as a threaded notice, or None to stay silent (not a command, a
    word that names no command of ours nor is a near miss of one, or a rate-limited sender
    already told to slow down).
    """

    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        *,
        language: Language,
        prefix: str,
        admins: Collection[str],
        manage_power_level: int,
        clock: Callable[[], float] = time.time,
        registry: Registry | None = None,
        sources: RoomSourcesPolicy | None = None,
    ) -> None:
        if not prefix or any(ch.isspace() for ch in prefix):
            raise ValueError("the command prefix must be non-empty text without spaces")
        self._store = store
        self._catalogue = catalogue
        self._language = language
        self._prefix = prefix
        self._admins = frozenset(admins)
        self._manage_power_level = manage_power_level
        self._clock = clock
        self._registry = registry if registry is not None else build_registry()
        self._limiter = RateLimiter()
        self._sources = sources if sources is not None else RoomSourcesPolicy()

    async def __call__(
        self, room: RoomView, room_id: str, sender: str, event_id: str, body: str
    ) -> Reply | None:
        """Run the command in `body`; return the reply to send, or None."""
        reply = await self._answer(room, room_id, sender, event_id, body)
        return None if reply is None else fit(reply)

    async def _answer(
        self, room: RoomView, room_id: str, sender: str, event_id: str, body: str
    ) -> Reply | None:
        text = body.lstrip()
        if not text.startswith(self._prefix):
            return None
        rest = text[len(self._prefix) :]
        # "! hello" or "!!!" is someone's punctuation, not a command.
        if not rest or rest[0].isspace():
            return None
        word, *remainder = rest.split(maxsplit=1)
        if not normalise(word[:MAX_COMMAND_WORD]):
            return None
        spec = self._registry.find(word)
        near_misses = [] if spec is not None else self._registry.near_misses(word)
        if spec is None and not near_misses:
            # Someone else's command (rooms often hold other bots): no answer, and none of
            # the sender's rate limit spent on it.
            return None
        now = self._clock()
        admission = self._limiter.admit(sender, now)
        if admission == "ignore":
            return None
        if admission == "warn":
            log.info("rate limited %s in %s", sender, room_id)
            seconds = self._limiter.wait(sender, now)
            return self._error_reply(CommandError("error.slow_down", seconds=seconds))
        name = "?"
        try:
            if spec is None:
                raise self._near_miss(word, near_misses)
            arguments = self._arguments(word, "".join(remainder), body)
            name = spec.name
            context = self._context(room, room_id, sender, now)
            if spec.admins_only and not context.is_admin:
                log.info("refused %s to %s in %s (event %s)", name, sender, room_id, event_id)
                raise CommandError("error.admins_only")
            changes = spec.changes_state and not (spec.reads_when_bare and not arguments.tokens)
            if changes and not await self._may_manage(room, context):
                log.info("refused %s to %s in %s (event %s)", name, sender, room_id, event_id)
                raise CommandError("error.permission", level=self._manage_power_level)
            if len(arguments.tokens) < spec.min_args:
                raise CommandError("error.missing_argument", usage=usage(context, spec))
            log.info("command %s from %s in %s (event %s)", name, sender, room_id, event_id)
            return await spec.handler(context, arguments)
        except CommandError as exc:
            return self._error_reply(exc)
        # The one broad catch: whatever a handler hits, the person gets an answer and the
        # traceback lands in the log; CancelledError is a BaseException and goes through.
        except Exception:
            log.exception(
                "command %s from %s in %s (event %s) failed", name, sender, room_id, event_id
            )
            return Reply(t(self._language, "error.internal"))

    def _arguments(self, word: str, remainder: str, body: str) -> Arguments:
        """Split a command's arguments; raise CommandError on input too long."""
        if len(body) > MAX_BODY:
            raise CommandError("error.argument_too_long", max=MAX_BODY)
        if len(word) > MAX_ARGUMENT:
            raise CommandError("error.argument_too_long", max=MAX_ARGUMENT)
        tokens = tokenise(remainder)
        if any(len(token.text) > MAX_ARGUMENT for token in tokens):
            raise CommandError("error.argument_too_long", max=MAX_ARGUMENT)
        return Arguments(tokens, remainder)

    def _near_miss(self, word: str, names: list[str]) -> CommandError:
        """Return the answer to a mistyped command: "did you mean …?"."""
        return CommandError(
            "error.unknown_command",
            command=shown(self._prefix + word),
            suggestions=join_list(
                self._language,
                (quote(self._language, self._prefix + name) for name in names),
                last="or",
            ),
        )

    def _context(self, room: RoomView, room_id: str, sender: str, now: float) -> Context:
        return Context(
            store=self._store,
            catalogue=self._catalogue,
            language=self._language,
            prefix=self._prefix,
            manage_power_level=self._manage_power_level,
            room_id=room_id,
            sender=sender,
            is_admin=sender in self._admins,
            now=now,
            encryption=room.encryption(room_id),
            view=room,
            sources=self._sources,
        )

    async def _may_manage(self, room: RoomView, context: Context) -> bool:
        if context.is_admin:
            return True
        level = await room.power_level(context.room_id, context.sender)
        return level >= self._manage_power_level

    def _error_reply(self, error: CommandError) -> Reply:
        # Error messages carry no markup: plain text is the whole reply.
        return Reply(t(self._language, error.key, **error.params))
