"""A real Synapse homeserver on 127.0.0.1 for the Matrix tests.

Loaded by the root ``conftest.py``; every test can ask for these fixtures:

``synapse`` (session, sync)
    One :class:`SynapseServer` shared by the whole session: relaxed rate limits, started on first
    use, stopped at the end. Sync, so tests on any event loop can use it. Tests that stop it must
    start it again (``async with synapse.outage(): ...`` does both).
``synapse_factory`` (function, sync)
    ``synapse_factory(strict_rate_limits=False, extra_config=None, start=True)`` returns a
    separate, started server with its own data; all are stopped at teardown.
``synapse_strict`` (function, sync)
    A separate server whose ``rc_message`` is 0.5 per second with a burst of 3.
``matrix_client`` (function, async)
    ``await matrix_client("alice", server=None, admin=False)`` registers a fresh user (a unique
    localpart starting with ``alice``) on ``server`` (default: ``synapse``) and returns a logged-in
    ``nio.AsyncClient``; every client is closed at teardown, in the test's event loop.

Users share one homeserver for the whole session, so name nothing with a fixed localpart unless
the test wants to meet it again: ``SynapseServer.client`` and ``matrix_client`` add a suffix.
When a test fails, the tail of every running Synapse's log is added to its report.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import hmac
import http.client
import itertools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest
import pytest_asyncio
import yaml
from nio import (
    AsyncClient,
    AsyncClientConfig,
    Event,
    JoinResponse,
    MessageDirection,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomSendResponse,
)

from bot.demo.homeserver import (
    SynapseLayout,
    homeserver_config,
    log_config,
    relaxed_rate_limits,
)

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
START_TIMEOUT = 60.0
STOP_GRACE = 10.0

# Strict enough that a burst of a few messages meets it; Synapse keeps burst_count as an int.
STRICT_MESSAGE_RATE = {"per_second": 0.5, "burst_count": 3}

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")

# Runs beside Synapse and SIGKILLs its process group when the test process dies, even by
# SIGKILL: its stdin is a pipe from us, so it reads EOF then. A clean stop sends "disarm" first.
_WATCHDOG = """
import os, signal, sys
if sys.stdin.readline().strip() != "disarm":
    try:
        os.killpg(int(sys.argv[1]), signal.SIGKILL)
    except OSError:
        pass
