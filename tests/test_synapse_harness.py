"""The Synapse harness itself: real users, rooms, messages, restarts and rate limits."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from tests.synapse_server import ClientFactory, SynapseServer


async def test_an_invited_user_joins_and_reads_a_message(
    synapse: SynapseServer, matrix_client: ClientFactory
) -> None:
    alice = await matrix_client("alice")
    bob = await matrix_client("bob")
    room_id = await synapse.create_room(alice, invite=[bob])

    event_id = await synapse.send_text(alice, room_id, "Bonjour à toutes & à tous")

    events = await synapse.wait_for_messages(bob, room_id, lambda events: len(events) >= 1)
    assert [(e.event_id, e.sender, e.body) for e in events] == [
        (event_id, alice.user_id, "Bonjour à toutes & à tous")
    ]


async def test_rooms_are_version_12_and_their_creator_is_not_in_power_levels(
    synapse: SynapseServer, matrix_client: ClientFactory
) -> None:
    alice = await matrix_client("alice")
    bob = await matrix_client("bob")

    room_id = await synapse.create_room(
        alice, invite=[bob], power_levels={"users": {bob.user_id: 50}}
    )

    create = await alice.room_get_state_event(room_id, "m.room.create")
    assert create.content["room_version"] == "12"
    # v12 room ids are the create event's hash: no ":server" part.
    assert ":" not in room_id
    levels = (await alice.room_get_state_event(room_id, "m.room.power_levels")).content
    assert levels["users"] == {bob.user_id: 50}


async def test_naming_the_creator_in_power_levels_is_refused_in_version_12(
    synapse: SynapseServer, matrix_client: ClientFactory
) -> None:
    alice = await matrix_client("alice")

    with pytest.raises(RuntimeError, match="must not appear"):
        await synapse.create_room(alice, power_levels={"users": {alice.user_id: 100}})


async def test_registering_a_localpart_twice_logs_in_to_the_same_user(
    synapse: SynapseServer,
) -> None:
    localpart = synapse.unique_localpart("carol")

    first = await synapse.register_account(localpart)
    second = await synapse.register_account(localpart)
    user_id, token = await synapse.register(localpart)

    assert first.user_id == second.user_id == user_id == f"@{localpart}:localhost"
    assert first.device_id != second.device_id
    for access_token in (first.access_token, second.access_token, token):
        status, body = await synapse.request(
            "GET", "/_matrix/client/v3/account/whoami", token=access_token
        )
        assert (status, body["user_id"]) == (200, user_id)


async def test_clients_are_fresh_users_even_with_the_same_name(
    matrix_client: ClientFactory,
) -> None:
    first = await matrix_client("Dave")
    second = await matrix_client("Dave")

    assert first.user_id != second.user_id
    assert first.user_id.startswith("@dave-")
    assert second.user_id.startswith("@dave-")


async def test_a_restart_keeps_the_port_users_rooms_and_tokens(
    synapse: SynapseServer, matrix_client: ClientFactory
) -> None:
    alice = await matrix_client("alice")
    bob = await matrix_client("bob")
    room_id = await synapse.create_room(alice, invite=[bob])
    await synapse.send_text(alice, room_id, "before")
    base_url = synapse.base_url

    async with synapse.outage():
        assert not synapse.running
        with pytest.raises(aiohttp.ClientConnectionError):
            await synapse.request("GET", "/_matrix/client/versions")

    assert synapse.base_url == base_url
    await synapse.send_text(alice, room_id, "after")
    events = await synapse.wait_for_messages(bob, room_id, lambda events: len(events) >= 2)
    assert [e.body for e in events] == ["before", "after"]


async def test_the_strict_server_limits_message_bursts(
    synapse_strict: SynapseServer, matrix_client: ClientFactory
) -> None:
    alice = await matrix_client("alice", server=synapse_strict)
    helper = await matrix_client("helper", server=synapse_strict)
    await synapse_strict.exempt_from_rate_limits(helper.user_id)
    room_id = await synapse_strict.create_room(helper, invite=[alice])

    async def send(user: str, token: str, count: int) -> list[tuple[int, str | None, int]]:
        results = []
        for n in range(count):
            path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/m.room.message"
            status, body = await synapse_strict.request(
                "PUT", f"{path}/{user}-{n}", token=token, json={"msgtype": "m.text", "body": "x"}
            )
            results.append((status, body.get("errcode"), body.get("retry_after_ms", 0)))
        return results

    limited = await send("alice", alice.access_token, 4)
    exempt = await send("helper", helper.access_token, 10)

    # Alice's join took one of the 3 tokens of the burst; Synapse answers each 429 after 0.5 s.
    statuses = [status for status, _, _ in limited]
    assert statuses[:2] == [200, 200]
    assert 429 in statuses[2:]
    refused = [result for result in limited if result[0] == 429]
    assert refused
    assert all(errcode == "M_LIMIT_EXCEEDED" and wait > 0 for _, errcode, wait in refused)
    assert {status for status, _, _ in exempt} == {200}


def _listening_sockets(pid: int) -> list[str]:
    """``proto address:port`` of every TCP listener and UDP socket the process holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode in inodes and (table.startswith("udp") or state == "0A"):
                host, port = local.split(":")
                raw = bytes.fromhex(host)
                # /proc prints each 32-bit word of the address in host (little-endian) order.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
                found.append(f"{table} {socket.inet_ntop(family, words)}:{int(port, 16)}")
    return found


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")
def test_synapse_listens_only_on_loopback(synapse: SynapseServer) -> None:
    assert synapse.pid is not None

    assert _listening_sockets(synapse.pid) == [f"tcp 127.0.0.1:{synapse.port}"]
