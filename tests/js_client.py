"""Element's way of doing encryption, in the tests: matrix-js-sdk with Rust crypto in Node.

Each :class:`JsClient` is one ``node tests/js/client.mjs`` process: one user on one device,
driven through JSON lines (one request, one answer; messages pushed as they settle). Since 2026
Element runs in ``OnlySignedDevicesIsolationMode`` (MSC4153): it shares no room key with a
device its owner has not cross-signed and refuses what such a device sends. Loaded by the root
``conftest.py``; tests ask for the ``js_user`` fixture::

    async def test_x(js_user):
        alice = await js_user("alice")                      # cross-signed, only signed devices
        eve = await js_user("eve", cross_signed=False, isolation="all")
        room_id = await alice.create_room(invite=[eve.user_id])
        await eve.join(room_id)

The process reads its requests on stdin and ends when stdin closes, so none outlives its test.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import pytest
import pytest_asyncio

from tests.synapse_server import SynapseServer

T = TypeVar("T")

Isolation = Literal["only_signed", "all"]

JS_DIR = Path(__file__).resolve().parent / "js"
DRIVER = JS_DIR / "client.mjs"
REQUEST_TIMEOUT = 60.0  # a first sync with Rust crypto's set-up takes a few seconds on 2 cores
WAIT = 20.0
STDERR_LINES = 200
LINE_LIMIT = 16 * 1024 * 1024  # a list of messages is one line

# Decryption failures that mean "this device was given no key", as the SDK names them.
NO_KEY = frozenset(
    {
        "MEGOLM_KEY_WITHHELD",
        "MEGOLM_KEY_WITHHELD_FOR_UNVERIFIED_DEVICE",
        "MEGOLM_UNKNOWN_INBOUND_SESSION_ID",
    }
)

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class JsClientError(RuntimeError):
    """The Node client refused a request, timed out or died; the message holds its stderr."""


@dataclass(frozen=True, slots=True)
class Shield:
    """``getEncryptionInfoForEvent``: the shield Element draws beside a message."""

    colour: str  # none | grey | red
    reason: str | None  # e.g. UNVERIFIED_IDENTITY, UNSIGNED_DEVICE


@dataclass(frozen=True, slots=True)
class JsMessage:
    """A message of a room as the client shows it: decrypted, or the reason it is not."""

    event_id: str
    room_id: str
    sender: str
    sender_device: str | None
    encrypted: bool
    type: str
    msgtype: str | None
    body: str | None
    in_reply_to: str | None
    failure: str | None  # a DecryptionFailureCode, e.g. UNSIGNED_SENDER_DEVICE
    shield: Shield | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JsMessage:
        shield = data.get("shield")
        return cls(
            event_id=data["event_id"],
            room_id=data["room_id"],
            sender=data["sender"],
            sender_device=data.get("sender_device"),
            encrypted=bool(data["encrypted"]),
            type=data["type"],
            msgtype=data.get("msgtype"),
            body=data.get("body"),
            in_reply_to=data.get("in_reply_to"),
            failure=data.get("failure"),
            shield=Shield(shield["colour"], shield.get("reason")) if shield else None,
        )

    @property
    def decrypted(self) -> bool:
        return self.encrypted and self.failure is None and self.body is not None

    def show(self) -> str:
        """One line for an error message."""
        if self.failure is not None:
            return f"{self.event_id}: cannot decrypt ({self.failure})"
        shield = f", shield {self.shield.colour} {self.shield.reason}" if self.shield else ""
        clear = "" if self.encrypted else ", in clear"
        return f"{self.event_id}: {self.body!r}{clear}{shield}"


class JsClient:
    """One matrix-js-sdk client in a Node process; every operation is a coroutine."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.name = name
        self.user_id = ""
        self.device_id = ""
        self.access_token = ""
        self._process = process
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read_stdout())
        self._errors = asyncio.create_task(self._read_stderr())

    @classmethod
    async def launch(cls, name: str = "js") -> JsClient:
        """Start ``node client.mjs``; ``name`` only labels its errors."""
        node = shutil.which("node")
        if node is None:
            raise JsClientError("node is not installed (Node 20 or later is needed)")
        if not (JS_DIR / "node_modules" / "matrix-js-sdk").is_dir():
            raise JsClientError(f"{JS_DIR}/node_modules is missing: run `make js`")
        environment = {
            key: value for key, value in os.environ.items() if key.lower() not in _PROXY_VARIABLES
        }
        process = await asyncio.create_subprocess_exec(
            node,
            str(DRIVER),
            cwd=JS_DIR,
            env=environment,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
        )
        return cls(process, name)

    # -- protocol ---------------------------------------------------------------------------

    @property
    def stderr(self) -> str:
        return "\n".join(self._stderr)

    async def request(self, op: str, timeout: float = REQUEST_TIMEOUT, **arguments: Any) -> Any:  # noqa: ASYNC109
        """Send one request and return its result; raise JsClientError with the stderr."""
        stdin = self._process.stdin
        assert stdin is not None
        if self._process.returncode is not None or self._reader.done():
            raise self._error(f"{op}: the client has exited")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        line = json.dumps({"id": request_id, "op": op, **arguments}) + "\n"
        try:
            stdin.write(line.encode())
            await stdin.drain()
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise self._error(f"{op}: no answer after {timeout} s") from None
        except (BrokenPipeError, ConnectionResetError):
            raise self._error(f"{op}: the client has exited") from None
        finally:
            self._pending.pop(request_id, None)

    def _error(self, message: str) -> JsClientError:
        code = self._process.returncode
        status = "" if code is None else f" (exit code {code})"
        return JsClientError(f"{self.name}: {message}{status}\n--- its stderr ---\n{self.stderr}")

    async def _read_stdout(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            while line := await stdout.readline():
                try:
                    data = json.loads(line)
                except json.JSONDecodeError:
                    self._stderr.append(f"(stdout) {line.decode(errors='replace').rstrip()}")
                    continue
                if "push" in data:
                    self._changed.set()
                    continue
                future = self._pending.get(data.get("id"))
                if future is None or future.done():
                    continue
                if data.get("ok"):
                    future.set_result(data.get("result"))
                else:
                    future.set_exception(self._error(str(data.get("error"))))
        finally:
            await self._process.wait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._errors), 5)
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(self._error("the client has exited"))
            self._changed.set()

    async def _read_stderr(self) -> None:
        stderr = self._process.stderr
        assert stderr is not None
        while line := await stderr.readline():
            self._stderr.append(line.decode(errors="replace").rstrip("\n"))

    # -- operations -------------------------------------------------------------------------

    async def login(self, homeserver: str, user: str, password: str) -> None:
        """Log in with a password: a new device of ``user``."""
        result = await self.request("login", homeserver=homeserver, user=user, password=password)
        self.user_id = result["user_id"]
        self.device_id = result["device_id"]
        self.access_token = result["access_token"]

    async def start(self, isolation: Isolation = "only_signed") -> None:
        """Set up Rust crypto (in memory), choose the isolation mode, and sync once."""
        await self.request("start", isolation=isolation)

    async def cross_sign(self) -> dict[str, Any]:
        """Create the user's cross-signing identity; this device is signed and trusts it."""
        status: dict[str, Any] = await self.request("cross_sign")
        return status

    async def cross_sign_device(self, device_id: str) -> None:
        """Sign another device of this user with the identity this device holds."""
        await self.request("cross_sign_device", device_id=device_id)

    async def set_isolation(self, mode: Isolation) -> None:
        await self.request("isolation", mode=mode)

    async def whoami(self) -> dict[str, Any]:
        """This device: its ids, whether it is cross-signed and trusts its own identity."""
        status: dict[str, Any] = await self.request("whoami")
        return status

    async def create_room(self, *, invite: Sequence[str] = (), encrypted: bool = True) -> str:
        """Create a private room (encrypted unless told otherwise); return its id once joined."""
        result = await self.request("create_room", invite=list(invite), encrypted=encrypted)
        return str(result["room_id"])

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.request("invite", room_id=room_id, user_id=user_id)

    async def join(self, room_id: str) -> None:
        """Join, and return once a sync has shown the join."""
        await self.request("join", room_id=room_id)

    async def membership(self, room_id: str, user_id: str) -> str | None:
        """``user_id``'s membership in the room as this client's syncs have shown it."""
        result = await self.request("membership", room_id=room_id, user_id=user_id)
        return None if result is None else str(result)

    async def wait_membership(
        self,
        room_id: str,
        user_id: str,
        expected: str = "join",
        timeout: float = WAIT,  # noqa: ASYNC109
    ) -> None:
        seen: str | None = None
        try:
            async with asyncio.timeout(timeout):
                while (seen := await self.membership(room_id, user_id)) != expected:
                    await self._next_change(0.2)
        except TimeoutError:
            raise self._error(
                f"{user_id} is {seen!r} in {room_id}, not {expected!r}, after {timeout} s"
            ) from None

    async def send(self, room_id: str, body: str, msgtype: str = "m.text") -> str:
        """Send a message (encrypted if the room is); return its event id."""
        result = await self.request("send", room_id=room_id, body=body, msgtype=msgtype)
        return str(result["event_id"])

    async def messages(self, room_id: str, sender: str | None = None) -> list[JsMessage]:
        """The room's messages (from ``sender`` if given) since this client started, in order."""
        result = await self.request("messages", room_id=room_id, sender=sender)
        return [JsMessage.from_json(item) for item in result]

    async def wait_messages(
        self,
        room_id: str,
        sender: str,
        found: Callable[[list[JsMessage]], T | None],
        timeout: float = WAIT,  # noqa: ASYNC109
        *,
        what: str = "the message awaited",
    ) -> T:
        """Wait until ``found(messages from sender)`` is not None; return it.

        The timeout error lists every message of ``sender`` as this client shows it, with the
        reason it could not decrypt each failed one.
        """
        seen: list[JsMessage] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    seen = await self.messages(room_id, sender)
                    result = found(seen)
                    if result is not None:
                        return result
                    await self._next_change(0.5)
        except TimeoutError:
            shown = "\n".join(f"  {message.show()}" for message in seen) or "  (none)"
            raise AssertionError(
                f"{self.name} ({self.user_id}) saw no {what} from {sender} in {room_id} after "
                f"{timeout} s; its messages from {sender}:\n{shown}"
            ) from None

    async def devices(self, user_id: str) -> dict[str, Any]:
        """``user_id``'s devices as this client trusts them, and its view of their identity."""
        status: dict[str, Any] = await self.request("devices", user_id=user_id)
        return status

    async def _next_change(self, interval: float) -> None:
        """Wait for a pushed message or ``interval`` seconds, whichever comes first."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), interval)

    async def hang_up(self, timeout: float = 10.0) -> int:  # noqa: ASYNC109
        """Close stdin, as the end of the test process would; return the exit code."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        async with asyncio.timeout(timeout):
            return await self._process.wait()

    async def close(self) -> None:
        """Stop the client; kill it if it does not exit within a few seconds."""
        process = self._process
        if process.returncode is None:
            with contextlib.suppress(JsClientError):
                await self.request("stop", timeout=5)
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
        with contextlib.suppress(Exception):
            await self._reader
        with contextlib.suppress(Exception):
            await self._errors


