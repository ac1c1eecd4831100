"""Command line: argument parsing, logging set-up, wiring and `asyncio.run`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from . import __version__
from .catalogue import Catalogue
from .config import Config, PollingConfig, load_config, resolve_config_path
from .discovery import Discovery, discover
from .errors import ConfigError, CrieurError, OpmlError
from .event_posting import CalendarSettings, configured_calendars
from .fetcher import Fetcher
from .logs import RedactSecrets, setup_logging
from .online_check import SourceCheck, check_sources, format_check, summary
from .opml import OpmlOutline, opml_to_yaml, read_opml, write_opml
from .pipeline import Pipeline, PollOutcome
from .redact import mask_url, mask_urls
from .scheduler import PollTiming
from .site_feeds import finder_for, site_feeds
from .store import DatabaseLock, Store, same_feeds

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_FEED_ERRORS = 2
EXIT_BROKEN_PIPE = 128 + 13  # as a command killed by SIGPIPE, which Python ignores


def build_parser() -> argparse.ArgumentParser:
    """Return the `crieur` argument parser."""
    parser = argparse.ArgumentParser(
        prog="crieur", description="Relay community news feeds into Matrix rooms, by region."
    )
    parser.add_argument("--version", action="version", version=f"crieur {__version__}")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="how much to log (default: info)",
    )
    parser.add_argument(
        "--log-format", default="text", choices=("text", "json"), help="log line format"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "-c",
            "--config",
            help="configuration file (default: ./config.yaml, then $CRIEUR_CONFIG)",
        )
        return sub

    with_config(commands.add_parser("run", help="run the bot until SIGINT or SIGTERM"))
    checker = with_config(
        commands.add_parser("check", help="validate the configuration and summarise it")
    )
    checker.add_argument(
        "--online",
        action="store_true",
        help="also fetch every configured source once and say how each answers (no database)",
    )
    fetch = with_config(
        commands.add_parser("fetch", help="poll feeds once and print what is new (no Matrix)")
    )
    fetch.add_argument("organisations", nargs="*", metavar="ORG", help="organisations to poll")
    fetch.add_argument(
        "--dry-run", action="store_true", help="leave the database untouched (nothing recorded)"
    )
    importer = with_config(
        commands.add_parser("import-opml", help="print an OPML file as an organisations block")
    )
    importer.add_argument("file", type=Path, metavar="FILE")
    with_config(commands.add_parser("export-opml", help="print the organisations as OPML"))
    finder = commands.add_parser(
        "discover", help="find the feeds of a web site (the main one first) and print them"
    )
    finder.add_argument("url", metavar="URL", help="a feed, or a site's page")
    finder.add_argument(
        "-c",
        "--config",
        help="use this configuration's polling settings (default: built-in defaults)",
    )
    demo = commands.add_parser(
        "demo",
        help="try Crieur: a throwaway homeserver, sample feeds and the bot, all on this machine",
    )
    demo.add_argument(
        "--port", type=int, default=8008, help="the homeserver's port on 127.0.0.1 (default: 8008)"
    )
    demo.add_argument(
        "--fresh", action="store_true", help="delete the data directory first and start over"
    )
    demo.add_argument(
        "--every",
        default="5s",
        metavar="DURATION",
        help="a new sample item this often; the bot polls as often (default: 5s)",
    )
    demo.add_argument(
        "--for",
        dest="duration",
        metavar="DURATION",
        help="stop by itself after this long, like 2m (default: run until Ctrl-C)",
    )
    demo.add_argument(
        "--data-dir",
        default=".crieur-demo",
        metavar="DIR",
        help="homeserver, database and feeds, kept for the next run (default: ./.crieur-demo)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `crieur` command line and return its exit code."""
    args = build_parser().parse_args(argv)
    redactor = setup_logging(args.log_level, args.log_format)
    try:
        code = run_command(args, argv, redactor)
        sys.stdout.flush()  # so that a closed pipe shows here rather than at exit
    except BrokenPipeError:
        # The reader went away (`crieur check | head -n 1`): it has what it wanted. Writes
        # still buffered go nowhere, so that the interpreter does not complain at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    return code


