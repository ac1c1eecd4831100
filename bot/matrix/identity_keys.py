"""The private keys of a cross-signing identity and the file that keeps them.

The file lives in the crypto store directory (0700), beside nio's device store, and is 0600
from its creation: it holds private keys, so its content is never logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from signedjson.key import (
    NACL_ED25519,
    decode_signing_key_base64,
    encode_signing_key_base64,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
)
from signedjson.sign import sign_json
from signedjson.types import SigningKey

log = logging.getLogger(__name__)

FILE_VERSION: Final = 1

JsonDict = dict[str, Any]


def _named(key: SigningKey) -> SigningKey:
    """Name a key by its public key, as cross-signing key ids are (`ed25519:<public key>`)."""
    key.version = encode_verify_key_base64(get_verify_key(key))
    return key


def _signing_key(seed: str) -> SigningKey:
    return _named(decode_signing_key_base64(NACL_ED25519, "", seed))


def public_key(key: SigningKey) -> str:
    """The unpadded base64 public key of a signing key."""
    return encode_verify_key_base64(get_verify_key(key))


@dataclass(frozen=True, slots=True)
class Identity:
    """The three private cross-signing keys of one user."""

    user_id: str
    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    @classmethod
    def generate(cls, user_id: str) -> Identity:
        """Make three new keys."""
        return cls(user_id, *(_named(generate_signing_key("")) for _ in range(3)))

    @property
    def master_key(self) -> str:
        return public_key(self.master)

    @property
    def self_signing_key(self) -> str:
        return public_key(self.self_signing)

    @property
    def user_signing_key(self) -> str:
        return public_key(self.user_signing)

    def key_object(self, usage: str) -> JsonDict:
        """The public key object of one usage (master, self_signing, user_signing), unsigned."""
        keys = {
            "master": self.master,
            "self_signing": self.self_signing,
            "user_signing": self.user_signing,
        }
        public = public_key(keys[usage])
        return {"user_id": self.user_id, "usage": [usage], "keys": {f"ed25519:{public}": public}}

    def upload_body(self) -> JsonDict:
        """The body of /keys/device_signing/upload: the subkeys signed by the master key."""
        return {
            "master_key": self.key_object("master"),
            "self_signing_key": sign_json(
                self.key_object("self_signing"), self.user_id, self.master
            ),
            "user_signing_key": sign_json(
                self.key_object("user_signing"), self.user_id, self.master
            ),
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": FILE_VERSION,
                "user_id": self.user_id,
                "master": encode_signing_key_base64(self.master),
                "self_signing": encode_signing_key_base64(self.self_signing),
                "user_signing": encode_signing_key_base64(self.user_signing),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Identity:
        """Read what `to_json` wrote; raise ValueError if it is not that."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != FILE_VERSION:
            raise ValueError("not a cross-signing keys file of this version")
        seeds = [data.get(name) for name in ("master", "self_signing", "user_signing")]
        user_id = data.get("user_id")
        if not isinstance(user_id, str) or not all(isinstance(seed, str) for seed in seeds):
            raise ValueError("a key is missing")
        return cls(user_id, *(_signing_key(str(seed)) for seed in seeds))


def identity_path(store_dir: Path, user_id: str) -> Path:
    """Where the user's private cross-signing keys live, beside nio's device store."""
    return store_dir / f"{user_id}_cross_signing.json"


def load_identity(path: Path, user_id: str) -> Identity | None:
    """Read the keys file; None if there is none, or it is unreadable or another user's."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        identity = Identity.from_json(text)
    except (ValueError, TypeError) as error:
        # Never log the content: it holds private keys.
        log.warning("cannot read the cross-signing keys in %s: %s", path, error)
        return None
    if identity.user_id != user_id:
        log.warning(
            "the cross-signing keys in %s are %s's, not %s's", path, identity.user_id, user_id
        )
        return None
    return identity


def save_identity(path: Path, identity: Identity) -> None:
    """Write the keys file atomically, 0600 from its creation, in a 0700 directory."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(identity.to_json())
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
