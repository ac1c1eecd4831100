"""A throwaway Synapse on 127.0.0.1: configure, start, stop, and register users with its secret.

Synapse runs as `python -m synapse.app.homeserver` from this interpreter, in a process group of
its own, so a stop reaches everything it started. On Linux it also gets `PR_SET_PDEATHSIG`, so
it dies with the demo even when the demo itself is SIGKILLed and has no chance to clean up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import errno
import hashlib
import hmac
import importlib.util
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from . import DemoError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
START_TIMEOUT = 60.0  # seconds; a first start on a slow machine takes about 5
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
INSTALL_HINT = "install the demo extra: pip install 'crieur-bot[demo]' (in a clone: make demo)"

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
# Far above anything the demo does, so neither the bot nor a person clicking around waits.
_RELAXED = {"per_second": 1000, "burst_count": 10_000}


def synapse_installed() -> bool:
    """Tell whether matrix-synapse can be imported by this interpreter."""
    return importlib.util.find_spec("synapse") is not None


def ensure_port_free(port: int) -> None:
    """Raise DemoError if something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As servers do: a connection of a previous run in TIME_WAIT does not block the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise DemoError(
                    f"port {port} is already in use on {HOST}: stop what listens there, "
                    f"or choose another port with --port"
                ) from None
            raise DemoError(f"cannot use port {port} on {HOST}: {error.strerror}") from None


def relaxed_rate_limits() -> dict[str, Any]:
    """Return Synapse's `rc_*` settings, all far above what a local bot and person do."""
    relaxed = dict(_RELAXED)
    return {
        "rc_message": relaxed,
        "rc_registration": relaxed,
        "rc_registration_token_validity": relaxed,
        "rc_login": {"address": relaxed, "account": relaxed, "failed_attempts": relaxed},
        "rc_joins": {"local": relaxed, "remote": relaxed},
        "rc_joins_per_room": relaxed,
        "rc_invites": {"per_room": relaxed, "per_user": relaxed, "per_issuer": relaxed},
        "rc_third_party_invite": relaxed,
        "rc_3pid_validation": relaxed,
        "rc_room_creation": relaxed,
        "rc_admin_redaction": relaxed,
        "rc_key_requests": relaxed,
        "rc_media_create": relaxed,
        "rc_presence": {"per_user": relaxed},
        "rc_delayed_event_mgmt": relaxed,
        "rc_reports": relaxed,
        "rc_user_directory": relaxed,
        "rc_profile": relaxed,
    }


def log_config(log_path: Path) -> dict[str, Any]:
    """Return a Python logging config sending Synapse's warnings and errors to `log_path`."""
    return {
        "version": 1,
        "formatters": {"precise": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(log_path),
                "encoding": "utf8",
            }
        },
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


def homeserver_config(
    directory: Path,
    port: int,
    *,
    secret_values: Mapping[str, str],
    log_config_path: Path,
    signing_key_path: Path,
) -> dict[str, Any]:
    """Return a homeserver.yaml for a closed local Synapse: loopback, client API, no federation.

    `secret_values` holds registration_shared_secret, macaroon_secret_key and form_secret.
    """
    return {
        "server_name": SERVER_NAME,
        "public_baseurl": f"http://{HOST}:{port}/",
        # Only the client API, only on loopback: no federation listener at all.
        "listeners": [
            {
                "port": port,
                "bind_addresses": [HOST],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(directory / "homeserver.db")}},
        "log_config": str(log_config_path),
        "media_store_path": str(directory / "media"),
        "signing_key_path": str(signing_key_path),
        "registration_shared_secret": secret_values["registration_shared_secret"],
        "macaroon_secret_key": secret_values["macaroon_secret_key"],
        "form_secret": secret_values["form_secret"],
        "enable_registration": False,
        # A throwaway local server: fast password hashing keeps registration and logins quick.
        "bcrypt_rounds": 4,
        # Nothing leaves the machine: no federation, key servers, stats, previews or pushes.
        "federation_domain_whitelist": [],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "report_stats": False,
        "enable_metrics": False,
        "url_preview_enabled": False,
        "push": {"enabled": False},
        "presence": {"enabled": False},
        "serve_server_wellknown": False,
        "require_auth_for_profile_requests": False,
        **relaxed_rate_limits(),
    }


