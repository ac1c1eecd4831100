"""Trust as Element trusts, without a homeserver: /keys/query answers built with real keys.

Also the keys file of the bot's own identity and the reading of withheld room keys.
"""

from __future__ import annotations

import copy
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from bot.matrix.identity_keys import Identity, identity_path, load_identity, save_identity
from bot.matrix.trust import (
    BAD_DEVICE,
    BAD_SELF_SIGNING,
    NO_IDENTITY,
    NOT_CROSS_SIGNED,
    MasterKeyPins,
    assess,
)
from bot.matrix.withheld import log_withheld, withheld_key
from bot.store import Store

ALICE = "@alice:example.org"
BOB = "@bob:example.org"


def device_keys(user_id: str, device_id: str) -> dict[str, Any]:
    """A device's published keys, signed by its own ed25519 key."""
    key = generate_signing_key(device_id)
    public = encode_verify_key_base64(get_verify_key(key))
    device = {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"ed25519:{device_id}": public, f"curve25519:{device_id}": "curve"},
    }
    return sign_json(device, user_id, key)


class User:
    """A user with a cross-signing identity and devices, as a homeserver would publish them."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.identity = Identity.generate(user_id)
        self.devices: dict[str, dict[str, Any]] = {}

    def add_device(self, device_id: str, *, cross_signed: bool = True) -> dict[str, Any]:
        device = device_keys(self.user_id, device_id)
        if cross_signed:
            sign_json(device, self.user_id, self.identity.self_signing)
        self.devices[device_id] = device
        return device

    def answer(self) -> dict[str, Any]:
        """This user's part of a /keys/query answer."""
        keys = self.identity.upload_body()
        return {
            "device_keys": {self.user_id: copy.deepcopy(self.devices)},
            "master_keys": {self.user_id: keys["master_key"]},
            "self_signing_keys": {self.user_id: keys["self_signing_key"]},
        }


def merged(*answers: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
    for answer in answers:
        for section, users in answer.items():
            result[section].update(users)
    return result


@pytest.fixture
def alice() -> User:
    user = User(ALICE)
    user.add_device("PHONE")
    return user


def test_an_identity_seen_for_the_first_time_is_pinned(alice: User) -> None:
    trust = assess(alice.answer(), {})[ALICE]

    assert trust.pin == alice.identity.master_key
    assert not trust.changed


def test_a_pinned_identity_is_not_pinned_again(alice: User) -> None:
    trust = assess(alice.answer(), {ALICE: alice.identity.master_key})[ALICE]

    assert trust.pin is None


def test_a_device_cross_signed_by_its_owner_is_trusted(alice: User) -> None:
    trust = assess(alice.answer(), {ALICE: alice.identity.master_key})[ALICE]

    assert trust.trusts("PHONE")
    assert trust.excluded == {}


def test_a_changed_master_key_excludes_every_device_of_its_user(alice: User) -> None:
    pinned = alice.identity.master_key
    alice.identity = Identity.generate(ALICE)  # a reset identity, devices signed again
    alice.add_device("PHONE")

    trust = assess(alice.answer(), {ALICE: pinned})[ALICE]

    assert trust.changed and trust.pin is None
    assert not trust.trusts("PHONE")
    assert f"!trust reset {ALICE}" in trust.excluded["PHONE"]


def test_a_removed_identity_counts_as_changed(alice: User) -> None:
    answer = alice.answer()
    del answer["master_keys"][ALICE], answer["self_signing_keys"][ALICE]

    trust = assess(answer, {ALICE: alice.identity.master_key})[ALICE]

    assert trust.changed and not trust.trusts("PHONE")


def test_a_device_its_owner_did_not_cross_sign_is_excluded(alice: User) -> None:
    alice.add_device("LAPTOP", cross_signed=False)

    trust = assess(alice.answer(), {})[ALICE]

    assert trust.trusts("PHONE")
    assert trust.excluded == {"LAPTOP": NOT_CROSS_SIGNED}


def test_a_device_signed_by_another_users_self_signing_key_is_excluded(alice: User) -> None:
    mallory = User(ALICE)  # someone else's keys, claiming to be Alice's
    device = alice.add_device("LAPTOP", cross_signed=False)
    sign_json(device, ALICE, mallory.identity.self_signing)
    answer = alice.answer()
    ssk = alice.identity.self_signing_key
    # The signature is stored under Alice's self-signing key id: a forged signature.
    forged = device["signatures"][ALICE].pop(f"ed25519:{mallory.identity.self_signing_key}")
    answer["device_keys"][ALICE]["LAPTOP"]["signatures"][ALICE][f"ed25519:{ssk}"] = forged

    trust = assess(answer, {})[ALICE]

    assert trust.excluded == {"LAPTOP": NOT_CROSS_SIGNED}


def test_a_device_changed_after_it_was_signed_is_excluded(alice: User) -> None:
    answer = alice.answer()
    answer["device_keys"][ALICE]["PHONE"]["keys"]["curve25519:PHONE"] = "another"

    trust = assess(answer, {})[ALICE]

    assert trust.excluded == {"PHONE": BAD_DEVICE}


def test_a_self_signing_key_not_signed_by_the_master_key_trusts_nothing(alice: User) -> None:
    answer = alice.answer()
    answer["self_signing_keys"][ALICE]["signatures"] = {}

    trust = assess(answer, {})[ALICE]

    assert trust.pin == alice.identity.master_key
    assert trust.excluded == {"PHONE": BAD_SELF_SIGNING}


def test_a_user_without_identity_has_no_trusted_device() -> None:
    answer = {"device_keys": {BOB: {"DESK": device_keys(BOB, "DESK")}}}

    trust = assess(answer, {})[BOB]

    assert trust.pin is None and trust.master_key is None
    assert trust.excluded == {"DESK": NO_IDENTITY}


def test_users_missing_from_the_answer_are_left_out(alice: User) -> None:
    answer = {**alice.answer(), "failures": {"other.example": {"status": 503}}}

    assert set(assess(answer, {"@carol:other.example": "key"})) == {ALICE}


def test_each_user_is_judged_by_their_own_identity(alice: User) -> None:
    bob = User(BOB)
    bob.add_device("DESK", cross_signed=False)

    trust = assess(merged(alice.answer(), bob.answer()), {})

    assert trust[ALICE].trusts("PHONE") and not trust[BOB].trusts("DESK")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "crieur.sqlite3")
    yield db
    await db.close()