# -- fixtures --------------------------------------------------------------------------------


class JsUserFactory(Protocol):
    def __call__(
        self,
        name: str = "user",
        *,
        cross_signed: bool = True,
        isolation: Isolation = "only_signed",
        server: SynapseServer | None = None,
    ) -> Awaitable[JsClient]: ...


@pytest_asyncio.fixture
async def js_user(request: pytest.FixtureRequest) -> AsyncIterator[JsUserFactory]:
    """``await js_user("alice")``: a fresh user on a started js client, as Element sets it up.

    By default the user is cross-signed (this device signed, trusting its identity) and the
    client shares keys with, and reads messages from, cross-signed devices only.
    """
    clients: list[JsClient] = []

    async def make(
        name: str = "user",
        *,
        cross_signed: bool = True,
        isolation: Isolation = "only_signed",
        server: SynapseServer | None = None,
    ) -> JsClient:
        if server is None:
            server = request.getfixturevalue("synapse")
        account = await server.register_account(server.unique_localpart(name))
        client = await JsClient.launch(name)
        clients.append(client)
        await client.login(server.base_url, account.localpart, account.password)
        await client.start(isolation)
        if cross_signed:
            await client.cross_sign()
        return client

    yield make
    await asyncio.gather(*(client.close() for client in clients))


def decrypted_body(body: str) -> Callable[[list[JsMessage]], JsMessage | None]:
    """Find the decrypted message whose body is ``body``."""
    return lambda messages: next(
        (message for message in messages if message.decrypted and message.body == body), None
    )


def event(event_id: str) -> Callable[[list[JsMessage]], JsMessage | None]:
    """Find the message ``event_id``, decrypted or not."""
    return lambda messages: next(
        (message for message in messages if message.event_id == event_id), None
    )


def failing(event_id: str) -> Callable[[list[JsMessage]], JsMessage | None]:
    """Find the message ``event_id`` once the client has given up decrypting it."""
    return lambda messages: next(
        (
            message
            for message in messages
            if message.event_id == event_id and message.failure is not None
        ),
        None,
    )
