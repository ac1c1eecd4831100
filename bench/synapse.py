"""A throwaway Synapse on 127.0.0.1 (the demo's), its users, rooms and plain nio clients."""

from __future__ import annotations

import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from nio import AsyncClient, LoginResponse, RoomCreateResponse, RoomPreset, SyncResponse

from bot.demo.homeserver import HOST, Homeserver


def free_port() -> int:
    """A port nothing listens on right now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Synapse:
    """Start a Synapse (rate limits far above what the bench sends) in a temporary directory."""

    def __init__(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="crieur-bench-synapse-"))
        self.server = Homeserver(self._directory, free_port())
        self._clients: list[AsyncClient] = []
        self.startup_seconds = 0.0

    @property
    def base_url(self) -> str:
        """The homeserver URL for clients."""
        return self.server.base_url

    async def __aenter__(self) -> Self:
        try:
            self.startup_seconds = await self.server.start()
        except BaseException:
            shutil.rmtree(self._directory, ignore_errors=True)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for client in self._clients:
                await client.close()
            await self.server.stop()
        finally:
            shutil.rmtree(self._directory, ignore_errors=True)

    def kill(self) -> None:
        """Kill Synapse at once (for atexit: no event loop needed)."""
        self.server.kill()

    async def register(self, prefix: str) -> tuple[str, str]:
        """Register a new user; return its user id and password."""
        localpart = f"{prefix}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(16)
        await self.server.register(localpart, password)
        return self.server.user_id(localpart), password

    async def client(self, prefix: str) -> AsyncClient:
        """Register a user and return a logged-in nio client of it (closed on exit)."""
        user_id, password = await self.register(prefix)
        client = AsyncClient(self.base_url, user_id)
        self._clients.append(client)
        response = await client.login(password=password, device_name="bench")
        if not isinstance(response, LoginResponse):
            raise RuntimeError(f"cannot log in {user_id}: {response}")
        return client


async def create_room(owner: AsyncClient, name: str) -> str:
    """Create a public room (anyone may join it) and return its id."""
    response = await owner.room_create(name=name, preset=RoomPreset.public_chat)
    if not isinstance(response, RoomCreateResponse):
        raise RuntimeError(f"cannot create room {name}: {response}")
    return str(response.room_id)


def room_filter(room_id: str) -> dict[str, Any]:
    return {
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
        "room": {"rooms": [room_id], "timeline": {"limit": 100}, "ephemeral": {"not_types": ["*"]}},
    }


async def sync_token(client: AsyncClient, room_id: str) -> str:
    """Sync once; return the token after which new events of the room will be seen."""
    response = await client.sync(timeout=0, sync_filter=room_filter(room_id))
    if not isinstance(response, SyncResponse):
        raise RuntimeError(f"sync failed: {response}")
    return str(response.next_batch)


async def messages_of(
    client: AsyncClient, room_id: str, since: str, sender: str
) -> AsyncIterator[tuple[str, float]]:
    """Long-poll the room forever: each message body of `sender`, with when it was seen."""
    while True:
        response = await client.sync(timeout=30_000, since=since, sync_filter=room_filter(room_id))
        seen = time.time()
        if not isinstance(response, SyncResponse):
            raise RuntimeError(f"sync failed: {response}")
        since = str(response.next_batch)
        room = response.rooms.join.get(room_id)
        for event in room.timeline.events if room is not None else ():
            body = event.source.get("content", {}).get("body", "")
            if event.sender == sender and isinstance(body, str):
                yield body, seen


async def wait_for_message(
    client: AsyncClient, room_id: str, since: str, sender: str, needle: str
) -> float:
    """Long-poll until `sender` posts a message containing `needle`; return when it was seen."""
    async for body, seen in messages_of(client, room_id, since, sender):
        if needle in body:
            return seen
    raise AssertionError("unreachable: the messages never end")