async def test_pins_are_kept_in_the_store_and_a_changed_identity_waits_for_a_reset(
    alice: User, store: Store
) -> None:
    pins = MasterKeyPins(store)
    await pins.assess(alice.answer())
    first = alice.identity.master_key
    alice.identity = Identity.generate(ALICE)
    alice.add_device("PHONE")

    refused = await MasterKeyPins(store).assess(alice.answer())
    forgotten = await pins.reset(ALICE)
    accepted = await pins.assess(alice.answer())

    assert refused[ALICE].changed and forgotten == first
    assert accepted[ALICE].trusts("PHONE")
    assert await pins.pinned([ALICE]) == {ALICE: alice.identity.master_key}


async def test_resetting_a_user_without_pin_changes_nothing(store: Store) -> None:
    assert await MasterKeyPins(store).reset(BOB) is None


# -- the keys file -------------------------------------------------------------------------------


def test_the_keys_file_is_0600_in_a_0700_directory_it_creates(tmp_path: Path) -> None:
    path = identity_path(tmp_path / "matrix-store", ALICE)

    save_identity(path, Identity.generate(ALICE))

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_keys_file_gives_back_the_same_identity(tmp_path: Path) -> None:
    identity = Identity.generate(ALICE)
    path = identity_path(tmp_path, ALICE)
    save_identity(path, identity)

    loaded = load_identity(path, ALICE)

    assert loaded is not None
    assert loaded.upload_body() == identity.upload_body()


def test_another_users_keys_file_is_not_used(tmp_path: Path) -> None:
    path = identity_path(tmp_path, ALICE)
    save_identity(path, Identity.generate(BOB))

    assert load_identity(path, ALICE) is None


def test_an_unreadable_keys_file_is_reported_without_its_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = identity_path(tmp_path, ALICE)
    path.write_text(json.dumps({"version": 1, "user_id": ALICE, "master": "secret-seed"}))

    assert load_identity(path, ALICE) is None
    assert "secret-seed" not in caplog.text


# -- withheld room keys ----------------------------------------------------------------------------


class ToDevice:
    """A to-device event as nio hands over those it does not know."""

    def __init__(self, source: dict[str, Any]) -> None:
        self.source = source


def withheld(**content: Any) -> ToDevice:
    return ToDevice({"type": "m.room_key.withheld", "sender": ALICE, "content": content})


def test_a_withheld_key_gives_its_code_and_reason() -> None:
    event = withheld(code="m.unverified", reason="You are not verified.", room_id="!r:x")

    line = withheld_key(event)

    assert line is not None
    assert (
        line.log_line()
        == f"{ALICE} withheld a room key in !r:x: m.unverified: You are not verified."
    )


def test_the_unstable_withheld_type_is_read_too() -> None:
    event = ToDevice(
        {"type": "org.matrix.room_key.withheld", "sender": ALICE, "content": {"code": "m.no_olm"}}
    )

    found = withheld_key(event)

    assert found is not None and found.code == "m.no_olm"


def test_other_to_device_events_are_not_withheld_keys() -> None:
    assert withheld_key(ToDevice({"type": "m.dummy", "sender": ALICE, "content": {}})) is None


def test_a_withheld_reason_cannot_forge_log_lines() -> None:
    found = withheld_key(withheld(code="m.blacklisted", reason="no\nERROR fake line"))

    assert found is not None and "\n" not in found.log_line()


def test_withheld_keys_among_to_device_events_are_logged_and_returned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = [
        ToDevice({"type": "m.dummy", "sender": ALICE, "content": {}}),
        withheld(code="m.unverified"),
    ]

    found = log_withheld(events)

    assert [key.code for key in found] == ["m.unverified"]
    assert caplog.messages == [f"{ALICE} withheld a room key: m.unverified"]
