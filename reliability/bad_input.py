"""Scenario 6, bad configuration and database: a clear message and exit 1, nothing lost.

Every check runs `crieur` as an operator does, a separate process on a configuration file:
broken YAML, wrong types and a missing secret with `crieur check` and `crieur run`; then
`crieur run` on a database from a newer Crieur, on a read-only database, and on a disk that
fills up while it runs, with messages still waiting for a homeserver that is down.

A read-only file does not stop root, and these checks may run as root: then the database's
directory is bind-mounted read-only (as a read-only file system does to any user); as another
user the file is made read-only with chmod. The full disk is a small tmpfs, which needs root
to mount; without it that check is skipped, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reliability.report import Row
from tests.e2e_support import (
    CrieurProcess,
    Feeds,
    bot_account,
    config_data,
    eventually,
    titles_posted,
    write_config,
)
from tests.feed_server import FeedServer
from tests.synapse_server import SynapseServer

SECRET = "s3cret-never-printed"
BASE: dict[str, Any] = {
    "matrix": {
        "homeserver": "http://127.0.0.1:9",
        "user_id": "@crieur:localhost",
        "password": SECRET,
    },
    "database": "crieur.sqlite3",
    "regions": {"france": {"name": "France"}},
    "organisations": {
        "april": {"name": "April", "region": "france", "feeds": ["http://127.0.0.1:9/rss"]}
    },
}
TMPFS_SIZE = "4m"
BIG_SUMMARY = 8_000  # characters of each entry published once the disk is full
BIG_BATCH = 60  # entries: far more than fits in the WAL the bot already has


def _environment() -> dict[str, str]:
    """This process's environment without Crieur's variables (a secret there would count)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("CRIEUR_")}


# -- configuration -------------------------------------------------------------------------------


def config_cases() -> dict[str, tuple[str, str]]:
    """name → (configuration text, the key or words the message must name)."""
    good = yaml.safe_dump(BASE, sort_keys=False)
    broken = good.replace("regions:", "regions: [france\n  oops: {", 1)
    wrong = dict(BASE)
    wrong["polling"] = {"interval": [1, 2], "max_posts_per_poll": "many"}
    no_secret = {**BASE, "matrix": {k: v for k, v in BASE["matrix"].items() if k != "password"}}
    return {
        "broken YAML": (broken, "invalid YAML"),
        "wrong types": (yaml.safe_dump(wrong), "polling.interval"),
        "missing secret": (yaml.safe_dump(no_secret), "matrix.password"),
        "not a mapping": ("- just\n- a list\n", "mapping"),
    }


@dataclass
class ConfigOutcome:
    case: str
    command: str
    code: int
    stderr: str
    named: bool  # the message names the key (or says what is wrong)

    @property
    def clear(self) -> bool:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return (
            self.code == 1
            and self.named
            and "Traceback" not in self.stderr
            and SECRET not in self.stderr
            and bool(lines)
            and all(line.startswith("error: ") for line in lines)
        )