class SynapseLayout:
    """Where a local Synapse listens and keeps its files (the demo's and the tests' alike)."""

    directory: Path
    port: int

    @property
    def base_url(self) -> str:
        """The homeserver URL for clients: `http://127.0.0.1:<port>`."""
        return f"http://{HOST}:{self.port}"

    @property
    def config_path(self) -> Path:
        """The generated homeserver.yaml."""
        return self.directory / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        """Synapse's own log (warnings and errors)."""
        return self.directory / "homeserver.log"

    @property
    def output_path(self) -> Path:
        """Synapse's stdout and stderr: what it says before its logging is set up."""
        return self.directory / "output.log"


class Homeserver(SynapseLayout):
    """One Synapse process and its directory (config, secrets, SQLite, media, logs)."""

    def __init__(self, directory: Path, port: int) -> None:
        # Absolute: Synapse runs in this directory, and reads the paths of its config from there.
        self.directory = directory.absolute()
        self.port = port
        self._process: asyncio.subprocess.Process | None = None
        self._secrets: dict[str, str] = {}

    @property
    def pid_path(self) -> Path:
        """Holds Synapse's pid (and process group id) while it runs."""
        return self.directory / "synapse.pid"

    @property
    def pid(self) -> int | None:
        """Synapse's pid while it runs."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def user_id(self, localpart: str) -> str:
        """The full user id of a local user."""
        return f"@{localpart}:{SERVER_NAME}"

    # -- configuration ------------------------------------------------------------------------

    def configure(self) -> Path:
        """Write homeserver.yaml (keeping the secrets and signing key of earlier runs)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._secrets = self._load_secrets()
        key_path = self.directory / "signing.key"
        if not key_path.exists():
            # Synapse's format: "ed25519 <key id> <unpadded base64 of the 32-byte seed>".
            seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
            write_private(key_path, f"ed25519 a_{secrets.token_hex(2)} {seed}\n")
        log_config_path = self.directory / "log.yaml"
        log_config_path.write_text(yaml.safe_dump(log_config(self.log_path)), encoding="utf-8")
        config = homeserver_config(
            self.directory,
            self.port,
            secret_values=self._secrets,
            log_config_path=log_config_path,
            signing_key_path=key_path,
        )
        write_private(self.config_path, yaml.safe_dump(config, sort_keys=False))
        return self.config_path

    def _load_secrets(self) -> dict[str, str]:
        path = self.directory / "secrets.json"
        names = ("registration_shared_secret", "macaroon_secret_key", "form_secret")
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            stored = {}
        if not isinstance(stored, dict):
            stored = {}
        values = {name: str(stored.get(name) or secrets.token_urlsafe(32)) for name in names}
        if values != stored:
            write_private(path, json.dumps(values, indent=2) + "\n")
        return values

    # -- process ------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise DemoError if Synapse cannot start: not installed, or its port is taken."""
        if not synapse_installed():
            raise DemoError(f"matrix-synapse is not installed: {INSTALL_HINT}")
        ensure_port_free(self.port)

    async def start(self, timeout: float = START_TIMEOUT) -> float:  # noqa: ASYNC109 (a deadline for the whole start)
        """Start Synapse and wait until its client API answers; return the seconds it took."""
        self.check()
        config_path = self.configure()
        # An environment's proxy must never see 127.0.0.1, nor Synapse's (absent) outbound calls.
        environment = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARIABLES}
        began = time.monotonic()
        with self.output_path.open("ab") as output:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "synapse.app.homeserver",
                "-c",
                str(config_path),
                cwd=self.directory,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Ctrl-C is ours to relay
                preexec_fn=_die_with_parent(),
            )
        self.pid_path.write_text(f"{self._process.pid}\n", encoding="utf-8")
        try:
            await self._wait_until_ready(timeout)
        except BaseException:
            await self.stop()
            raise
        return time.monotonic() - began

    async def _wait_until_ready(self, timeout: float) -> None:  # noqa: ASYNC109
        process = self._process
        assert process is not None
        url = self.base_url + "/_matrix/client/versions"
        client_timeout = aiohttp.ClientTimeout(total=2)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            while True:
                if process.returncode is not None:
                    raise DemoError(
                        f"Synapse stopped while starting (exit code {process.returncode})\n"
                        f"{self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise DemoError(f"Synapse did not answer in {timeout:.0f} s\n{self.log_tail()}")
                await asyncio.sleep(0.1)

    async def watch(self) -> None:
        """Return never; raise DemoError if Synapse exits while it should be running."""
        process = self._process
        if process is None:
            raise DemoError("Synapse is not running")
        code = await process.wait()
        raise DemoError(f"Synapse stopped unexpectedly (exit code {code})\n{self.log_tail()}")

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM Synapse's process group, SIGKILL it after `grace` seconds, and reap it."""
        process = self._process
        if process is None:
            return
        try:
            if process.returncode is None:
                _signal_group(process.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), grace)
                except TimeoutError:
                    log.warning("Synapse ignored SIGTERM for %.0f s: killing it", grace)
                    _signal_group(process.pid, signal.SIGKILL)
                    await process.wait()
            # Anything Synapse started and left behind shares its group; the group id cannot be
            # reused while one member lives, so this reaches only what we started.
            _signal_group(process.pid, signal.SIGKILL)
        finally:
            self._process = None
            self.pid_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL Synapse's process group now, if it runs (for atexit: no event loop needed)."""
        process = self._process
        if process is not None and process.returncode is None:
            _signal_group(process.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of Synapse's output and log, and where to read the rest."""
        parts: list[str] = []
        for path in (self.output_path, self.log_path):
            with contextlib.suppress(FileNotFoundError):
                tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
                if tail:
                    parts.append(f"--- last lines of {path} ---\n" + "\n".join(tail))
        return "\n".join(parts) or f"(Synapse wrote nothing in {self.directory})"

    # -- users --------------------------------------------------------------------------------

    async def register(self, localpart: str, password: str) -> bool:
        """Register a user with the shared secret; return False if it already existed."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            url = self.base_url + "/_synapse/admin/v1/register"
            async with session.get(url) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    raise DemoError(f"Synapse gave no registration nonce: {response.status} {body}")
            nonce = str(body["nonce"])
            # Synapse's shared-secret registration: HMAC-SHA1 of the NUL-joined fields.
            signed = b"\x00".join(
                part.encode() for part in (nonce, localpart, password, "notadmin")
            )
            secret = self._secrets["registration_shared_secret"].encode()
            mac = hmac.new(secret, signed, digestmod=hashlib.sha1)
            request = {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": False,
                "mac": mac.hexdigest(),
            }
            async with session.post(url, json=request) as response:
                body = await response.json(content_type=None)
                status = response.status
            if status == 200:
                # Registering logs in a device nobody will use: drop it at once.
                logout = self.base_url + "/_matrix/client/v3/logout"
                headers = {"Authorization": f"Bearer {body['access_token']}"}
                async with session.post(logout, headers=headers, json={}):
                    pass
                return True
        if isinstance(body, dict) and body.get("errcode") == "M_USER_IN_USE":
            return False
        raise DemoError(f"cannot register {self.user_id(localpart)}: {status} {body}")


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _die_with_parent() -> Callable[[], None] | None:
    """Return a preexec_fn that makes the child die with us (Linux), or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded now: the child must not load libraries
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # we died between fork and prctl: nobody will signal
            os._exit(1)

    return preexec


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds secrets)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
