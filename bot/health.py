"""The optional HTTP listener: `GET /health` (JSON, 200 or 503) and `GET /metrics` (Prometheus)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from .errors import ConfigError
from .metrics import CONTENT_TYPE, Metrics
from .store import Store

log = logging.getLogger(__name__)

TimeSource = Callable[[], float | None]  # epoch seconds of the last sign of life, None if never

SYNC_MAX_AGE = 90.0  # a sync long-polls for 30 s: three missed answers in a row is an outage
TICK_MAX_AGE = 120.0  # the scheduler wakes at least every 60 s, even with nothing due
REACHABLE_MAX_AGE = 120.0
START_GRACE = 300.0  # a first sync with full state can take minutes on a busy account


@dataclass(frozen=True, slots=True)
class HealthProbe:
    """Judges the bot alive when its sync loop and scheduler tick and the homeserver answers."""

    last_sync: TimeSource
    last_tick: TimeSource
    last_reachable: TimeSource
    started: float  # epoch seconds; components never seen are forgiven for `grace` after it
    sync_max_age: float = SYNC_MAX_AGE
    tick_max_age: float = TICK_MAX_AGE
    reachable_max_age: float = REACHABLE_MAX_AGE
    grace: float = START_GRACE
    failing_since: TimeSource = lambda: None  # start of the current run of failed syncs
    unhealthy_after: float = SYNC_MAX_AGE  # how long such a run is tolerated

    def check(self, now: float) -> tuple[bool, dict[str, Any]]:
        """Return whether every component is fresh, and each one's state for the JSON answer."""
        checks = {
            "sync": self._component(self.last_sync(), self.sync_max_age, now),
            "scheduler": self._component(self.last_tick(), self.tick_max_age, now),
            "homeserver": self._homeserver(now),
        }
        ok = all(component["ok"] for component in checks.values())
        return ok, {"ok": ok, "checks": checks}

    def _homeserver(self, now: float) -> dict[str, Any]:
        component = self._component(self.last_reachable(), self.reachable_max_age, now)
        failing_since = self.failing_since()
        if failing_since is not None:
            # Failures say more, sooner, than an idle long-poll's age: a sync answers only
            # every 30 s when nothing happens, so its age alone cannot be held to seconds.
            failing_for = max(now - failing_since, 0.0)
            component["failing_for"] = round(failing_for, 1)
            component["ok"] = component["ok"] and failing_for <= self.unhealthy_after
        return component

    def _component(self, last: float | None, max_age: float, now: float) -> dict[str, Any]:
        if last is None:
            return {"ok": now - self.started <= self.grace, "age": None, "max_age": max_age}
        # A clock stepping back must not turn into a negative age.
        age = max(now - last, 0.0)
        return {"ok": age <= max_age, "age": round(age, 1), "max_age": max_age}


def parse_listen(listen: str) -> tuple[str, int]:
    """Split `host:port` (or `[ipv6]:port`) into a host to bind and a port."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError([("http.listen", f"invalid address {listen!r} (use host:port)")])
    return host.removeprefix("[").removesuffix("]"), int(port)


class HttpServer:
    """Serves /health and /metrics on the configured address while entered."""

    def __init__(
        self,
        listen: str,
        probe: HealthProbe,
        metrics: Metrics,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host, self.port = parse_listen(listen)  # port: the bound one once entered
        self._listen = listen
        self._probe = probe
        self._metrics = metrics
        self._store = store
        self._clock = clock
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Return the base URL of the listener (with the bound port)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> HttpServer:
        app = web.Application()
        # Only these two routes: anything else is a 404 from aiohttp's router.
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics_page)
        # Scrapers and health checks call every few seconds: an access log would drown the rest.
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as error:
            await runner.cleanup()
            reason = error.strerror or str(error)
            raise ConfigError(
                [("http.listen", f"cannot listen on {self._listen}: {reason}")]
            ) from None
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("health and metrics listening on %s", self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        ok, details = self._probe.check(self._clock())
        return web.json_response(
            details, status=200 if ok else 503, headers={"Cache-Control": "no-store"}
        )

    async def _metrics_page(self, request: web.Request) -> web.Response:
        now = self._clock()
        ok, _ = self._probe.check(now)
        await self._metrics.refresh(self._store, now, self._probe.last_sync(), up=ok)
        return web.Response(
            body=self._metrics.render(),
            headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"},
        )


def serve(
    listen: str | None,
    probe: HealthProbe,
    metrics: Metrics,
    store: Store,
    *,
    clock: Callable[[], float] = time.time,
) -> AbstractAsyncContextManager[HttpServer | None]:
    """Return the listener for `listen`, or a context that serves nothing when it is None."""
    if listen is None:
        return contextlib.nullcontext(None)
    return HttpServer(listen, probe, metrics, store, clock=clock)
