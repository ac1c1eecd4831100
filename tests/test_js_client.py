"""The Element-like client of the tests, proven on its own: matrix-js-sdk with Rust crypto in
Node, against the suite's Synapse, with no bot involved.

Two cross-signed users in ``OnlySignedDevicesIsolationMode`` read each other; a device its
owner has not cross-signed is given no key by them, and what it sends is refused.
"""

from __future__ import annotations

import pytest

from tests.js_client import (
    JsClient,
    JsClientError,
    JsUserFactory,
    decrypted_body,
    failing,
)


async def room_of(owner: JsClient, *members: JsClient) -> str:
    """An encrypted room of ``owner`` that every member has joined, as the owner has seen."""
    room_id = await owner.create_room(invite=[member.user_id for member in members])
    for member in members:
        await member.join(room_id)
        await owner.wait_membership(room_id, member.user_id)
    return room_id


async def test_cross_signing_signs_the_device_and_trusts_its_own_identity(
    js_user: JsUserFactory,
) -> None:
    alice = await js_user("alice")
    status = await alice.whoami()
    assert status["device_id"] == alice.device_id
    assert status["cross_signing_ready"] is True
    assert status["device_signed_by_owner"] is True
    assert status["device_cross_signing_verified"] is True
    assert status["identity_verified"] is True


async def test_two_cross_signed_users_read_each_other_in_only_signed_mode(
    js_user: JsUserFactory,
) -> None:
    alice, bob = await js_user("alice"), await js_user("bob")
    room_id = await room_of(alice, bob)

    await alice.send(room_id, "Bonjour Bob")
    await bob.send(room_id, "Bonjour Alice")

    for reader, writer, body in ((bob, alice, "Bonjour Bob"), (alice, bob, "Bonjour Alice")):
        message = await reader.wait_messages(room_id, writer.user_id, decrypted_body(body))
        assert message.shield is not None and message.shield.colour != "red", message
        devices = await reader.devices(writer.user_id)
        (device,) = [d for d in devices["devices"] if d["device_id"] == writer.device_id]
        assert device["signed_by_owner"] is True


async def test_a_device_not_cross_signed_gets_no_key_from_an_only_signed_sender(
    js_user: JsUserFactory,
) -> None:
    alice = await js_user("alice")
    eve = await js_user("eve", cross_signed=False, isolation="all")
    room_id = await room_of(alice, eve)

    event_id = await alice.send(room_id, "Pas pour Eve")

    message = await eve.wait_messages(room_id, alice.user_id, failing(event_id))
    assert message.failure == "MEGOLM_KEY_WITHHELD_FOR_UNVERIFIED_DEVICE", message
    assert message.body is None


async def test_what_a_device_not_cross_signed_sends_is_refused_in_only_signed_mode(
    js_user: JsUserFactory,
) -> None:
    alice = await js_user("alice")
    eve = await js_user("eve", cross_signed=False, isolation="all")
    room_id = await room_of(alice, eve)

    event_id = await eve.send(room_id, "Bonjour de la part d'Eve")

    message = await alice.wait_messages(room_id, eve.user_id, failing(event_id))
    assert message.failure == "UNSIGNED_SENDER_DEVICE", message
    assert message.body is None


async def test_the_client_answers_errors_and_exits_when_its_stdin_closes() -> None:
    client = await JsClient.launch("closing")
    try:
        with pytest.raises(JsClientError, match="log in first"):
            await client.whoami()
        assert await client.hang_up() == 0
    finally:
        await client.close()