"""


class SynapseError(RuntimeError):
    """Synapse failed to start, or refused a request the harness needed."""


@dataclass(frozen=True, slots=True)
class Account:
    """A registered user and one of its logged-in devices."""

    user_id: str
    access_token: str
    device_id: str
    password: str

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]


def rate_limits(*, strict: bool = False) -> dict[str, Any]:
    """The ``rc_*`` settings: everything relaxed; ``rc_message`` strict if asked."""
    limits = relaxed_rate_limits()
    if strict:
        limits["rc_message"] = dict(STRICT_MESSAGE_RATE)
    return limits


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _default_password(localpart: str) -> str:
    return f"{localpart}-password"


_LIVE: set[SynapseServer] = set()


@atexit.register
def _kill_live_servers() -> None:
    for server in list(_LIVE):
        server.kill()


class SynapseServer(SynapseLayout):
    """One Synapse process and its data directory (config, signing key, SQLite, media, log).

    The server only ever listens on ``127.0.0.1:port`` (client and admin APIs, no federation).
    ``stop()`` then ``start()`` keeps the data and the port, so users, rooms, devices and access
    tokens survive a restart. Synapse runs in its own process group, killed at interpreter exit
    and, through a watchdog process, if the test process dies.
    """

    server_name = SERVER_NAME

    def __init__(
        self,
        directory: Path | None = None,
        *,
        strict_rate_limits: bool = False,
        extra_config: Mapping[str, Any] | None = None,
        port: int | None = None,
    ) -> None:
        """Write the configuration; nothing runs until ``start()``.

        ``directory`` holds everything (a temporary one, removed by ``close()``, if None);
        ``extra_config`` is merged over the generated ``homeserver.yaml`` at the top level.
        """
        self._owns_directory = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="synapse-")) if directory is None else directory
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.strict_rate_limits = strict_rate_limits
        self.startup_seconds: float | None = None
        self._shared_secret = secrets.token_urlsafe(32)
        self._passwords: dict[str, str] = {}
        self._counter = itertools.count(1)
        self._admin: Account | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._write_config(extra_config or {})

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SynapseServer {self.base_url} {state} {self.directory}>"

    # -- paths and addresses ------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    # -- configuration ------------------------------------------------------------------------

    def _write_config(self, extra_config: Mapping[str, Any]) -> None:
        directory = self.directory
        key_path = directory / "signing.key"
        if not key_path.exists():
            # Synapse's own library, imported here: the unit tests run without Synapse too.
            from signedjson.key import generate_signing_key, write_signing_keys

            with key_path.open("w") as key_file:
                write_signing_keys(key_file, [generate_signing_key("a_" + secrets.token_hex(2))])
        log_config_path = directory / "log.yaml"
        log_config_path.write_text(yaml.safe_dump(log_config(self.log_path)))
        config = homeserver_config(
            directory,
            self.port,
            secret_values={
                "registration_shared_secret": self._shared_secret,
                "macaroon_secret_key": secrets.token_urlsafe(32),
                "form_secret": secrets.token_urlsafe(32),
            },
            log_config_path=log_config_path,
            signing_key_path=key_path,
        )
        config.update(rate_limits(strict=self.strict_rate_limits))
        config.update(extra_config)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    # -- process ------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start Synapse (a no-op if it runs) and wait until the client API answers.

        Raise :class:`SynapseError` with the tail of its log if it exits or stays silent.
        """
        if self.running:
            return
        environment = {
            name: value
            for name, value in os.environ.items()
            if name.lower() not in _PROXY_VARIABLES
        }
        began = time.monotonic()
        with self.output_path.open("ab") as output:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.directory,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.add(self)
        self._watchdog = subprocess.Popen(
            [sys.executable, "-I", "-c", _WATCHDOG, str(self._process.pid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _wait_until_ready(self, timeout: float) -> None:
        assert self._process is not None
        # No proxy: an environment's proxy must never see 127.0.0.1.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        url = self.base_url + "/_matrix/client/versions"
        deadline = time.monotonic() + timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise SynapseError(f"Synapse exited with {code} while starting\n{self.log_tail()}")
            try:
                with opener.open(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, http.client.HTTPException, OSError):
                pass
            if time.monotonic() > deadline:
                raise SynapseError(f"Synapse did not answer in {timeout:.0f} s\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM Synapse's process group, SIGKILL it after ``grace`` seconds, and reap it."""
        self._end(signal.SIGTERM, grace)

    def kill(self) -> None:
        """SIGKILL Synapse at once, as a crash would; ``start()`` works afterwards."""
        self._end(signal.SIGKILL, grace=0)

    def _end(self, first_signal: signal.Signals, grace: float) -> None:
        process = self._process
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, first_signal)
                if not _exited(process.pid, grace):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            self._process = None
        watchdog = self._watchdog
        if watchdog is not None:
            with contextlib.suppress(OSError, ValueError):
                assert watchdog.stdin is not None
                watchdog.stdin.write(b"disarm\n")
                watchdog.stdin.close()
            watchdog.wait()
            self._watchdog = None
        _LIVE.discard(self)

    async def astart(self, timeout: float = START_TIMEOUT) -> None:  # noqa: ASYNC109 (a thread)
        """``start()`` in a thread, so the event loop (and a bot in it) keeps running."""
        await asyncio.to_thread(self.start, timeout)

    async def astop(self, grace: float = STOP_GRACE) -> None:
        """``stop()`` in a thread, so the event loop (and a bot in it) keeps running."""
        await asyncio.to_thread(self.stop, grace)

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """Stop Synapse for the body of the ``async with``, then start it again (same port)."""
        await self.astop()
        try:
            yield
        finally:
            await self.astart()

    def close(self) -> None:
        """Stop Synapse, and remove the data directory if this object created it."""
        self.stop()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> SynapseServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of Synapse's output and log, for error messages and failure reports."""
        parts = []
        for path in (self.output_path, self.log_path):
            with contextlib.suppress(FileNotFoundError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts) or f"(Synapse wrote nothing in {self.directory})"

    # -- HTTP ---------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
    ) -> tuple[int, Any]:
        """One request to this homeserver; return the status and the decoded JSON body."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, self.base_url + path, headers=headers, json=json) as response,
        ):
            return response.status, await response.json(content_type=None)

    # -- users --------------------------------------------------------------------------------

    def unique_localpart(self, prefix: str = "user") -> str:
        """``prefix`` made unique on this server (localparts are lower case)."""
        return f"{prefix.lower()}-{next(self._counter)}-{secrets.token_hex(2)}"

    async def register_account(
        self, localpart: str, password: str | None = None, *, admin: bool = False
    ) -> Account:
        """Register with the shared secret; if the localpart exists, log in to it instead.

        The password defaults to the one the localpart was registered with here, else to one
        derived from the localpart. A login does not change an existing user's admin flag.
        """
        password = password or self._passwords.get(localpart) or _default_password(localpart)
        status, body = await self.request("GET", "/_synapse/admin/v1/register")
        if status != 200:
            raise SynapseError(f"no registration nonce: {status} {body}")
        nonce = body["nonce"]
        mac = hmac.new(self._shared_secret.encode(), digestmod=hashlib.sha1)
        parts = (nonce, localpart, password, "admin" if admin else "notadmin")
        mac.update(b"\x00".join(part.encode() for part in parts))
        status, body = await self.request(
            "POST",
            "/_synapse/admin/v1/register",
            json={
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        if status == 200:
            self._passwords[localpart] = password
            return Account(body["user_id"], body["access_token"], body["device_id"], password)
        if isinstance(body, dict) and body.get("errcode") == "M_USER_IN_USE":
            return await self.login_account(localpart, password)
        raise SynapseError(f"cannot register {localpart!r}: {status} {body}")

    async def register(
        self, localpart: str, password: str | None = None, *, admin: bool = False
    ) -> tuple[str, str]:
        """``register_account`` returning ``(user_id, access_token)``."""
        account = await self.register_account(localpart, password, admin=admin)
        return account.user_id, account.access_token

    async def login_account(
        self, localpart: str, password: str | None = None, *, device_id: str | None = None
    ) -> Account:
        """Log in with a password; a new device unless ``device_id`` names one to reuse."""
        password = password or self._passwords.get(localpart) or _default_password(localpart)
        request: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
        }
        if device_id is not None:
            request["device_id"] = device_id
        status, body = await self.request("POST", "/_matrix/client/v3/login", json=request)
        if status != 200:
            raise SynapseError(f"cannot log in as {localpart!r}: {status} {body}")
        return Account(body["user_id"], body["access_token"], body["device_id"], password)

    async def login(
        self, localpart: str, password: str | None = None, *, device_id: str | None = None
    ) -> tuple[str, str]:
        """``login_account`` returning ``(user_id, access_token)``."""
        account = await self.login_account(localpart, password, device_id=device_id)
        return account.user_id, account.access_token

    async def admin_account(self) -> Account:
        """A server admin of this homeserver (registered on first use)."""
        if self._admin is None:
            self._admin = await self.register_account(self.unique_localpart("admin"), admin=True)
        return self._admin

    async def exempt_from_rate_limits(self, user_id: str) -> None:
        """Lift every message rate limit for ``user_id`` (admin ``override_ratelimit`` API).

        Synapse exempts nobody by default, admins included; on ``synapse_strict`` this lets a
        test's helper users set rooms up while the user under test stays limited.
        """
        admin = await self.admin_account()
        status, body = await self.request(
            "POST",
            f"/_synapse/admin/v1/users/{user_id}/override_ratelimit",
            token=admin.access_token,
            json={"messages_per_second": 0, "burst_count": 0},
        )
        if status != 200:
            raise SynapseError(f"cannot exempt {user_id}: {status} {body}")

    # -- nio clients --------------------------------------------------------------------------

    def client_for(self, account: Account, config: AsyncClientConfig | None = None) -> AsyncClient:
        """A nio client logged in as ``account`` (its device and token); the caller closes it.

        The default config keeps no sync token and no encryption. Note that nio retries 429s
        and connection errors forever unless ``max_limit_exceeded`` / ``max_timeouts`` are set.
        """
        store = self.directory / "clients" / account.localpart / account.device_id
        store.mkdir(parents=True, exist_ok=True)
        client = AsyncClient(
            self.base_url,
            account.user_id,
            device_id=account.device_id,
            store_path=str(store),
            config=config or AsyncClientConfig(store_sync_tokens=False, encryption_enabled=False),
        )
        client.restore_login(account.user_id, account.device_id, account.access_token)
        return client

    async def client(
        self, localpart: str = "user", *, admin: bool = False, unique: bool = True
    ) -> AsyncClient:
        """Register a user and return a logged-in nio client; the caller closes it.

        The localpart is ``unique_localpart(localpart)`` unless ``unique=False``. Prefer the
        ``matrix_client`` fixture, which closes its clients at teardown.
        """
        name = self.unique_localpart(localpart) if unique else localpart
        return self.client_for(await self.register_account(name, admin=admin))

    # -- rooms and messages (work with any nio client) ----------------------------------------

    @staticmethod
    async def create_room(
        creator: AsyncClient,
        *,
        invite: Sequence[AsyncClient | str] = (),
        join: bool = True,
        power_levels: dict[str, Any] | None = None,
        name: str | None = None,
        encrypted: bool = False,
        initial_state: Sequence[dict[str, Any]] = (),
    ) -> str:
        """Create a private room, invite users (clients or user ids) and return its id.

        Invited *clients* join at once unless ``join=False``. ``power_levels`` is merged by
        Synapse over its defaults (``power_level_content_override``). In room version 12
        (Synapse's default) the creator has unlimited power and must not appear in
        ``power_levels["users"]``: Synapse refuses the room if it does.
        """
        state = list(initial_state)
        if encrypted:
            encryption = {"algorithm": "m.megolm.v1.aes-sha2"}
            state.append({"type": "m.room.encryption", "state_key": "", "content": encryption})
        invitees = [user if isinstance(user, str) else user.user_id for user in invite]
        response = await creator.room_create(
            name=name, invite=invitees, initial_state=state, power_level_override=power_levels
        )
        if not isinstance(response, RoomCreateResponse):
            raise SynapseError(f"{creator.user_id} cannot create a room: {response}")
        if join:
            for user in invite:
                if not isinstance(user, str):
                    await SynapseServer.join(user, response.room_id)
        return str(response.room_id)

    @staticmethod
    async def join(client: AsyncClient, room_id: str) -> None:
        """Join ``room_id``; raise if the homeserver refuses."""
        response = await client.join(room_id)
        if not isinstance(response, JoinResponse):
            raise SynapseError(f"{client.user_id} cannot join {room_id}: {response}")

    @staticmethod
    async def send_text(
        client: AsyncClient,
        room_id: str,
        body: str,
        *,
        msgtype: str = "m.text",
        txn_id: str | None = None,
    ) -> str:
        """Send a plain message (``m.text`` or e.g. ``m.notice``); return its event id."""
        response = await client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": msgtype, "body": body},
            tx_id=txn_id,
            ignore_unverified_devices=True,
        )
        if not isinstance(response, RoomSendResponse):
            raise SynapseError(f"{client.user_id} cannot send to {room_id}: {response}")
        return str(response.event_id)

    @staticmethod
    async def timeline(
        client: AsyncClient,
        room_id: str,
        *,
        types: Sequence[str] | None = ("m.room.message",),
        max_events: int = 10_000,
    ) -> list[Event]:
        """The room's events visible to ``client``, oldest first, read with ``/messages``.

        Only events whose type is in ``types`` (every type if None). ``/messages`` does not
        touch the client's sync state, so this never disturbs a bot syncing with it.
        """
        events: list[Event] = []
        start: str | None = None
        seen = 0
        while seen < max_events:
            response = await client.room_messages(
                room_id, start=start, direction=MessageDirection.back, limit=100
            )
            if not isinstance(response, RoomMessagesResponse):
                raise SynapseError(f"{client.user_id} cannot read {room_id}: {response}")
            seen += len(response.chunk)
            events.extend(
                event
                for event in response.chunk
                if types is None or event.source.get("type") in types
            )
            if not response.chunk or not response.end or response.end == start:
                break
            start = response.end
        events.reverse()
        return events

    @staticmethod
    async def wait_for_messages(
        client: AsyncClient,
        room_id: str,
        predicate: Callable[[list[Event]], bool] = bool,
        timeout: float = 10.0,  # noqa: ASYNC109 (the documented signature)
        *,
        types: Sequence[str] | None = ("m.room.message",),
        interval: float = 0.1,
    ) -> list[Event]:
        """Poll the room's timeline until ``predicate(events)`` holds; return those events.

        ``events`` are as ``timeline`` gives them (oldest first, ``m.room.message`` only by
        default; ``event.body`` and ``event.source["content"]`` hold the content). The default
        predicate waits for any message. Raise ``TimeoutError`` listing the bodies seen.
        """
        events: list[Event] = []
        try:
            # The timeout also bounds a request that nio keeps retrying while Synapse is down.
            async with asyncio.timeout(timeout):
                while True:
                    events = await SynapseServer.timeline(client, room_id, types=types)
                    if predicate(events):
                        return events
                    await asyncio.sleep(interval)
        except TimeoutError:
            bodies = [event.source.get("content", {}).get("body") for event in events]
            raise TimeoutError(f"after {timeout} s, {room_id} holds {bodies!r}") from None


def _exited(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` exits, without reaping it (its group id stays ours to kill)."""
    deadline = time.monotonic() + timeout
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


# -- fixtures --------------------------------------------------------------------------------


class SynapseFactory(Protocol):
    def __call__(
        self,
        *,
        strict_rate_limits: bool = False,
        extra_config: Mapping[str, Any] | None = None,
        start: bool = True,
    ) -> SynapseServer: ...


class ClientFactory(Protocol):
    def __call__(
        self, localpart: str = "user", *, server: SynapseServer | None = None, admin: bool = False
    ) -> Awaitable[AsyncClient]: ...


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """The session's Synapse, relaxed rate limits; tests that stop it must start it again."""
    server = SynapseServer(tmp_path_factory.mktemp("synapse"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def synapse_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseFactory]:
    """Make separate Synapse servers for one test; all are stopped at teardown."""
    servers: list[SynapseServer] = []

    def make(
        *,
        strict_rate_limits: bool = False,
        extra_config: Mapping[str, Any] | None = None,
        start: bool = True,
    ) -> SynapseServer:
        server = SynapseServer(
            tmp_path_factory.mktemp("synapse"),
            strict_rate_limits=strict_rate_limits,
            extra_config=extra_config,
        )
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def synapse_strict(synapse_factory: SynapseFactory) -> SynapseServer:
    """A Synapse of its own whose ``rc_message`` allows 0.5 events per second, burst 3.

    ``rc_message`` counts joins and other events, not only messages, for every user (admins
    too; see ``exempt_from_rate_limits``), and Synapse holds each 429 answer for 0.5 s.
    """
    return synapse_factory(strict_rate_limits=True)


@pytest_asyncio.fixture
async def matrix_client(request: pytest.FixtureRequest) -> AsyncIterator[ClientFactory]:
    """``await matrix_client("alice", server=None, admin=False)``: a fresh user's nio client.

    ``server`` defaults to the session's ``synapse``; the clients are closed at teardown.
    """
    clients: list[AsyncClient] = []

    async def make(
        localpart: str = "user", *, server: SynapseServer | None = None, admin: bool = False
    ) -> AsyncClient:
        if server is None:
            server = request.getfixturevalue("synapse")
        client = await server.client(localpart, admin=admin)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Add the tail of every running Synapse's log to a failed test's report."""
    report = yield
    if report.failed:
        for server in sorted(_LIVE, key=lambda server: server.port):
            report.sections.append((f"Synapse {server.base_url}", server.log_tail(40)))
    return report