def run_command(
    args: argparse.Namespace, argv: Sequence[str] | None, redactor: RedactSecrets
) -> int:
    """Run the parsed command; a configuration or user error is printed, not raised."""
    try:
        if args.command == "run":
            return cmd_run(args, redactor)
        if args.command == "check":
            return cmd_check(args, sys.stdout)
        if args.command == "fetch":
            return cmd_fetch(args, sys.stdout, redactor)
        if args.command == "import-opml":
            return cmd_import_opml(args, sys.stdout)
        if args.command == "export-opml":
            return cmd_export_opml(args, sys.stdout)
        if args.command == "discover":
            return cmd_discover(args, sys.stdout)
        if args.command == "demo":
            return cmd_demo(args, argv)
    except ConfigError as error:
        for line in error.lines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except CrieurError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")  # argparse restricts choices


def read_config(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    """Load the configuration named by `-c` (or the default places)."""
    environ = os.environ if env is None else env
    return load_config(resolve_config_path(args.config, environ), environ)


def cmd_run(args: argparse.Namespace, redactor: RedactSecrets) -> int:
    """Run the bot until a signal stops it."""
    # Imported here: the Matrix side is not needed by the other commands.
    from .app import run_until_signalled

    config = read_config(args)
    redactor.add(config.matrix.password, config.matrix.access_token)
    return asyncio.run(run_until_signalled(config, redactor))


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    """Validate the configuration and print a summary."""
    config = read_config(args)
    feeds = sum(len(org.feeds) for org in config.organisations.values())
    calendars = sum(len(org.events) for org in config.organisations.values()) + sum(
        len(region.events) for region in config.regions.values()
    )
    rooms = sorted({room for region in config.regions.values() for room in region.rooms})
    print(
        f"configuration ok: {len(config.organisations)} organisations, {feeds} feeds, "
        f"{calendars} calendars, {len(config.regions)} regions, {len(rooms)} rooms",
        file=out,
    )
    encryption = f"on (trust: {config.matrix.trust})" if config.matrix.encryption else "off"
    print(f"matrix: {config.matrix.user_id}, encryption {encryption}", file=out)
    catalogue = Catalogue.from_config(config)
    for region in catalogue.regions:
        members = catalogue.organisations_in(region.slug)
        if not members and not region.rooms:
            continue
        names = ", ".join(org.name for org in members) or "-"
        room_list = f" → {', '.join(region.rooms)}" if region.rooms else ""
        print(f"  {region.name} ({len(members)}): {names}{room_list}", file=out)
    if not args.online:
        return EXIT_OK
    checks = asyncio.run(check_online(config))
    for check in checks:
        print(format_check(check), file=out)
    print(summary(checks), file=out)
    return EXIT_OK if all(check.sound for check in checks) else EXIT_FEED_ERRORS


async def check_online(config: Config) -> list[SourceCheck]:
    """Try every configured source once with a fetcher of its own; the database stays shut."""
    async with Fetcher(config.polling) as fetcher:
        return await check_sources(config, fetcher)


def cmd_fetch(args: argparse.Namespace, out: TextIO, redactor: RedactSecrets) -> int:
    """Poll the named organisations' feeds once and print what is new."""
    config = read_config(args)
    redactor.add(config.matrix.password, config.matrix.access_token)
    catalogue = Catalogue.from_config(config)
    slugs: list[str] = []
    problems: list[str] = []
    for name in args.organisations:
        organisation = catalogue.find_organisation(name)
        if organisation is None:
            hint = catalogue.suggest(name)
            suffix = f" (did you mean {', '.join(hint)}?)" if hint else ""
            problems.append(f"unknown organisation '{name}'{suffix}")
        elif organisation.slug not in slugs:
            slugs.append(organisation.slug)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    outcomes = asyncio.run(fetch_once(config, slugs or None, dry_run=args.dry_run))
    print_outcomes(outcomes, catalogue, out, dry_run=args.dry_run)
    return EXIT_FEED_ERRORS if any(o.status == "error" for o in outcomes) else EXIT_OK


async def fetch_once(
    config: Config, organisations: Sequence[str] | None, *, dry_run: bool
) -> list[PollOutcome]:
    """Poll every feed of these organisations (all if None) once, concurrently."""
    wanted = [(org.slug, url) for org in config.organisations.values() for url in org.feeds]
    calendars = configured_calendars(config)
    if dry_run:  # a copy in memory: nobody else's feeds can be touched
        store = await Store.open_copy(config.database)
        async with store:
            async with Fetcher(config.polling) as fetcher:
                wanted += await site_feeds(config, store, fetcher)
            await store.sync_feeds(wanted, calendars)
            return await poll_once(config, store, organisations)
    lock = DatabaseLock(config.database, "crieur fetch")
    owner = lock.acquire()
    try:
        async with await Store.open(config.database) as store:
            async with Fetcher(config.polling) as fetcher:
                # Only the database's owner writes down what it found.
                wanted += await site_feeds(config, store, fetcher, remember=owner)
            if owner:
                await store.sync_feeds(wanted, calendars)
            elif not same_feeds(
                [*wanted, *((org, url) for org, _, url in calendars)],
                # Rooms' own feeds are the running bot's, not a configuration's.
                ((f.organisation, f.config_url) for f in await store.feeds() if not f.room_source),
            ):
                # Syncing would mark the running bot's feeds inactive under it.
                raise lock.refusal(
                    "whose configuration has other feeds; poll with that configuration, "
                    "or use --dry-run"
                )
            return await poll_once(config, store, organisations)
    finally:
        lock.release()


async def poll_once(
    config: Config, store: Store, organisations: Sequence[str] | None
) -> list[PollOutcome]:
    """Poll every feed of these organisations (all if None) of the store once, concurrently."""
    async with Fetcher(config.polling) as fetcher:
        timing = PollTiming(config.organisations, config.polling)
        pipeline = Pipeline(
            store,
            fetcher,
            config.organisations,
            config.polling,
            timing=timing,
            calendars=CalendarSettings.from_config(config),
            finder=finder_for(fetcher),
        )
        # Organisations' feeds only: the feeds rooms added are the running bot's business.
        feeds = [feed for feed in await store.feeds(organisations) if not feed.room_source]
        return list(await asyncio.gather(*(pipeline.poll(feed) for feed in feeds)))


def print_outcomes(
    outcomes: Sequence[PollOutcome], catalogue: Catalogue, out: TextIO, *, dry_run: bool
) -> None:
    """Print, per organisation, what each poll found."""
    by_org: dict[str, list[PollOutcome]] = {}
    for outcome in outcomes:
        by_org.setdefault(outcome.feed.organisation, []).append(outcome)
    for organisation in catalogue.organisations:
        polls = by_org.get(organisation.slug)
        if not polls:
            continue
        region = catalogue.region_of(organisation)
        print(f"{organisation.name} ({region.name})", file=out)
        for outcome in polls:
            shown = mask_url(outcome.feed.url)
            print(f"  {shown}: {describe(outcome, dry_run=dry_run)}", file=out)
            if outcome.record is not None:
                for entry in outcome.record.new_entries:
                    when = entry.published.strftime("%Y-%m-%d %H:%M") if entry.published else "?"
                    print(f"    + {when}  {entry.title}  {entry.link or ''}".rstrip(), file=out)
    for region in catalogue.regions:
        # A region's calendars belong to no organisation.
        polls = [o for o in outcomes if o.feed.kind == "calendar" and o.feed.region == region.slug]
        if polls:
            print(region.name, file=out)
        for outcome in polls:
            print(f"  {outcome.feed.url}: {describe(outcome, dry_run=dry_run)}", file=out)
    if dry_run:
        print("(dry run: nothing was recorded)", file=out)


def describe(outcome: PollOutcome, *, dry_run: bool) -> str:
    """Return a one-line account of a poll."""
    record = outcome.record
    if outcome.status == "error":
        return f"error: {mask_urls(outcome.error or '')}"
    if outcome.status == "not_modified":
        return "not modified"
    verb = "would be" if dry_run else "are"
    if outcome.feed.kind == "calendar" and record is not None and record.new_events:
        if record.seeded:
            return (
                f"first fetch: {record.new_events} events {verb} recorded as seen, none announced"
            )
        return f"{record.new_events} new events, {record.deliveries} messages queued"
    if record is None or not record.new_entries:
        return "nothing new"
    if record.seeded:
        return (
            f"first fetch: {len(record.new_entries)} entries {verb} recorded as seen, none posted"
        )
    parts = [f"{len(record.new_entries)} new"]
    if record.too_old:
        parts.append(f"{record.too_old} too old to post")
    if record.digested:
        parts.append(f"{record.digested} summed up in one line")
    parts.append(f"{record.deliveries} messages queued")
    return ", ".join(parts)


def cmd_import_opml(args: argparse.Namespace, out: TextIO) -> int:
    """Print an OPML file's feeds as an `organisations:` block for the configuration."""
    config = read_config(args)
    path: Path = args.file
    try:
        data = path.read_bytes()
    except OSError as error:
        raise OpmlError(f"cannot read {path}: {error.strerror}") from error
    text, warnings = opml_to_yaml(read_opml(data), Catalogue.from_config(config))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    out.write(text)
    return EXIT_OK


def cmd_export_opml(args: argparse.Namespace, out: TextIO) -> int:
    """Print the configured organisations, and the feeds rooms added, as OPML."""
    config = read_config(args)
    sources = asyncio.run(room_source_outlines(config))
    out.write(write_opml(Catalogue.from_config(config), room_sources=sources).decode())
    return EXIT_OK


async def room_source_outlines(config: Config) -> list[OpmlOutline]:
    """Return the feeds rooms added themselves, read from a copy of the database."""
    async with await Store.open_copy(config.database) as store:
        return [
            OpmlOutline(feed.name, feed.url, feed.site_url)
            for feed, _ in await store.room_source_feeds()
        ]


def cmd_discover(args: argparse.Namespace, out: TextIO) -> int:
    """Print the feeds found at a URL, the main one first; exit 2 when there is none."""
    # Private addresses stay refused unless the configuration named with -c allows them.
    polling = read_config(args).polling if args.config else PollingConfig()
    found = asyncio.run(discover_once(polling, args.url))
    if not found.feeds:
        print(f"no feed found at {mask_url(found.url)}: {mask_urls(found.reason)}", file=out)
        return EXIT_FEED_ERRORS
    for feed in found.feeds:
        print(f"{mask_url(feed.url)}  {feed.title}", file=out)
    return EXIT_OK


async def discover_once(polling: PollingConfig, url: str) -> Discovery:
    """Run one discovery with a fetcher of its own."""
    async with Fetcher(polling) as fetcher:
        return await discover(fetcher, url)


def cmd_demo(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Run a throwaway homeserver, sample feeds and the bot, and echo what the bot posts."""
    # Imported here: only the demo needs matrix-synapse.
    from .demo.runner import demo_options, run_demo

    options = demo_options(
        port=args.port,
        fresh=args.fresh,
        every=args.every,
        duration=args.duration,
        data_dir=args.data_dir,
    )
    # The bot logs warnings only, so that the echoed posts stand out, unless --log-level is given.
    probe = build_parser()
    probe.set_defaults(log_level=None)
    level = probe.parse_args(argv).log_level or "warning"
    return run_demo(options, redactor=setup_logging(level, args.log_format))