async def bad_configs(workdir: Path) -> list[ConfigOutcome]:
    """Each broken configuration with `crieur check` and `crieur run`, all at once."""

    async def one(case: str, text: str, words: str, command: str) -> ConfigOutcome:
        directory = workdir / f"{command}-{case.replace(' ', '-')}"
        directory.mkdir(parents=True)
        path = directory / "config.yaml"
        path.write_text(text, encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            command,
            "-c",
            str(path),
            cwd=directory,
            env=_environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await process.communicate()
        stderr = err.decode("utf-8", "replace")
        assert process.returncode is not None
        return ConfigOutcome(
            case, command, process.returncode, stderr + out.decode(), words in stderr
        )

    jobs = [
        one(case, text, words, command)
        for case, (text, words) in config_cases().items()
        for command in ("check", "run")
    ]
    return list(await asyncio.gather(*jobs))


# -- the database ---------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _count(database: Path, sql: str) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return int(db.execute(sql).fetchone()[0])


def _rows(database: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return sorted(db.execute(sql).fetchall())


@dataclass
class Refusal:
    """`crieur run` on a database it must not use."""

    what: str
    code: int | None
    log: str
    unchanged: bool
    skipped: str | None = None

    @property
    def clear(self) -> bool:
        errors = [line for line in self.log.splitlines() if line.startswith("error: ")]
        return self.code == 1 and bool(errors) and "Traceback" not in self.log


async def _run_expecting_exit(config: Path, timeout: float = 60.0) -> CrieurProcess:  # noqa: ASYNC109
    process = CrieurProcess(config)
    await process.start(wait_running=False)
    try:
        await process.wait(timeout)
    except TimeoutError:
        await process.kill()
    return process


def _simple_config(directory: Path, feed_url: str) -> Path:
    data = {**BASE, "organisations": {"april": {**BASE["organisations"]["april"]}}}
    data["organisations"]["april"]["feeds"] = [feed_url]
    data["polling"] = {"allow_private_networks": True}
    return write_config(data, directory / "config.yaml")


async def newer_schema(workdir: Path) -> Refusal:
    """A database written by a later Crieur (schema version 99): refused, left as it was."""
    directory = workdir / "newer"
    directory.mkdir()
    config = _simple_config(directory, "http://127.0.0.1:9/rss")
    database = directory / "crieur.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.execute("CREATE TABLE future (what TEXT)")
        db.execute("INSERT INTO future VALUES ('kept')")
        db.execute("PRAGMA user_version = 99")
        db.commit()
    before = _digest(database)
    process = await _run_expecting_exit(config)
    unchanged = _digest(database) == before and "newer" in process.log
    return Refusal("newer schema", process.returncode, process.log, unchanged)


def _may_mount() -> bool:
    return sys.platform == "linux" and os.geteuid() == 0


@contextlib.contextmanager
def _read_only(directory: Path, database: Path) -> Iterator[str]:
    """Make the database unwritable for `crieur run`; yield how."""
    if os.geteuid() != 0:
        modes = database.stat().st_mode, directory.stat().st_mode
        database.chmod(0o444)
        directory.chmod(0o555)
        try:
            yield "chmod"
        finally:
            database.chmod(modes[0])
            directory.chmod(modes[1])
        return
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True)
        yield "read-only bind mount"
    finally:
        subprocess.run(["umount", str(directory)], check=True)


async def read_only(workdir: Path, feed_server: FeedServer) -> Refusal:
    """A database `crieur fetch` filled, then made read-only: refused, then fine once writable."""
    directory = workdir / "read-only"
    data = directory / "data"
    data.mkdir(parents=True)
    feed_server.set_feed("/ro.xml", _rss("ro", 3))
    config = _simple_config(directory, feed_server.url("/ro.xml"))
    text = yaml.safe_load(config.read_text())
    text["database"] = "data/crieur.sqlite3"
    write_config(text, config)
    database = data / "crieur.sqlite3"
    fetch = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "fetch",
        "-c",
        str(config),
        env=_environment(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await fetch.communicate()
    if fetch.returncode != 0:
        return Refusal("read-only", fetch.returncode, err.decode(), False, None)
    entries = _count(database, "SELECT count(*) FROM entries")
    before = _digest(database)
    if os.geteuid() == 0 and not _may_mount():
        return Refusal("read-only", None, "", True, "running as root without mount")
    try:
        with _read_only(data, database) as how:
            process = await _run_expecting_exit(config)
    except subprocess.CalledProcessError as error:
        return Refusal("read-only", None, "", True, f"cannot mount read-only: {error}")
    unchanged = (
        _digest(database) == before and _count(database, "SELECT count(*) FROM entries") == entries
    )
    return Refusal(f"read-only ({how})", process.returncode, process.log, unchanged)


def _rss(slug: str, count: int, *, summary: str = "") -> str:
    from tests.feed_server import rss

    return rss(
        [
            {
                "title": f"{slug} {number}",
                "link": f"https://{slug}.example.org/{number}",
                "guid": f"https://{slug}.example.org/{number}",
                "description": summary or f"{slug} {number}",
            }
            for number in range(count)
        ],
        title=slug,
    )


@dataclass
class DiskFull:
    """`crieur run` meets a full disk, with messages waiting for a homeserver that is down."""

    skipped: str | None = None
    code: int | None = None
    log: str = ""
    pending_before: list[tuple[Any, ...]] = field(default_factory=list)
    pending_kept: bool = False
    entries_before: int = 0
    entries_kept: bool = False
    expected: list[str] = field(default_factory=list)  # titles that must arrive once
    arrived: list[str] = field(default_factory=list)
    big_batch_recorded: bool = False
    restart_log: str = ""

    @property
    def clear(self) -> bool:
        errors = [line for line in self.log.splitlines() if line.startswith("error: ")]
        return (
            self.code == 1
            and any("disk is full" in line for line in errors)
            and "Traceback" not in self.log
        )

    @property
    def lost(self) -> list[str]:
        return [title for title in self.expected if title not in self.arrived]

    @property
    def duplicated(self) -> list[str]:
        return [title for title in self.expected if self.arrived.count(title) > 1]


@contextlib.contextmanager
def _tmpfs(directory: Path, size: str) -> Iterator[None]:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
        check=True,
        capture_output=True,
    )
    try:
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def _fill(directory: Path) -> Path:
    """Write a file until the file system is full; return it."""
    filler = directory / "filler"
    try:
        with filler.open("wb") as out:
            block = b"\0" * 65536
            while True:
                out.write(block)
                out.flush()
    except OSError as error:
        # Closing flushes again what the last write left in the buffer: ENOSPC may come
        # from there too, depending on how the free space falls.
        if error.errno != errno.ENOSPC:
            raise
    with contextlib.suppress(OSError), filler.open("ab") as out:  # the last partial block
        while True:
            out.write(b"\0" * 512)
            out.flush()
    return filler


async def disk_full(workdir: Path, synapse: SynapseServer, feed_server: FeedServer) -> DiskFull:
    """Fill the disk under a running bot; free it, restart: nothing lost, nothing twice."""
    if not _may_mount():
        return DiskFull(skipped="mounting a small tmpfs needs root on Linux")
    directory = workdir / "disk-full"
    data = directory / "data"
    data.mkdir(parents=True)
    result = DiskFull()
    feeds = Feeds(feed_server)
    account = await bot_account(synapse)
    owner = await synapse.client("owner")
    processes: list[CrieurProcess] = []
    try:
        with _tmpfs(data, TMPFS_SIZE):
            room = await SynapseServer.create_room(owner, invite=[account.user_id], join=False)
            config = write_config(
                config_data(
                    synapse=synapse,
                    account=account,
                    feeds=feeds,
                    database=Path("data/crieur.sqlite3"),
                    rooms={"ile-de-france": [room]},
                    organisations=["parinux"],
                    max_posts_per_poll=5,
                ),
                directory / "config.yaml",
            )
            database = data / "crieur.sqlite3"
            first = CrieurProcess(config)
            processes.append(first)
            await first.start()
            await feeds.wait_seeded(["parinux"])
            before = [feeds.publish("parinux", f"Avant le disque plein {n}") for n in (1, 2)]
            await SynapseServer.wait_for_messages(
                owner,
                room,
                lambda events: set(before) <= set(titles_posted(events, account.user_id, before)),
                30,
            )
            # The homeserver goes away: the next entries wait in the outbox.
            await synapse.astop()
            waiting = [feeds.publish("parinux", f"En attente {n}") for n in (1, 2)]
            await eventually(
                lambda: (
                    _count(database, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                    >= len(waiting)
                ),
                30,
                what="entries waiting in the outbox",
            )
            result.pending_before = _rows(
                database, "SELECT id, txn_id, entry_id FROM outbox WHERE sent_at IS NULL"
            )
            result.entries_before = _count(database, "SELECT count(*) FROM entries")
            filler = _fill(data)
            feeds.publish_many(
                "parinux",
                [f"Disque plein {n} " + "x" * BIG_SUMMARY for n in range(BIG_BATCH)],
            )
            try:
                result.code = await first.wait(60)
            except TimeoutError:
                result.code = None
            result.log = first.log
            await first.kill()
            result.pending_kept = all(
                row in _rows(database, "SELECT id, txn_id, entry_id FROM outbox")
                for row in result.pending_before
            )
            result.entries_kept = (
                _count(database, "SELECT count(*) FROM entries") >= result.entries_before
            )
            # Space comes back, and the homeserver: the same database carries on.
            filler.unlink()
            await synapse.astart()
            second = CrieurProcess(config)
            processes.append(second)
            await second.start()
            result.expected = [*before, *waiting]
            try:
                events = await SynapseServer.wait_for_messages(
                    owner,
                    room,
                    lambda events: (
                        set(result.expected)
                        <= set(titles_posted(events, account.user_id, result.expected))
                    ),
                    60,
                )
            except TimeoutError:
                events = await SynapseServer.timeline(owner, room)
            await feeds.wait_polls(2, ["parinux"])
            result.big_batch_recorded = (
                _count(database, "SELECT count(*) FROM entries")
                >= result.entries_before + BIG_BATCH
            )
            events = await SynapseServer.timeline(owner, room)
            result.arrived = titles_posted(events, account.user_id, result.expected)
            await second.terminate()
            result.restart_log = second.log
    finally:
        for process in processes:
            await process.kill()
        if not synapse.running:
            await synapse.astart()
        await owner.close()
    return result


# -- the scenario ---------------------------------------------------------------------------------


@dataclass
class BadInputResult:
    configs: list[ConfigOutcome]
    newer: Refusal
    read_only: Refusal
    disk: DiskFull


@contextlib.asynccontextmanager
async def services(workdir: Path) -> AsyncIterator[tuple[SynapseServer, FeedServer]]:
    synapse = SynapseServer(workdir / "synapse")
    feed_server = FeedServer()
    try:
        await synapse.astart()
        await feed_server.start()
        yield synapse, feed_server
    finally:
        await feed_server.stop()
        await synapse.astop()


async def run(workdir: Path, synapse: SynapseServer, feed_server: FeedServer) -> BadInputResult:
    configs = await bad_configs(workdir / "config")
    newer = await newer_schema(workdir)
    readonly = await read_only(workdir, feed_server)
    disk = await disk_full(workdir, synapse, feed_server)
    return BadInputResult(configs, newer, readonly, disk)


def rows(result: BadInputResult) -> list[Row]:
    unclear = [f"{o.command}/{o.case}" for o in result.configs if not o.clear]
    tracebacks = sum(1 for o in result.configs if "Traceback" in o.stderr)
    out = [
        Row(
            "6a. broken YAML, wrong types, missing secret (`crieur check`, `crieur run`)",
            len(result.configs),
            len(result.configs),
            len(unclear),
            0,
            tracebacks,
            "expected: runs that exit 1 with only `error:` lines naming the key, "
            "no traceback, the password never printed"
            + (f"; unclear: {', '.join(unclear)}" if unclear else ""),
        )
    ]
    for refusal in (result.newer, result.read_only):
        if refusal.skipped:
            out.append(Row(f"6. {refusal.what}", 0, 0, 0, 0, 0, f"skipped: {refusal.skipped}"))
            continue
        lost = (0 if refusal.clear else 1) + (0 if refusal.unchanged else 1)
        out.append(
            Row(
                f"6{'b' if refusal is result.newer else 'c'}. database: {refusal.what}",
                1,
                2,
                lost,
                0,
                1 if "Traceback" in refusal.log else 0,
                "expected: a refusal (exit 1, one `error:` line) and the file left as it was; "
                f"said: {_error_line(refusal.log)}",
            )
        )
    disk = result.disk
    if disk.skipped:
        out.append(Row("6d. disk full", 0, 0, 0, 0, 0, f"skipped: {disk.skipped}"))
    else:
        checks = 3
        failed = (0 if disk.clear else 1) + (0 if disk.pending_kept else 1)
        failed += 0 if disk.entries_kept and disk.big_batch_recorded else 1
        out.append(
            Row(
                "6d. disk full under `crieur run` (tmpfs), homeserver down meanwhile",
                1,
                len(disk.expected) + checks,
                len(disk.lost) + failed,
                len(disk.duplicated),
                1 if "Traceback" in disk.log + disk.restart_log else 0,
                f"expected: {len(disk.expected)} entries posted once after space came back "
                f"({len(disk.pending_before)} of them waiting in the outbox when the disk "
                "filled), + 3 checks: a clear exit, the outbox and stored entries intact, "
                f"the batch that met the full disk recorded after; said: {_error_line(disk.log)}",
            )
        )
    return out


def _error_line(log: str) -> str:
    """The first `error:` line, the scenario's own directory left out."""
    for line in log.splitlines():
        if line.startswith("error: "):
            line = re.sub(r"(?:/[^/\s]+)+/(crieur\.sqlite3)", r"…/\1", line)
            return f"“{line[:240]}”"
    return "nothing"


async def scenario(full: bool, workdir: Path) -> list[Row]:
    """Scenario 6 for the report (the same counts in both versions)."""
    async with services(workdir) as (synapse, feed_server):
        return rows(await run(workdir, synapse, feed_server))
