"""`crieur run`: wires store, Matrix client, dispatcher and scheduler, and runs them together."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .admin import AdminReports
from .catalogue import Catalogue
from .commands import Commands, RoomSourcesPolicy
from .config import Config
from .dispatcher import DeliveryRenderer, Dispatcher, DispatcherSignals
from .errors import StoreError
from .event_posting import CalendarSettings, configured_calendars
from .fetcher import Fetcher
from .finder import SiteFinder
from .health import HealthProbe, serve
from .i18n import t
from .logs import RedactSecrets
from .matrix import KEY_ACCESS_TOKEN, MatrixBot
from .metrics import CountingSender, Metrics
from .pipeline import Pipeline, PollOutcome
from .retention import DAILY, PruneSchedule, prune_forever
from .scheduler import PollTiming, Scheduler, fit_to_intervals
from .site_feeds import finder_for, site_feeds
from .store import DatabaseLock, Store

log = logging.getLogger(__name__)


def data_dir_for(config: Config) -> Path:
    """Return where the Matrix client keeps its files (beside the database)."""
    if str(config.database) == ":memory:":
        return Path(".crieur-matrix")
    return config.database.parent / "matrix"


async def run_bot(
    config: Config,
    *,
    redactor: RedactSecrets | None = None,
    on_ready: Callable[[], None] | None = None,
    prune: PruneSchedule = DAILY,
) -> None:
    """Run the bot until cancelled; leaves the database consistent when stopped."""
    # Before the database is opened: another bot on it would fight this one over its feeds.
    with DatabaseLock(config.database, "crieur run"):
        await _run_bot(config, redactor, on_ready, prune)


async def _run_bot(
    config: Config,
    redactor: RedactSecrets | None,
    on_ready: Callable[[], None] | None,
    prune: PruneSchedule,
) -> None:
    catalogue = Catalogue.from_config(config)
    metrics = Metrics()
    store = await Store.open(config.database)
    try:
        async with Fetcher(config.polling) as fetcher:
            # Organisations with a site and no feed: theirs is looked for before polling starts.
            found = await site_feeds(config, store, fetcher)
        await store.sync_feeds(
            [
                *((org.slug, url) for org in config.organisations.values() for url in org.feeds),
                *found,
            ],
            configured_calendars(config),
        )
        await fit_to_intervals(store, PollTiming(config.organisations, config.polling))
        signals = DispatcherSignals()
        reports = AdminReports(
            store,
            catalogue,
            language=config.language,
            report_after=config.polling.report_after,
        )
        commands = Commands(
            store,
            catalogue,
            language=config.language,
            prefix=config.matrix.command_prefix,
            admins=config.matrix.admins,
            manage_power_level=config.matrix.manage_power_level,
            sources=RoomSourcesPolicy(
                SiteFinder(config.polling),
                max_own_feeds=config.rooms.max_own_feeds,
                interval=config.polling.interval,
            ),
        )
        bot = MatrixBot(
            config.matrix,
            store,
            data_dir=data_dir_for(config),
            region_rooms={slug: region.rooms for slug, region in config.regions.items()},
            commands=commands,
            listener=_MatrixEvents(signals, metrics, redactor, reports),
            encryption_off_notice=t(config.language, "bot.encryption_off"),
        )
        if redactor is not None:
            # Before the first request: resuming the session sends the stored token.
            redactor.add(await store.get_value(KEY_ACCESS_TOKEN))
        try:
            await bot.start()
            async with Fetcher(config.polling) as fetcher:
                try:
                    await _serve(
                        config,
                        store,
                        bot,
                        fetcher,
                        _Parts(catalogue, metrics, signals, reports, prune),
                        on_ready,
                    )
                except ExceptionGroup as group:
                    # A database that cannot be written stops every task: say why in one line.
                    unusable, _ = group.split(StoreError)
                    if unusable is None:
                        raise
                    raise _first(unusable) from group
        finally:
            await bot.close()
    finally:
        await store.close()
        log.info("stopped")


@dataclass(frozen=True, slots=True)
class _Parts:
    """What run_bot made before the Matrix client, for _serve."""

    catalogue: Catalogue
    metrics: Metrics
    signals: DispatcherSignals
    reports: AdminReports
    prune: PruneSchedule


async def _serve(
    config: Config,
    store: Store,
    bot: MatrixBot,
    fetcher: Fetcher,
    parts: _Parts,
    on_ready: Callable[[], None] | None,
) -> None:
    catalogue, metrics, signals = parts.catalogue, parts.metrics, parts.signals
    dispatcher = Dispatcher(
        store,
        CountingSender(bot, metrics),
        DeliveryRenderer(catalogue, config.language),
        listeners={"metrics": metrics.message_sent},
        signals=signals,
    )

    def wake_dispatcher(outcome: PollOutcome) -> None:
        if outcome.record is not None and outcome.record.deliveries:
            signals.wake()

    pipeline = Pipeline(
        store,
        fetcher,
        config.organisations,
        config.polling,
        timing=PollTiming(config.organisations, config.polling),
        clock=time.time,
        listeners=(wake_dispatcher, metrics.observe_poll, parts.reports.poll_seen),
        calendars=CalendarSettings.from_config(config),
        finder=finder_for(fetcher),
    )
    scheduler = Scheduler(
        store,
        pipeline.poll,
        concurrency=config.polling.concurrency,
        per_host=config.polling.per_host,
    )
    probe = HealthProbe(
        last_sync=lambda: bot.last_sync_ok,
        last_tick=lambda: scheduler.last_tick,
        # A long-poll sync answers at least every 30 s: it doubles as the reachability probe.
        last_reachable=lambda: bot.last_sync_ok,
        started=time.time(),
        failing_since=lambda: bot.sync_failing_since,
        unhealthy_after=config.http.unhealthy_after,
    )
    async with serve(config.http.listen, probe, metrics, store), asyncio.TaskGroup() as group:
        group.create_task(bot.sync_forever(), name="sync")
        # Messages owed from before a stop go out before new polls add to them.
        pending = await store.outbox_size()
        if pending:
            log.info("delivering %d pending messages before polling", pending)
            await dispatcher.drain()
        group.create_task(dispatcher.run(), name="dispatcher")
        group.create_task(scheduler.run(), name="scheduler")
        group.create_task(prune_forever(store, config.retention, parts.prune), name="retention")
        if bot.admin_room is not None:
            group.create_task(parts.reports.run(bot, bot.admin_room), name="admin reports")
        log.info(
            "running as %s: %d organisations, %d feeds",
            bot.user_id,
            len(config.organisations),
            sum(len(org.feeds) for org in config.organisations.values()),
        )
        if on_ready is not None:
            on_ready()


class _MatrixEvents:
    """Passes what the Matrix side sees to the dispatcher, the metrics, the log redactor and
    matrix.admin_room."""

    def __init__(
        self,
        signals: DispatcherSignals,
        metrics: Metrics,
        redactor: RedactSecrets | None,
        reports: AdminReports,
    ) -> None:
        self._signals = signals
        self._metrics = metrics
        self._redactor = redactor
        self._reports = reports

    def joined(self, room_id: str) -> None:
        """A room the bot (re)joins may hold paused messages: send them now, not at the tick."""
        self._signals.wake()

    def reconnected(self) -> None:
        """End the dispatcher's outage wait as soon as syncs work again."""
        self._signals.homeserver_back()

    def undecryptable(self) -> None:
        """Count the event."""
        self._metrics.undecryptable_event()

    def new_token(self, token: str) -> None:
        """Keep the tokens of later logins out of the log too."""
        if self._redactor is not None:
            self._redactor.add(token)

    def withheld_room_key(self) -> None:
        """Count the refused room key (the Matrix side logged its reason)."""
        self._metrics.withheld_room_key()

    def untrusted_command(self) -> None:
        """Count the command left unrun."""
        self._metrics.untrusted_command()

    def identity_replaced(self, warning: str) -> None:
        """The Matrix side has logged the warning; matrix.admin_room is told."""
        self._reports.identity_replaced(warning)

    def room_left(self, room_id: str, reason: str) -> None:
        """Tell matrix.admin_room (the Matrix side has logged it and paused the room)."""
        self._reports.room_left(room_id, reason)


def _first(group: BaseExceptionGroup[StoreError]) -> StoreError:
    error = group.exceptions[0]
    return error if isinstance(error, StoreError) else _first(error)


async def run_until_signalled(config: Config, redactor: RedactSecrets | None = None) -> int:
    """Run the bot until SIGINT or SIGTERM, then stop cleanly; return the exit code."""
    loop = asyncio.get_running_loop()
    main = asyncio.create_task(run_bot(config, redactor=redactor), name="crieur")
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, main.cancel)
    try:
        await main
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we were cancelled ourselves, not by a signal
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0
