"""A rate-limited log-in waits as long as the homeserver asks, then logs in (real Synapse)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from bot.config import MatrixConfig
from bot.demo.homeserver import relaxed_rate_limits
from bot.matrix import MatrixBot
from bot.store import Store
from tests.synapse_server import SynapseFactory

# One log-in per account, then one more every 4 s: the bot's log-in right after ours waits.
LOGIN_EVERY = 4.0


async def test_a_rate_limited_log_in_waits_and_retries(
    synapse_factory: SynapseFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limits = relaxed_rate_limits()
    limits["rc_login"] = dict(
        limits["rc_login"], account={"per_second": 1 / LOGIN_EVERY, "burst_count": 1}
    )
    server = synapse_factory(extra_config=limits)
    account = await server.register_account(server.unique_localpart("crieur"))
    await server.login_account(account.localpart)  # spends the account's only log-in
    config = MatrixConfig(
        homeserver=server.base_url,
        user_id=account.user_id,
        password=account.password,
        encryption=False,
    )
    caplog.set_level(logging.INFO)
    async with await Store.open(tmp_path / "crieur.sqlite3") as store:
        bot = MatrixBot(config, store, data_dir=tmp_path / "matrix", region_rooms={})
        try:
            started = time.monotonic()
            await bot.start()
            waited = time.monotonic() - started
        finally:
            await bot.close()
    assert bot.device_id is not None
    limited = [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith("the homeserver rate-limits the log-in; retrying in")
    ]
    assert limited, caplog.text
    assert waited >= LOGIN_EVERY / 2
    assert "refused by the homeserver" not in caplog.text
    nio_warnings = [
        r for r in caplog.records if r.name.startswith("nio") and r.levelno >= logging.WARNING
    ]
    assert not nio_warnings, nio_warnings
